//! Provider health: a rolling window of call outcomes and a circuit breaker per provider
//! and region, sans-IO (every method takes the time as `now_ms`, epoch milliseconds).
//!
//! The caller owns a [`HealthBook`] behind its own lock, feeds it [`Outcome`]s as calls
//! report them, reads [`HealthBook::snapshot`] when it routes a call, and persists
//! [`HealthBook::rows`] into `provider_health_status` (migrations 0002).
//!
//! # States
//!
//! With the default [`HealthConfig`]:
//! - **down** while the circuit is open or half-open. The circuit opens after
//!   `failure_threshold` (5) consecutive failures, or when the window holds at least
//!   `min_samples` (10) connect/error samples of which at least `down_error_rate` (50 %)
//!   are errors. So "down" and "skip this provider" are the same fact, and there is one
//!   way back: the probe.
//! - **degraded** (circuit closed) when the window's error rate is at least
//!   `degraded_error_rate` (20 %) over at least `min_samples` samples, or the p90 time to
//!   first audio is at least `slow_ttfa_p90_ms` (1500 ms), or the p90 connect time is at
//!   least `slow_connect_p90_ms` (1500 ms; the setup timeout is 3 s). Latency needs
//!   `min_latency_samples` (3) values to count.
//! - **healthy** otherwise, including a provider nothing is known about yet.
//!
//! # Error rate
//!
//! Errors are [`Outcome::ConnectFailed`] and [`Outcome::MidCallError`]; successes are
//! [`Outcome::ConnectOk`]. The rate is errors / (errors + successes) over the window, so a
//! call that connects and then drops counts one of each. [`Outcome::FirstAudio`] only
//! feeds the latency statistics.
//!
//! # Circuit breaker
//!
//! - closed → open on a trip (above); the cool-down starts at `cool_down_ms` (30 s).
//! - open → half-open once the cool-down has passed (computed from `now`, no timer).
//! - half-open lets exactly one probe through ([`ProviderHealth::try_acquire_probe`]).
//!   A probe that reports nothing within `probe_timeout_ms` (20 s) is presumed lost (the
//!   call never tried that provider) and the slot frees; [`ProviderHealth::release_probe`]
//!   frees it at once.
//! - while half-open, the first outcome (from the probe or any other call; first audio
//!   does not count) decides: a connect success closes the circuit, clears the window
//!   (its samples describe the outage that just ended) and resets the cool-down; a
//!   failure re-opens it with the cool-down doubled, capped at `max_cool_down_ms` (5 min).
//! - while open, outcomes (late reports, last-resort attempts) feed the window only.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt;

/// Health of one provider in one region, as `provider_health_status.status` stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Degraded,
    Down,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        }
    }

    /// Parses the stored column; `None` for anything else.
    pub fn parse(s: &str) -> Option<HealthState> {
        match s {
            "healthy" => Some(HealthState::Healthy),
            "degraded" => Some(HealthState::Degraded),
            "down" => Some(HealthState::Down),
            _ => None,
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which provider deployment health is kept for: `provider_health_status`'s primary key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderKey {
    /// The provider's configured name (`platform_provider_configs.provider`).
    pub provider: String,
    /// `platform_provider_configs.region` (`global` by default).
    pub region: String,
}

impl ProviderKey {
    pub fn new(provider: impl Into<String>, region: impl Into<String>) -> Self {
        ProviderKey {
            provider: provider.into(),
            region: region.into(),
        }
    }
}

/// What one call learnt about a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The session was set up; `connect_ms` from dialling to a usable session.
    ConnectOk { connect_ms: u32 },
    /// Connect error, setup timeout or rejected session.
    ConnectFailed,
    /// Time from the caller's first turn (or the greeting request) to the first audio.
    FirstAudio { ttfa_ms: u32 },
    /// The socket dropped or the provider sent a fatal error during the call.
    MidCallError,
}

impl Outcome {
    fn is_failure(self) -> bool {
        matches!(self, Outcome::ConnectFailed | Outcome::MidCallError)
    }
}

