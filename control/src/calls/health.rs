//! Provider health on this node: one [`HealthBook`] (routing/health.rs) fed from the call
//! events the media plane emits, read when a call is routed, and written to
//! `provider_health_status` for the admin dashboard.
//!
//! Events name providers by kind (`openai`, `gemini`, ...), while health is kept per
//! configured provider and region. So each routed call's chain is remembered here, and
//! the events walk it: `provider_connected` is the provider in use connecting,
//! `failover {from, to}` is it failing (at setup when it had not connected in this call,
//! mid-call when it had) and the chain moving on to the next `to`, and an `ended` with a
//! provider error is the last provider failing with nothing left to take over.
//! A `session_rollover` (same provider, new session) is not a failure. Connect time is
//! measured on the call's own clock (event `at_ms`): from the answer, or from the
//! failover, to `provider_connected`.
//!
//! Only outcomes that describe the platform's own deployment of a provider feed the
//! book: a call that used a workspace's own key (`KeySource::Workspace`), or a model the
//! tenant chose that the catalogue does not list, says more about that tenant's setting
//! than about the provider, so one tenant's bad key or model cannot open the circuit every
//! other workspace is routed by (security review M8). Such calls are still routed by the
//! platform's health, but take no half-open probe slot.
//!
//! Everything here is a few map operations under a std `Mutex`, never held across an
//! await, so the media plane's `emit` can feed it directly without waiting on anything.

use crate::db::Db;
use crate::routing::{HealthBook, KeySource, Outcome, ProviderKey, Route, route_call};
use crate::routing::{ProviderCandidate, Strategy};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::plan::CallSource;

/// The failover reason the media plane gives a new session of the same provider.
const SESSION_ROLLOVER: &str = "session_rollover";
/// A call that never reports its end is forgotten after this long.
const MAX_TRACKED_MS: i64 = 6 * 60 * 60_000;
/// Past this many tracked calls, each new one sweeps out the forgotten ones.
const SWEEP_ABOVE: usize = 256;
/// Rows are rewritten at least this often even when nothing was reported, so their
/// time-driven parts (window, cool-down) and `last_check_at` stay current.
pub const REFRESH_MS: i64 = 30_000;

/// One provider in a tracked call's chain.
#[derive(Clone, Debug)]
struct Link {
    kind: &'static str,
    key: ProviderKey,
    /// This call holds the provider's half-open probe slot.
    probe: bool,
    /// An outcome was recorded for it in this call.
    tried: bool,
    /// Its outcomes feed the platform's health: the platform's key (or none needed) and a
    /// platform-chosen or catalogued model.
    platform: bool,
}

/// Where one call is in its chain.
#[derive(Clone, Debug)]
struct Tracked {
    chain: Vec<Link>,
    /// Index of the provider in use (or being connected); `chain.len()` when exhausted.
    at: usize,
    connected: bool,
    /// When the provider in use started connecting, on the call's own clock (event
    /// `at_ms`, ms since answer): the answer (both call sources dial after it), or the
    /// last failover. The media plane emits events in batches, so arrival times would not
    /// measure a connect.
    dialled_at_ms: u64,
    planned_at_ms: i64,
    /// The highest event seq seen: replays and stragglers change nothing.
    last_seq: u64,
}

impl Tracked {
    fn current(&self) -> Option<&Link> {
        self.chain.get(self.at)
    }

    /// Moves to the next provider of kind `to` after the one in use (the media plane
    /// skips providers it cannot connect without an event).
    fn advance_to(&mut self, to: &str) {
        self.seek(to, self.at.saturating_add(1));
    }

