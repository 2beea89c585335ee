//! Provider routing (issue 6; ARCHITECTURE.md §4 "Provider routing"): which voice
//! providers a call tries, in which order, and with whose key.
//!
//! - [`policy`]: the workspace strategy (`auto`, `cost_optimized`, `quality_first`,
//!   `specific`, `custom`) and [`policy::route`], a pure function from strategy, call
//!   source, configured providers and a health snapshot to an ordered chain.
//! - [`health`]: per provider and region, a rolling window of call outcomes (error rate,
//!   connect time, time to first audio), healthy / degraded / down, and a circuit breaker
//!   with a single half-open probe; rows for `provider_health_status`.
//!
//! Both are sans-IO: time is a parameter, nothing here reads the database or a clock. The
//! caller keeps one [`HealthBook`] behind a lock, feeds it outcomes from call events, and
//! routes each call with [`route_call`].

pub mod health;
pub mod policy;

pub use health::{
    CircuitView, HealthBook, HealthConfig, HealthRow, HealthState, HealthView, Outcome,
    ProviderHealth, ProviderKey,
};
pub use policy::{
    Choice, KeySource, ProviderCandidate, Route, SkipReason, Skipped, Strategy, StrategyError,
    route,
};

use vocalized_shared::plan::CallSource;

/// Routes one call against the book's health at `now_ms` and takes the half-open probe
/// slot of every `probe` choice in the chain, so concurrent calls do not all probe a
/// provider that may still be dead. The call must report an [`Outcome`] for each probe
/// it tries, or [`HealthBook::release_probe`] for each it did not (an unreleased slot
/// frees itself after `probe_timeout_ms`).
pub fn route_call(
    book: &mut HealthBook,
    strategy: &Strategy,
    source: CallSource,
    candidates: &[ProviderCandidate],
    now_ms: i64,
) -> Route {
    let snapshot = book.snapshot(now_ms);
    let mut route = policy::route(strategy, source, candidates, &snapshot);
    let mut lost = Vec::new();
    route.chain.retain(|choice| {
        let kept = !choice.probe || book.try_acquire_probe(&choice.provider_key(), now_ms);
        if !kept {
            lost.push(Skipped {
                name: choice.name.clone(),
                region: Some(choice.region.clone()),
                reason: SkipReason::ProbeInFlight,
            });
        }
        kept
    });
    route.skipped.extend(lost);
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use vocalized_shared::plan::ProviderKind;

    fn keyed(kind: ProviderKind, priority: i64) -> ProviderCandidate {
        ProviderCandidate {
            priority,
            platform_key: true,
            ..ProviderCandidate::new(kind)
        }
    }

    fn trip(book: &mut HealthBook, key: &ProviderKey, now_ms: i64) {
        for _ in 0..book.config().failure_threshold {
            book.record(key, Outcome::ConnectFailed, now_ms);
        }
    }

    fn names(route: &Route) -> Vec<&str> {
        route.chain.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn an_open_circuit_skips_the_provider_and_the_next_one_serves() {
        let mut book = HealthBook::default();
        let candidates = [
            keyed(ProviderKind::Openai, 0),
            keyed(ProviderKind::Gemini, 1),
        ];
        trip(&mut book, &candidates[0].key(), 1_000);

        let route = route_call(
            &mut book,
            &Strategy::Auto,
            CallSource::Twilio,
            &candidates,
            2_000,
        );

        assert_eq!(names(&route), ["gemini"]);
        assert_eq!(route.skipped[0].reason, SkipReason::CircuitOpen);
        assert!(!route.last_resort);
    }

    #[test]
    fn only_one_call_at_a_time_probes_a_half_open_provider() {
        let mut book = HealthBook::default();
        let candidates = [
            keyed(ProviderKind::Openai, 0),
            keyed(ProviderKind::Gemini, 1),
        ];
        let openai = candidates[0].key();
        trip(&mut book, &openai, 0);
        let after_cool_down = book.config().cool_down_ms;

        let first = route_call(
            &mut book,
            &Strategy::Auto,
            CallSource::Web,
            &candidates,
            after_cool_down,
        );
        assert_eq!(
            names(&first),
            ["openai", "gemini"],
            "the probe keeps its place"
        );
        assert!(first.chain[0].probe);

        let second = route_call(
            &mut book,
            &Strategy::Auto,
            CallSource::Web,
            &candidates,
            after_cool_down + 1,
        );
        assert_eq!(names(&second), ["gemini"]);
        assert_eq!(second.skipped[0].reason, SkipReason::ProbeInFlight);

        // The probe connects: the circuit closes and every call may use openai again.
        book.record(
            &openai,
            Outcome::ConnectOk { connect_ms: 200 },
            after_cool_down + 2,
        );
        let third = route_call(
            &mut book,
            &Strategy::Auto,
            CallSource::Web,
            &candidates,
            after_cool_down + 3,
        );
        assert_eq!(names(&third), ["openai", "gemini"]);
        assert!(!third.chain[0].probe);
    }
}