/// Thresholds and sizes; see the module docs for what each one does. Zero sizes are
/// treated as one, so no configuration can make the book panic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthConfig {
    /// How far back the window reaches.
    pub window_ms: i64,
    /// Most outcomes kept per provider (the oldest go first): bounds memory.
    pub max_samples: usize,
    /// Error-rate thresholds need at least this many connect/error samples.
    pub min_samples: u32,
    /// Latency thresholds need at least this many values.
    pub min_latency_samples: u32,
    pub degraded_error_rate: f64,
    pub down_error_rate: f64,
    pub slow_ttfa_p90_ms: u32,
    pub slow_connect_p90_ms: u32,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    pub cool_down_ms: i64,
    pub max_cool_down_ms: i64,
    pub probe_timeout_ms: i64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            window_ms: 5 * 60_000,
            max_samples: 200,
            min_samples: 10,
            min_latency_samples: 3,
            degraded_error_rate: 0.20,
            down_error_rate: 0.50,
            slow_ttfa_p90_ms: 1_500,
            slow_connect_p90_ms: 1_500,
            failure_threshold: 5,
            cool_down_ms: 30_000,
            max_cool_down_ms: 5 * 60_000,
            probe_timeout_ms: 20_000,
        }
    }
}

/// The circuit as routing sees it at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitView {
    Closed,
    /// Skip the provider; the cool-down ends at `until_ms`.
    Open {
        until_ms: i64,
    },
    /// One probe may go through unless one already is.
    HalfOpen {
        probe_in_flight: bool,
    },
}

/// A provider's health at one instant: what routing reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthView {
    pub state: HealthState,
    pub circuit: CircuitView,
    /// Errors / (errors + successes) in the window, 0 when empty.
    pub error_rate: f64,
    /// Connect and error samples in the window.
    pub samples: u32,
    pub consecutive_failures: u32,
    pub connect_p50_ms: Option<u32>,
    pub connect_p90_ms: Option<u32>,
    pub ttfa_p50_ms: Option<u32>,
    pub ttfa_p90_ms: Option<u32>,
}

impl Default for HealthView {
    /// A provider nothing is known about: healthy, closed, no statistics.
    fn default() -> Self {
        HealthView {
            state: HealthState::Healthy,
            circuit: CircuitView::Closed,
            error_rate: 0.0,
            samples: 0,
            consecutive_failures: 0,
            connect_p50_ms: None,
            connect_p90_ms: None,
            ttfa_p50_ms: None,
            ttfa_p90_ms: None,
        }
    }
}

/// One `provider_health_status` row, typed for binding (INTEGER columns as `i32`, BIGINT
/// as `i64`, DOUBLE PRECISION as `f64`, `details` as JSON text).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthRow {
    pub provider: String,
    pub region: String,
    pub status: HealthState,
    /// When this row was computed (the `now` passed to [`HealthBook::rows`]).
    pub last_check_at: i64,
    pub error_rate: f64,
    /// Mean connect time over the window.
    pub avg_latency_ms: Option<i32>,
    /// p50 connect time.
    pub connect_ms: Option<i32>,
    /// p50 time to first audio.
    pub ttfa_ms: Option<i32>,
    pub consecutive_failures: i32,
    /// `{"samples", "connect_p90_ms", "ttfa_p90_ms", "circuit", "open_until",
    /// "last_outcome_at"}`.
    pub details: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Circuit {
    Closed,
    Open { until_ms: i64 },
    HalfOpen { probe_started_at: Option<i64> },
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at_ms: i64,
    outcome: Outcome,
}

/// Window and breaker for one provider in one region.
#[derive(Clone, Debug)]
pub struct ProviderHealth {
    config: HealthConfig,
    samples: VecDeque<Sample>,
    consecutive_failures: u32,
    circuit: Circuit,
    /// The cool-down the next trip uses (doubles on each failed probe).
    cool_down_ms: i64,
    last_outcome_at: Option<i64>,
}

impl ProviderHealth {
    pub fn new(config: HealthConfig) -> Self {
        ProviderHealth {
            config,
            samples: VecDeque::new(),
            consecutive_failures: 0,
            circuit: Circuit::Closed,
            cool_down_ms: config.cool_down_ms.max(0),
            last_outcome_at: None,
        }
    }