    /// Points at the first provider of kind `kind` at or after index `from`.
    fn seek(&mut self, kind: &str, from: usize) {
        self.at = self
            .chain
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, l)| l.kind == kind)
            .map_or(self.chain.len(), |(i, _)| i);
    }

    fn failure(&self) -> Outcome {
        if self.connected {
            Outcome::MidCallError
        } else {
            Outcome::ConnectFailed
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    book: HealthBook,
    calls: HashMap<String, Tracked>,
    /// Something was recorded since the rows were last written.
    dirty: bool,
    last_written_ms: Option<i64>,
}

/// The node's provider health and the chains of the calls it routed. Shared through
/// `AppState`.
#[derive(Debug, Default)]
pub struct HealthMonitor {
    inner: Mutex<Inner>,
}

impl HealthMonitor {
    pub fn new(book: HealthBook) -> Self {
        HealthMonitor {
            inner: Mutex::new(Inner {
                book,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The book holds plain data: a panic elsewhere cannot leave it half-updated in a
        // way worse than losing a sample, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes `call_id` against current health (taking the half-open probe slots its
    /// chain uses) and remembers the chain so the call's events can be attributed.
    pub fn route(
        &self,
        call_id: &str,
        strategy: &Strategy,
        source: CallSource,
        candidates: &[ProviderCandidate],
        now_ms: i64,
    ) -> Route {
        let mut inner = self.lock();
        let mut route = route_call(&mut inner.book, strategy, source, candidates, now_ms);
        if inner.calls.len() > SWEEP_ABOVE {
            inner
                .calls
                .retain(|_, t| now_ms.saturating_sub(t.planned_at_ms) < MAX_TRACKED_MS);
        }
        let mut chain: Vec<Link> = route
            .chain
            .iter()
            .map(|c| {
                let platform_model = candidates
                    .iter()
                    .find(|cand| cand.name == c.name)
                    .is_none_or(|cand| cand.platform_model);
                Link {
                    kind: c.kind.as_str(),
                    key: c.provider_key(),
                    probe: c.probe,
                    tried: false,
                    platform: c.key != KeySource::Workspace && platform_model,
                }
            })
            .collect();
        // A call whose outcomes will not be recorded cannot be the half-open probe.
        for (link, choice) in chain.iter_mut().zip(route.chain.iter_mut()) {
            if link.probe && !link.platform {
                inner.book.release_probe(&link.key);
                link.probe = false;
                choice.probe = false;
            }
        }
        inner.calls.insert(
            call_id.to_owned(),
            Tracked {
                chain,
                at: 0,
                connected: false,
                dialled_at_ms: 0,
                planned_at_ms: now_ms,
                last_seq: 0,
            },
        );
        route
    }

    /// Forgets a routed call that will not run (its plan failed after routing), freeing
    /// any probe slot it took.
    pub fn forget(&self, call_id: &str) {
        let mut inner = self.lock();
        if let Some(t) = inner.calls.remove(call_id) {
            for link in t.chain.iter().filter(|l| l.probe) {
                inner.book.release_probe(&link.key);
            }
        }
    }

    /// Feeds one call event received at `now_ms`. Events of calls this node did not
    /// route, and events older than the newest one seen for the call, are ignored.
    pub fn observe(&self, call_id: &str, event: &CallEvent, now_ms: i64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(t) = inner.calls.get_mut(call_id) else {
            return;
        };
        if event.seq <= t.last_seq {
            return;
        }
        t.last_seq = event.seq;
        // (index in the chain, outcome)
        let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
        let mut ended = false;
        match &event.kind {
            CallEventKind::ProviderConnected { provider } => {
                if t.current().is_some_and(|l| l.kind != provider) {
                    // Not the provider we expected: the media plane skipped ahead.
                    t.seek(provider, t.at);
                }
                if t.current().is_some() {
                    let connect_ms = event.at_ms.saturating_sub(t.dialled_at_ms);
                    outcomes.push((
                        t.at,
                        Outcome::ConnectOk {
                            connect_ms: u32::try_from(connect_ms).unwrap_or(u32::MAX),
                        },
                    ));
                }
                t.connected = true;
            }
            CallEventKind::Failover { from, to, reason } => {
                if reason == SESSION_ROLLOVER && from == to {
                    // A fresh session of the same provider: not a failure, still connected.
                    t.dialled_at_ms = event.at_ms;
                } else {
                    if t.current().is_some_and(|l| l.kind == from) {
                        outcomes.push((t.at, t.failure()));
                    }
                    t.advance_to(to);
                    t.connected = false;
                    t.dialled_at_ms = event.at_ms;
                }
            }
            CallEventKind::ProviderAudioStarted { ttfa_ms }
                if t.connected && t.current().is_some() =>
            {
                let ttfa_ms = u32::try_from(*ttfa_ms).unwrap_or(u32::MAX);
                outcomes.push((t.at, Outcome::FirstAudio { ttfa_ms }));
            }
            CallEventKind::Ended(reason) => {
                if let EndReason::ProviderError { .. } = reason
                    && t.current().is_some()
                {
                    // The provider in use failed and nothing took over.
                    outcomes.push((t.at, t.failure()));
                }
                ended = true;
            }
            _ => {}
        }
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (i, outcome) in outcomes {
            if let Some(link) = t.chain.get_mut(i) {
                link.tried = true;
                if link.platform {
                    recorded.push((link.key.clone(), outcome));
                }
            }
        }
        // Probe slots of providers the call never tried go back at once.
        let untried: Vec<ProviderKey> = if ended {
            t.chain
                .iter()
                .filter(|l| l.probe && !l.tried)
                .map(|l| l.key.clone())
                .collect()
        } else {
            Vec::new()
        };
        if ended {
            inner.calls.remove(call_id);
        }
        for (key, outcome) in &recorded {
            inner.book.record(key, *outcome, now_ms);
        }
        for key in &untried {
            inner.book.release_probe(key);
        }
        inner.dirty |= !recorded.is_empty();
    }

    /// Records an outcome directly (a probe outside calls, an operator's test).
    pub fn record(&self, key: &ProviderKey, outcome: Outcome, now_ms: i64) {
        let mut inner = self.lock();
        inner.book.record(key, outcome, now_ms);
        inner.dirty = true;
    }

    /// The `provider_health_status` rows at `now_ms`.
    pub fn rows(&self, now_ms: i64) -> Vec<crate::routing::HealthRow> {
        self.lock().book.rows(now_ms)
    }

    /// The rows to write now, if anything changed or the last write is `REFRESH_MS` old;
    /// taking them marks them written.
    fn due_rows(&self, now_ms: i64, force: bool) -> Vec<crate::routing::HealthRow> {
        let mut inner = self.lock();
        let stale = inner
            .last_written_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= REFRESH_MS);
        if !(force || inner.dirty || stale) {
            return Vec::new();
        }
        inner.dirty = false;
        inner.last_written_ms = Some(now_ms);
        inner.book.rows(now_ms)
    }

    /// Writes the rows if due (see [`REFRESH_MS`]); with `force`, always. On a database
    /// error the rows are marked unwritten, so the next call retries. Returns how many
    /// rows were written.
    pub async fn persist(&self, db: &Db, now_ms: i64, force: bool) -> Result<usize, sqlx::Error> {
        let rows = self.due_rows(now_ms, force);
        if rows.is_empty() {
            return Ok(0);
        }
        match write_rows(db, &rows).await {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                let mut inner = self.lock();
                inner.dirty = true;
                inner.last_written_ms = None;
                Err(e)
            }
        }
    }

    /// How many routed calls are awaiting their end (for tests and metrics).
    pub fn tracked_calls(&self) -> usize {
        self.lock().calls.len()
    }
}

/// Upserts rows by (provider, region) in one transaction.
async fn write_rows(db: &Db, rows: &[crate::routing::HealthRow]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO provider_health_status (provider, region, status, last_check_at, error_rate,
                    avg_latency_ms, connect_ms, ttfa_ms, consecutive_failures, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (provider, region) DO UPDATE SET status = excluded.status,
                    last_check_at = excluded.last_check_at, error_rate = excluded.error_rate,
                    avg_latency_ms = excluded.avg_latency_ms, connect_ms = excluded.connect_ms,
                    ttfa_ms = excluded.ttfa_ms, consecutive_failures = excluded.consecutive_failures,
                    details = excluded.details",
        )
        .bind(&r.provider)
        .bind(&r.region)
        .bind(r.status.as_str())
        .bind(r.last_check_at)
        .bind(r.error_rate)
        .bind(r.avg_latency_ms)
        .bind(r.connect_ms)
        .bind(r.ttfa_ms)
        .bind(r.consecutive_failures)
        .bind(&r.details)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{HealthState, SkipReason};
    use vocalized_shared::plan::ProviderKind;

    fn keyed(kind: ProviderKind, priority: i64) -> ProviderCandidate {
        ProviderCandidate {
            priority,
            platform_key: true,
            ..ProviderCandidate::new(kind)
        }
    }

    fn event(seq: u64, kind: CallEventKind) -> CallEvent {
        at(seq, seq * 100, kind)
    }

    /// An event `at_ms` after the call's answer.
    fn at(seq: u64, at_ms: u64, kind: CallEventKind) -> CallEvent {
        CallEvent { seq, at_ms, kind }
    }

    fn failover(from: &str, to: &str, reason: &str) -> CallEventKind {
        CallEventKind::Failover {
            from: from.into(),
            to: to.into(),
            reason: reason.into(),
        }
    }

    fn connected(provider: &str) -> CallEventKind {
        CallEventKind::ProviderConnected {
            provider: provider.into(),
        }
    }

    fn all_failed() -> CallEventKind {
        CallEventKind::Ended(EndReason::ProviderError {
            code: "all_providers_failed".into(),
        })
    }

    fn two() -> [ProviderCandidate; 2] {
        [
            keyed(ProviderKind::Openai, 0),
            keyed(ProviderKind::Gemini, 1),
        ]
    }

    #[test]
    fn a_setup_failover_counts_against_the_first_and_a_connect_for_the_second() {
        let m = HealthMonitor::default();
        let route = m.route("c1", &Strategy::Auto, CallSource::Web, &two(), 1_000);
        assert_eq!(route.chain.len(), 2);
        m.observe(
            "c1",
            &at(
                1,
                3_000,
                failover("openai", "gemini", "provider_connect_failed"),
            ),
            1_200,
        );
        // Events arrive in batches: the media clock, not arrival, measures the connect.
        m.observe("c1", &at(2, 3_250, connected("gemini")), 1_200);
        m.observe(
            "c1",
            &event(3, CallEventKind::ProviderAudioStarted { ttfa_ms: 700 }),
            2_000,
        );

        let rows = m.rows(2_000);
        let openai = rows.iter().find(|r| r.provider == "openai").unwrap();
        let gemini = rows.iter().find(|r| r.provider == "gemini").unwrap();
        assert_eq!(openai.consecutive_failures, 1);
        assert_eq!(openai.error_rate, 1.0);
        assert_eq!(gemini.consecutive_failures, 0);
        assert_eq!(
            gemini.connect_ms,
            Some(250),
            "from the failover to the connect"
        );
        assert_eq!(gemini.ttfa_ms, Some(700));
    }

    #[test]
    fn the_first_provider_counts_connect_time_from_the_answer() {
        let m = HealthMonitor::default();
        // Planned long before the browser answered; both events arrive together.
        m.route("c1", &Strategy::Auto, CallSource::Web, &two(), 0);
        m.observe("c1", &at(1, 0, CallEventKind::Answered), 9_000);
        m.observe("c1", &at(2, 300, connected("openai")), 9_000);
        assert_eq!(m.rows(9_000)[0].connect_ms, Some(300));
    }

    #[test]
    fn a_drop_after_connecting_is_a_mid_call_error_and_a_rollover_is_nothing() {
        let m = HealthMonitor::default();
        m.route("c1", &Strategy::Auto, CallSource::Twilio, &two(), 0);
        m.observe("c1", &event(1, connected("openai")), 100);
        m.observe(
            "c1",
            &event(2, failover("openai", "openai", SESSION_ROLLOVER)),
            200,
        );
        assert_eq!(m.rows(200)[0].consecutive_failures, 0);
        m.observe(
            "c1",
            &event(3, failover("openai", "gemini", "provider_closed")),
            300,
        );
        let openai = m
            .rows(300)
            .into_iter()
            .find(|r| r.provider == "openai")
            .unwrap();
        // One connect and one error: the drop happened after connecting.
        assert_eq!(openai.error_rate, 0.5);
        assert_eq!(openai.consecutive_failures, 1);
        // The failing last provider is reported by the end of the call.
        m.observe("c1", &event(4, all_failed()), 400);
        let gemini = m
            .rows(400)
            .into_iter()
            .find(|r| r.provider == "gemini")
            .unwrap();
        assert_eq!(gemini.consecutive_failures, 1);
        assert_eq!(m.tracked_calls(), 0);
    }

    #[test]
    fn replayed_events_and_unknown_calls_change_nothing() {
        let m = HealthMonitor::default();
        m.route("c1", &Strategy::Auto, CallSource::Web, &two(), 0);
        let e = event(1, failover("openai", "gemini", "provider_timeout"));
        m.observe("c1", &e, 10);
        m.observe("c1", &e, 11);
        m.observe("other", &event(2, failover("openai", "gemini", "x")), 12);
        let rows = m.rows(20);
        assert_eq!(rows.len(), 1, "only openai has been reported on");
        assert_eq!(rows[0].provider, "openai");
        assert_eq!(rows[0].consecutive_failures, 1);
    }

    #[test]
    fn repeated_all_providers_failed_opens_the_circuit_for_the_next_route() {
        let m = HealthMonitor::default();
        let only = [
            keyed(ProviderKind::Openai, 0),
            keyed(ProviderKind::Gemini, 1),
        ];
        let threshold = HealthBook::default().config().failure_threshold;
        for i in 0..threshold {
            let id = format!("c{i}");
            let at = i64::from(i) * 10;
            m.route(&id, &Strategy::Auto, CallSource::Web, &only, at);
            m.observe(
                &id,
                &event(1, failover("openai", "gemini", "provider_timeout")),
                at + 1,
            );
            m.observe(&id, &event(2, connected("gemini")), at + 2);
            m.observe(
                &id,
                &event(3, CallEventKind::Ended(EndReason::CallerHangup)),
                at + 3,
            );
        }
        let route = m.route("next", &Strategy::Auto, CallSource::Web, &only, 1_000);
        assert_eq!(route.chain.len(), 1);
        assert_eq!(route.chain[0].name, "gemini");
        assert_eq!(route.skipped[0].reason, SkipReason::CircuitOpen);
        let openai = m
            .rows(1_000)
            .into_iter()
            .find(|r| r.provider == "openai")
            .unwrap();
        assert_eq!(openai.status, HealthState::Down);
    }

    /// Fails `openai` (connect failed, then gemini serves) in `calls` calls routed with
    /// `cands`.
    fn fail_openai(m: &HealthMonitor, prefix: &str, cands: &[ProviderCandidate], calls: u32) {
        for i in 0..calls {
            let id = format!("{prefix}{i}");
            let at = i64::from(i) * 10;
            m.route(&id, &Strategy::Auto, CallSource::Web, cands, at);
            m.observe(
                &id,
                &event(1, failover("openai", "gemini", "provider_connect_failed")),
                at + 1,
            );
            m.observe(&id, &event(2, connected("gemini")), at + 2);
            m.observe(
                &id,
                &event(3, CallEventKind::Ended(EndReason::CallerHangup)),
                at + 3,
            );
        }
    }

    #[test]
    fn a_workspace_keys_or_uncatalogued_models_failures_leave_the_platform_circuit_closed() {
        let m = HealthMonitor::default();
        let threshold = HealthBook::default().config().failure_threshold;
        // One workspace's own (invalid) OpenAI key, another's made-up model.
        let byo = [
            ProviderCandidate {
                workspace_key: true,
                ..keyed(ProviderKind::Openai, 0)
            },
            keyed(ProviderKind::Gemini, 1),
        ];
        let odd_model = [
            ProviderCandidate {
                platform_model: false,
                ..keyed(ProviderKind::Openai, 0)
            },
            keyed(ProviderKind::Gemini, 1),
        ];
        fail_openai(&m, "byo", &byo, threshold * 2);
        fail_openai(&m, "odd", &odd_model, threshold * 2);

        // Every other workspace still gets OpenAI first.
        let route = m.route("next", &Strategy::Auto, CallSource::Web, &two(), 1_000);
        let names: Vec<&str> = route.chain.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["openai", "gemini"]);
        assert!(route.skipped.is_empty(), "{:?}", route.skipped);
        let rows = m.rows(1_000);
        assert!(rows.iter().all(|r| r.provider != "openai"), "{rows:?}");
        // The platform-keyed fallback's connects still count.
        let gemini = rows.iter().find(|r| r.provider == "gemini").unwrap();
        assert_eq!(gemini.connect_ms, Some(100));

        // The same failures on the platform's key and model do open it.
        fail_openai(&m, "platform", &two(), threshold);
        let route = m.route("after", &Strategy::Auto, CallSource::Web, &two(), 2_000);
        assert_eq!(route.chain[0].name, "gemini");
        assert_eq!(route.skipped[0].reason, SkipReason::CircuitOpen);
    }

    #[test]
    fn a_workspace_keyed_call_does_not_take_the_half_open_probe() {
        let m = HealthMonitor::default();
        let openai = keyed(ProviderKind::Openai, 0).key();
        for i in 0..HealthBook::default().config().failure_threshold {
            m.record(&openai, Outcome::ConnectFailed, i64::from(i));
        }
        let after = HealthBook::default().config().cool_down_ms + 10;
        let byo = [
            ProviderCandidate {
                workspace_key: true,
                ..keyed(ProviderKind::Openai, 0)
            },
            keyed(ProviderKind::Gemini, 1),
        ];
        let first = m.route("byo", &Strategy::Auto, CallSource::Web, &byo, after);
        assert_eq!(first.chain[0].name, "openai");
        assert!(!first.chain[0].probe, "its outcome would not be recorded");
        // So a platform call can still probe.
        let second = m.route("plat", &Strategy::Auto, CallSource::Web, &two(), after + 1);
        assert!(second.chain[0].probe, "{second:?}");
    }

    #[test]
    fn a_call_that_never_reaches_its_probe_gives_the_slot_back() {
        let m = HealthMonitor::default();
        let cands = two();
        let gemini = cands[1].key();
        for i in 0..HealthBook::default().config().failure_threshold {
            m.record(&gemini, Outcome::ConnectFailed, i64::from(i));
        }
        let after = HealthBook::default().config().cool_down_ms + 10;
        let first = m.route("c1", &Strategy::Auto, CallSource::Web, &cands, after);
        assert!(first.chain[1].probe, "gemini is probed as the fallback");
        // openai serves the whole call: gemini was never tried.
        m.observe("c1", &event(1, connected("openai")), after + 1);
        m.observe(
            "c1",
            &event(2, CallEventKind::Ended(EndReason::CallerHangup)),
            after + 2,
        );
        let second = m.route("c2", &Strategy::Auto, CallSource::Web, &cands, after + 3);
        assert!(second.chain.iter().any(|c| c.name == "gemini" && c.probe));
    }

    #[test]
    fn a_probe_the_media_plane_skipped_over_is_given_back_too() {
        let m = HealthMonitor::default();
        let cands = [
            keyed(ProviderKind::Openai, 0),
            keyed(ProviderKind::Deepgram, 1),
            keyed(ProviderKind::Gemini, 2),
        ];
        let deepgram = cands[1].key();
        for i in 0..HealthBook::default().config().failure_threshold {
            m.record(&deepgram, Outcome::ConnectFailed, i64::from(i));
        }
        let after = HealthBook::default().config().cool_down_ms + 10;
        let first = m.route("c1", &Strategy::Auto, CallSource::Web, &cands, after);
        assert!(first.chain[1].probe);
        // A media plane that cannot speak Deepgram goes from openai straight to gemini.
        m.observe(
            "c1",
            &event(1, failover("openai", "gemini", "provider_closed")),
            after,
        );
        m.observe("c1", &event(2, connected("gemini")), after);
        m.observe(
            "c1",
            &event(3, CallEventKind::Ended(EndReason::CallerHangup)),
            after,
        );
        let second = m.route("c2", &Strategy::Auto, CallSource::Web, &cands, after + 1);
        assert!(second.chain.iter().any(|c| c.name == "deepgram" && c.probe));
    }
}