    /// Feeds one outcome reported at `now_ms`.
    pub fn record(&mut self, outcome: Outcome, now_ms: i64) {
        self.last_outcome_at = Some(self.last_outcome_at.map_or(now_ms, |t| t.max(now_ms)));
        self.samples.push_back(Sample {
            at_ms: now_ms,
            outcome,
        });
        self.evict(now_ms);
        match outcome {
            Outcome::ConnectOk { .. } => self.consecutive_failures = 0,
            Outcome::ConnectFailed | Outcome::MidCallError => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1)
            }
            Outcome::FirstAudio { .. } => {}
        }
        if matches!(outcome, Outcome::FirstAudio { .. }) {
            return;
        }
        match self.circuit_at(now_ms) {
            Circuit::Closed => {
                if outcome.is_failure() && self.tripped(now_ms) {
                    self.open(now_ms);
                }
            }
            Circuit::HalfOpen { .. } => {
                if outcome.is_failure() {
                    self.cool_down_ms = self
                        .cool_down_ms
                        .saturating_mul(2)
                        .min(self.config.max_cool_down_ms.max(self.config.cool_down_ms));
                    self.open(now_ms);
                } else {
                    self.close();
                }
            }
            // Late reports and last-resort attempts: statistics only.
            Circuit::Open { .. } => {}
        }
    }

    /// May a new call use this provider now? Closed: yes. Open: no. Half-open: only if
    /// this call takes the single probe slot (then it must report an outcome, or
    /// [`release_probe`](Self::release_probe) if it ends without trying).
    pub fn allow(&mut self, now_ms: i64) -> bool {
        match self.circuit_at(now_ms) {
            Circuit::Closed => true,
            Circuit::Open { .. } => false,
            Circuit::HalfOpen { .. } => self.try_acquire_probe(now_ms),
        }
    }

    /// Takes the half-open probe slot; false when the circuit is not half-open or the
    /// slot is taken (and not yet timed out).
    pub fn try_acquire_probe(&mut self, now_ms: i64) -> bool {
        match self.circuit_at(now_ms) {
            Circuit::HalfOpen { probe_started_at }
                if !self.probe_busy(probe_started_at, now_ms) =>
            {
                self.circuit = Circuit::HalfOpen {
                    probe_started_at: Some(now_ms),
                };
                true
            }
            _ => false,
        }
    }

    /// Frees the probe slot of a call that ended without trying this provider.
    pub fn release_probe(&mut self) {
        if let Circuit::HalfOpen { .. } = self.circuit {
            self.circuit = Circuit::HalfOpen {
                probe_started_at: None,
            };
        }
    }

    /// The health at `now_ms` (samples older than the window are ignored).
    pub fn view(&self, now_ms: i64) -> HealthView {
        let stats = self.stats(now_ms);
        let circuit = match self.circuit_at(now_ms) {
            Circuit::Closed => CircuitView::Closed,
            Circuit::Open { until_ms } => CircuitView::Open { until_ms },
            Circuit::HalfOpen { probe_started_at } => CircuitView::HalfOpen {
                probe_in_flight: self.probe_busy(probe_started_at, now_ms),
            },
        };
        let state = match circuit {
            CircuitView::Closed => self.state_from(&stats),
            CircuitView::Open { .. } | CircuitView::HalfOpen { .. } => HealthState::Down,
        };
        HealthView {
            state,
            circuit,
            error_rate: stats.error_rate,
            samples: stats.samples,
            consecutive_failures: self.consecutive_failures,
            connect_p50_ms: stats.connect.p50,
            connect_p90_ms: stats.connect.p90,
            ttfa_p50_ms: stats.ttfa.p50,
            ttfa_p90_ms: stats.ttfa.p90,
        }
    }

    /// The `provider_health_status` row for `key` at `now_ms`.
    pub fn row(&self, key: &ProviderKey, now_ms: i64) -> HealthRow {
        let view = self.view(now_ms);
        let stats = self.stats(now_ms);
        let (circuit, open_until) = match view.circuit {
            CircuitView::Closed => ("closed", None),
            CircuitView::Open { until_ms } => ("open", Some(until_ms)),
            CircuitView::HalfOpen { .. } => ("half_open", None),
        };
        let details = serde_json::json!({
            "samples": view.samples,
            "connect_p90_ms": view.connect_p90_ms,
            "ttfa_p90_ms": view.ttfa_p90_ms,
            "circuit": circuit,
            "open_until": open_until,
            "last_outcome_at": self.last_outcome_at,
        });
        HealthRow {
            provider: key.provider.clone(),
            region: key.region.clone(),
            status: view.state,
            last_check_at: now_ms,
            error_rate: view.error_rate.clamp(0.0, 1.0),
            avg_latency_ms: stats.connect.mean.map(to_i32),
            connect_ms: view.connect_p50_ms.map(to_i32),
            ttfa_ms: view.ttfa_p50_ms.map(to_i32),
            consecutive_failures: to_i32(view.consecutive_failures),
            details: details.to_string(),
        }
    }

    fn circuit_at(&self, now_ms: i64) -> Circuit {
        match self.circuit {
            Circuit::Open { until_ms } if now_ms >= until_ms => Circuit::HalfOpen {
                probe_started_at: None,
            },
            c => c,
        }
    }

    fn probe_busy(&self, probe_started_at: Option<i64>, now_ms: i64) -> bool {
        probe_started_at.is_some_and(|t| now_ms.saturating_sub(t) < self.config.probe_timeout_ms)
    }

    fn open(&mut self, now_ms: i64) {
        self.circuit = Circuit::Open {
            until_ms: now_ms.saturating_add(self.cool_down_ms),
        };
    }

    /// Closes after a successful probe. The window restarts from that success: the samples
    /// before it describe the outage that just ended and would trip the breaker again.
    fn close(&mut self) {
        self.circuit = Circuit::Closed;
        self.consecutive_failures = 0;
        self.cool_down_ms = self.config.cool_down_ms.max(0);
        let success = self.samples.pop_back();
        self.samples.clear();
        self.samples.extend(success);
    }

    fn tripped(&self, now_ms: i64) -> bool {
        if self.consecutive_failures >= self.config.failure_threshold.max(1) {
            return true;
        }
        let stats = self.stats(now_ms);
        stats.samples >= self.config.min_samples.max(1)
            && stats.error_rate >= self.config.down_error_rate
    }

    fn state_from(&self, stats: &WindowStats) -> HealthState {
        let c = &self.config;
        let enough = stats.samples >= c.min_samples.max(1);
        if enough && stats.error_rate >= c.down_error_rate {
            return HealthState::Down;
        }
        let slow = |l: &Latency, limit: u32| {
            l.count >= c.min_latency_samples.max(1) && l.p90.is_some_and(|p| p >= limit)
        };
        if (enough && stats.error_rate >= c.degraded_error_rate)
            || slow(&stats.ttfa, c.slow_ttfa_p90_ms)
            || slow(&stats.connect, c.slow_connect_p90_ms)
        {
            return HealthState::Degraded;
        }
        HealthState::Healthy
    }

    fn evict(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.config.window_ms);
        while self.samples.front().is_some_and(|s| s.at_ms < oldest) {
            self.samples.pop_front();
        }
        while self.samples.len() > self.config.max_samples.max(1) {
            self.samples.pop_front();
        }
    }

    fn stats(&self, now_ms: i64) -> WindowStats {
        let oldest = now_ms.saturating_sub(self.config.window_ms);
        let mut errors = 0u32;
        let mut oks = 0u32;
        let mut connect = Vec::new();
        let mut ttfa = Vec::new();
        for s in self.samples.iter().filter(|s| s.at_ms >= oldest) {
            match s.outcome {
                Outcome::ConnectOk { connect_ms } => {
                    oks += 1;
                    connect.push(connect_ms);
                }
                Outcome::ConnectFailed | Outcome::MidCallError => errors += 1,
                Outcome::FirstAudio { ttfa_ms } => ttfa.push(ttfa_ms),
            }
        }
        let samples = errors + oks;
        WindowStats {
            samples,
            error_rate: if samples == 0 {
                0.0
            } else {
                f64::from(errors) / f64::from(samples)
            },
            connect: Latency::of(connect),
            ttfa: Latency::of(ttfa),
        }
    }
}

struct WindowStats {
    samples: u32,
    error_rate: f64,
    connect: Latency,
    ttfa: Latency,
}

struct Latency {
    count: u32,
    p50: Option<u32>,
    p90: Option<u32>,
    mean: Option<u32>,
}

impl Latency {
    fn of(mut values: Vec<u32>) -> Latency {
        values.sort_unstable();
        let count = u32::try_from(values.len()).unwrap_or(u32::MAX);
        let mean = if values.is_empty() {
            None
        } else {
            let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
            u32::try_from(sum / values.len() as u64).ok()
        };
        Latency {
            count,
            p50: percentile(&values, 50),
            p90: percentile(&values, 90),
            mean,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], pct: usize) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Health of every provider deployment, keyed by provider and region. Not thread-safe by
/// itself: share it behind a `Mutex` (each call is a few map operations).
#[derive(Clone, Debug, Default)]
pub struct HealthBook {
    config: HealthConfig,
    providers: HashMap<ProviderKey, ProviderHealth>,
}

impl HealthBook {
    pub fn new(config: HealthConfig) -> Self {
        HealthBook {
            config,
            providers: HashMap::new(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    pub fn record(&mut self, key: &ProviderKey, outcome: Outcome, now_ms: i64) {
        self.entry(key).record(outcome, now_ms);
    }

    /// See [`ProviderHealth::allow`]; an unknown provider is allowed.
    pub fn allow(&mut self, key: &ProviderKey, now_ms: i64) -> bool {
        self.providers.get_mut(key).is_none_or(|p| p.allow(now_ms))
    }

    /// See [`ProviderHealth::try_acquire_probe`]; false for an unknown provider (its
    /// circuit is closed, there is nothing to probe).
    pub fn try_acquire_probe(&mut self, key: &ProviderKey, now_ms: i64) -> bool {
        self.providers
            .get_mut(key)
            .is_some_and(|p| p.try_acquire_probe(now_ms))
    }

    pub fn release_probe(&mut self, key: &ProviderKey) {
        if let Some(p) = self.providers.get_mut(key) {
            p.release_probe();
        }
    }

    /// One provider's health; the default view for an unknown one.
    pub fn view(&self, key: &ProviderKey, now_ms: i64) -> HealthView {
        self.providers
            .get(key)
            .map(|p| p.view(now_ms))
            .unwrap_or_default()
    }

    /// Every known provider's health at `now_ms`: the input routing takes.
    pub fn snapshot(&self, now_ms: i64) -> HashMap<ProviderKey, HealthView> {
        self.providers
            .iter()
            .map(|(k, p)| (k.clone(), p.view(now_ms)))
            .collect()
    }

    /// Rows for `provider_health_status`, ordered by provider then region.
    pub fn rows(&self, now_ms: i64) -> Vec<HealthRow> {
        let mut rows: Vec<HealthRow> = self
            .providers
            .iter()
            .map(|(k, p)| p.row(k, now_ms))
            .collect();
        rows.sort_by(|a, b| (&a.provider, &a.region).cmp(&(&b.provider, &b.region)));
        rows
    }

    fn entry(&mut self, key: &ProviderKey) -> &mut ProviderHealth {
        let config = self.config;
        self.providers
            .entry(key.clone())
            .or_insert_with(|| ProviderHealth::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: i64 = 30_000;

    fn health() -> ProviderHealth {
        ProviderHealth::new(HealthConfig::default())
    }

    fn ok(h: &mut ProviderHealth, now_ms: i64) {
        h.record(Outcome::ConnectOk { connect_ms: 100 }, now_ms);
    }

    fn fail(h: &mut ProviderHealth, n: u32, now_ms: i64) {
        for _ in 0..n {
            h.record(Outcome::ConnectFailed, now_ms);
        }
    }

    /// A provider whose circuit opened at t = 0 (five consecutive failures).
    fn tripped() -> ProviderHealth {
        let mut h = health();
        fail(&mut h, 5, 0);
        h
    }

    #[test]
    fn an_unknown_provider_is_healthy_and_allowed() {
        let mut book = HealthBook::default();
        let key = ProviderKey::new("openai", "global");
        assert_eq!(book.view(&key, 0), HealthView::default());
        assert!(book.allow(&key, 0));
        assert!(book.snapshot(0).is_empty());
    }

    #[test]
    fn error_rate_and_percentiles_come_from_the_window() {
        let mut h = health();
        for (i, ms) in [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
            .into_iter()
            .enumerate()
        {
            h.record(Outcome::ConnectOk { connect_ms: ms }, i as i64);
            h.record(Outcome::FirstAudio { ttfa_ms: ms / 2 }, i as i64);
        }
        h.record(Outcome::ConnectFailed, 20);
        h.record(Outcome::MidCallError, 21);
        let v = h.view(30);
        assert_eq!(v.samples, 12, "first-audio values are not connect samples");
        assert!((v.error_rate - 2.0 / 12.0).abs() < 1e-9);
        assert_eq!(v.connect_p50_ms, Some(500));
        assert_eq!(v.connect_p90_ms, Some(900));
        assert_eq!(v.ttfa_p50_ms, Some(250));
        assert_eq!(v.ttfa_p90_ms, Some(450));
        assert_eq!(v.consecutive_failures, 2);
        assert_eq!(v.state, HealthState::Healthy, "17 % errors is under 20 %");
    }

    #[test]
    fn samples_older_than_the_window_stop_counting() {
        let mut h = health();
        let window = HealthConfig::default().window_ms;
        fail(&mut h, 4, 0);
        for t in 1..=6 {
            ok(&mut h, t);
        }
        assert_eq!(
            h.view(10).state,
            HealthState::Degraded,
            "40 % errors over 10"
        );
        // The failures age out first; reading does not need a write to evict.
        let v = h.view(window + 1);
        assert_eq!(v.samples, 6);
        assert_eq!(v.error_rate, 0.0);
        assert_eq!(v.state, HealthState::Healthy);
        // And a write drops everything older than its window for good.
        ok(&mut h, window + 2);
        assert_eq!(h.samples.len(), 6, "t = 2..=6 and the new one");
    }

    #[test]
    fn the_window_keeps_at_most_max_samples() {
        let mut h = ProviderHealth::new(HealthConfig {
            max_samples: 4,
            ..HealthConfig::default()
        });
        h.record(Outcome::ConnectOk { connect_ms: 9_000 }, 0);
        for t in 1..=4 {
            ok(&mut h, t);
        }
        assert_eq!(h.samples.len(), 4);
        let v = h.view(5);
        assert_eq!(v.samples, 4);
        assert_eq!(
            v.connect_p90_ms,
            Some(100),
            "the slow oldest sample was evicted"
        );
    }

    #[test]
    fn twenty_percent_errors_degrade_only_with_enough_samples() {
        let mut h = health();
        fail(&mut h, 1, 0);
        for t in 1..=3 {
            ok(&mut h, t);
        }
        assert_eq!(
            h.view(4).state,
            HealthState::Healthy,
            "25 % over 4 samples is too few"
        );
        ok(&mut h, 5);
        fail(&mut h, 1, 6);
        for t in 7..=10 {
            ok(&mut h, t);
        }
        let v = h.view(11);
        assert_eq!(v.samples, 10);
        assert_eq!(v.state, HealthState::Degraded);
        assert_eq!(v.circuit, CircuitView::Closed);
    }

    #[test]
    fn slow_time_to_first_audio_degrades() {
        let mut h = health();
        for t in 0..3 {
            ok(&mut h, t);
            h.record(Outcome::FirstAudio { ttfa_ms: 400 }, t);
        }
        assert_eq!(h.view(5).state, HealthState::Healthy);
        for t in 5..7 {
            h.record(Outcome::FirstAudio { ttfa_ms: 2_000 }, t);
        }
        let v = h.view(8);
        assert_eq!(v.ttfa_p90_ms, Some(2_000));
        assert_eq!(v.state, HealthState::Degraded);
    }

    #[test]
    fn slow_connects_degrade() {
        let mut h = health();
        for t in 0..3 {
            h.record(Outcome::ConnectOk { connect_ms: 2_500 }, t);
        }
        assert_eq!(h.view(3).state, HealthState::Degraded);
    }

    #[test]
    fn consecutive_failures_open_the_circuit_at_the_threshold() {
        let mut h = health();
        fail(&mut h, 4, 0);
        assert_eq!(h.view(0).circuit, CircuitView::Closed);
        assert!(h.allow(0));
        fail(&mut h, 1, 10);
        let v = h.view(10);
        assert_eq!(
            v.circuit,
            CircuitView::Open {
                until_ms: 10 + COOL
            }
        );
        assert_eq!(v.state, HealthState::Down);
        assert!(!h.allow(10));
        assert!(!h.try_acquire_probe(10));
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let mut h = health();
        fail(&mut h, 4, 0);
        ok(&mut h, 1);
        fail(&mut h, 4, 2);
        assert_eq!(h.view(3).circuit, CircuitView::Closed);
        assert_eq!(h.view(3).consecutive_failures, 4);
    }

    #[test]
    fn the_threshold_is_configurable() {
        let mut h = ProviderHealth::new(HealthConfig {
            failure_threshold: 3,
            ..HealthConfig::default()
        });
        fail(&mut h, 3, 0);
        assert!(matches!(h.view(0).circuit, CircuitView::Open { .. }));
    }

    #[test]
    fn half_the_calls_failing_opens_the_circuit_without_a_failure_streak() {
        let mut h = health();
        for t in 0..4 {
            ok(&mut h, t * 2);
            h.record(Outcome::MidCallError, t * 2 + 1);
        }
        assert_eq!(
            h.view(8).circuit,
            CircuitView::Closed,
            "8 samples are too few"
        );
        ok(&mut h, 8);
        h.record(Outcome::MidCallError, 9);
        assert_eq!(h.view(9).circuit, CircuitView::Open { until_ms: 9 + COOL });
    }

    #[test]
    fn after_the_cool_down_exactly_one_probe_goes_through() {
        let mut h = tripped();
        assert!(!h.allow(COOL - 1));
        assert_eq!(
            h.view(COOL).circuit,
            CircuitView::HalfOpen {
                probe_in_flight: false
            }
        );
        assert_eq!(h.view(COOL).state, HealthState::Down);
        assert!(h.allow(COOL), "the first caller takes the probe");
        assert!(!h.allow(COOL + 1));
        assert!(!h.try_acquire_probe(COOL + 1));
        assert_eq!(
            h.view(COOL + 1).circuit,
            CircuitView::HalfOpen {
                probe_in_flight: true
            }
        );
    }

    #[test]
    fn a_lost_probe_frees_its_slot_after_the_probe_timeout() {
        let mut h = tripped();
        let timeout = HealthConfig::default().probe_timeout_ms;
        assert!(h.try_acquire_probe(COOL));
        assert!(!h.try_acquire_probe(COOL + timeout - 1));
        assert!(h.try_acquire_probe(COOL + timeout));
    }

    #[test]
    fn a_released_probe_frees_its_slot_at_once() {
        let mut h = tripped();
        assert!(h.try_acquire_probe(COOL));
        h.release_probe();
        assert!(h.try_acquire_probe(COOL + 1));
    }

    #[test]
    fn a_successful_probe_closes_the_circuit_and_restarts_the_window() {
        let mut h = tripped();
        assert!(h.try_acquire_probe(COOL));
        h.record(Outcome::ConnectOk { connect_ms: 250 }, COOL + 100);
        let v = h.view(COOL + 100);
        assert_eq!(v.circuit, CircuitView::Closed);
        assert_eq!(v.state, HealthState::Healthy);
        assert_eq!(v.samples, 1, "only the probe's success remains");
        assert_eq!(v.connect_p50_ms, Some(250));
        assert_eq!(v.consecutive_failures, 0);
        assert!(h.allow(COOL + 101));
    }

    #[test]
    fn a_failed_probe_reopens_with_a_doubled_capped_cool_down() {
        let mut h = tripped();
        let max = HealthConfig::default().max_cool_down_ms;
        let mut now = COOL;
        let mut expected = [2 * COOL, 4 * COOL, 8 * COOL, max, max].into_iter();
        for _ in 0..5 {
            assert!(h.try_acquire_probe(now), "half-open at {now}");
            h.record(Outcome::ConnectFailed, now);
            let cool = expected.next().unwrap();
            assert_eq!(
                h.view(now).circuit,
                CircuitView::Open {
                    until_ms: now + cool
                }
            );
            assert!(!h.allow(now + cool - 1));
            now += cool;
        }
    }

    #[test]
    fn closing_resets_the_back_off() {
        let mut h = tripped();
        assert!(h.try_acquire_probe(COOL));
        h.record(Outcome::ConnectFailed, COOL);
        let reopened_until = COOL + 2 * COOL;
        assert!(h.try_acquire_probe(reopened_until));
        ok(&mut h, reopened_until);
        fail(&mut h, 5, reopened_until + 1);
        assert_eq!(
            h.view(reopened_until + 1).circuit,
            CircuitView::Open {
                until_ms: reopened_until + 1 + COOL
            }
        );
    }

    #[test]
    fn outcomes_while_open_feed_the_window_but_not_the_circuit() {
        let mut h = tripped();
        ok(&mut h, 10);
        fail(&mut h, 3, 11);
        assert_eq!(h.view(12).circuit, CircuitView::Open { until_ms: COOL });
        assert_eq!(h.view(12).samples, 9);
    }

    #[test]
    fn first_audio_does_not_decide_a_probe() {
        let mut h = tripped();
        assert!(h.try_acquire_probe(COOL));
        h.record(Outcome::FirstAudio { ttfa_ms: 300 }, COOL + 1);
        assert_eq!(
            h.view(COOL + 1).circuit,
            CircuitView::HalfOpen {
                probe_in_flight: true
            }
        );
    }

    #[test]
    fn zero_sizes_and_a_backwards_clock_do_not_panic() {
        let mut h = ProviderHealth::new(HealthConfig {
            window_ms: 0,
            max_samples: 0,
            min_samples: 0,
            min_latency_samples: 0,
            failure_threshold: 0,
            cool_down_ms: 0,
            max_cool_down_ms: 0,
            probe_timeout_ms: 0,
            ..HealthConfig::default()
        });
        h.record(Outcome::ConnectFailed, i64::MAX);
        h.record(
            Outcome::ConnectOk {
                connect_ms: u32::MAX,
            },
            i64::MIN,
        );
        h.record(Outcome::FirstAudio { ttfa_ms: u32::MAX }, 0);
        let _ = h.view(i64::MIN);
        let _ = h.view(i64::MAX);
        let _ = h.allow(0);
        let row = h.row(&ProviderKey::new("x", "y"), 0);
        assert!((0.0..=1.0).contains(&row.error_rate));
    }

    #[test]
    fn rows_carry_what_provider_health_status_stores() {
        let mut book = HealthBook::default();
        let openai = ProviderKey::new("openai", "global");
        let gemini_eu = ProviderKey::new("gemini", "eu");
        let gemini_us = ProviderKey::new("gemini", "us");
        for t in 0..3 {
            book.record(
                &openai,
                Outcome::ConnectOk {
                    connect_ms: 100 * (t as u32 + 1),
                },
                t,
            );
            book.record(&openai, Outcome::FirstAudio { ttfa_ms: 700 }, t);
        }
        book.record(&openai, Outcome::ConnectFailed, 3);
        for _ in 0..5 {
            book.record(&gemini_us, Outcome::ConnectFailed, 4);
        }
        book.record(&gemini_eu, Outcome::ConnectOk { connect_ms: 50 }, 5);

        let rows = book.rows(1_000);
        let keys: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.provider.as_str(), r.region.as_str()))
            .collect();
        assert_eq!(
            keys,
            [("gemini", "eu"), ("gemini", "us"), ("openai", "global")]
        );

        let o = &rows[2];
        assert_eq!(o.status, HealthState::Healthy);
        assert_eq!(o.last_check_at, 1_000);
        assert!((o.error_rate - 0.25).abs() < 1e-9);
        assert_eq!(o.avg_latency_ms, Some(200));
        assert_eq!(o.connect_ms, Some(200));
        assert_eq!(o.ttfa_ms, Some(700));
        assert_eq!(o.consecutive_failures, 1);
        let details: serde_json::Value = serde_json::from_str(&o.details).unwrap();
        assert_eq!(details["circuit"], "closed");
        assert_eq!(details["samples"], 4);
        assert_eq!(details["last_outcome_at"], 3);

        let us = &rows[1];
        assert_eq!(us.status.as_str(), "down");
        assert_eq!(us.consecutive_failures, 5);
        assert_eq!(us.connect_ms, None);
        let details: serde_json::Value = serde_json::from_str(&us.details).unwrap();
        assert_eq!(details["circuit"], "open");
        assert_eq!(details["open_until"], 4 + COOL);
    }

    #[test]
    fn states_round_trip_through_their_column_text() {
        for s in [
            HealthState::Healthy,
            HealthState::Degraded,
            HealthState::Down,
        ] {
            assert_eq!(HealthState::parse(s.as_str()), Some(s));
        }
        assert_eq!(HealthState::parse("up"), None);
    }
}
