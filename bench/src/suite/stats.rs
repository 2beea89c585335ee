//! Counting helpers: latency histograms (HdrHistogram, µs) and sets of frame numbers.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A µs histogram from 1 µs to 60 s at 2 significant figures (±1%): ~20 KB each, where
/// 3 figures would cost ~170 KB and every call holds several.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 2).unwrap_or_else(|_| {
        Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant figures is valid"))
    })
}

/// Length of one drift window.
pub const DRIFT_WINDOW_SECS: u64 = 5;

/// Latency per direction in consecutive windows of the run, shared by every caller and
/// provider session: shows whether latency drifts as a long run goes on.
#[derive(Debug, Default)]
pub struct Drift {
    windows: std::sync::Mutex<Vec<[Histogram<u64>; 2]>>,
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    CallerToProvider = 0,
    ProviderToCaller = 1,
}

/// One window of [`Drift`], for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DriftPoint {
    pub t_s: u64,
    pub caller_to_provider_p50_ms: f64,
    pub caller_to_provider_p99_ms: f64,
    pub provider_to_caller_p50_ms: f64,
    pub provider_to_caller_p99_ms: f64,
}

impl Drift {
    /// Records `us` for a frame that arrived `since_start` into the run.
    pub fn record(&self, since_start: std::time::Duration, direction: Direction, us: u64) {
        let window = (since_start.as_secs() / DRIFT_WINDOW_SECS) as usize;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        while windows.len() <= window {
            windows.push([new_histogram(), new_histogram()]);
        }
        windows[window][direction as usize].saturating_record(us);
    }

    pub fn points(&self) -> Vec<DriftPoint> {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .iter()
            .enumerate()
            .map(|(i, [c2p, p2c])| {
                let (a, b) = (Percentiles::of(c2p), Percentiles::of(p2c));
                DriftPoint {
                    t_s: i as u64 * DRIFT_WINDOW_SECS,
                    caller_to_provider_p50_ms: a.p50_ms,
                    caller_to_provider_p99_ms: a.p99_ms,
                    provider_to_caller_p50_ms: b.p50_ms,
                    provider_to_caller_p99_ms: b.p99_ms,
                }
            })
            .collect()
    }
}

/// Percentiles of one histogram, in ms for reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// One-to-one `(session, caller)` pairs from scored candidates `(score, session,
/// caller)`, the lowest score first: how the position-timed joins (webrtc, transcode)
/// match provider sessions with the callers they served.
pub fn pair_best_first<S: Ord>(
    mut fits: Vec<(S, usize, usize)>,
    sessions: usize,
    callers: usize,
) -> Vec<(usize, usize)> {
    fits.sort_unstable();
    let (mut s_used, mut c_used) = (vec![false; sessions], vec![false; callers]);
    let mut pairs = Vec::new();
    for (_, s, c) in fits {
        if s < sessions && c < callers && !s_used[s] && !c_used[c] {
            s_used[s] = true;
            c_used[c] = true;
            pairs.push((s, c));
        }
    }
    pairs
}

/// Adds `from` into `into`; values outside the bounds are clamped, never lost.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Which frame numbers arrived, with duplicates counted.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
    pub duplicates: u64,
    /// Arrivals whose number was lower than one already seen.
    pub reordered: u64,
    highest: Option<u32>,
}

impl SeqSet {
    pub fn insert(&mut self, seq: u32) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.words[word] |= 1 << bit;
        self.len += 1;
        if self.highest.is_some_and(|h| seq < h) {
            self.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
    }

    pub fn contains(&self, seq: u32) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// Distinct numbers seen.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_counts_distinct_duplicate_and_reordered() {
        let mut set = SeqSet::default();
        for seq in [0, 1, 2, 200, 5, 5, 1] {
            set.insert(seq);
        }
        assert_eq!(set.len(), 5);
        assert_eq!(set.duplicates, 2);
        assert_eq!(set.reordered, 1, "5 after 200");
        assert!(set.contains(200) && !set.contains(3) && !set.contains(100_000));
    }

    #[test]
    fn percentiles_are_in_ms_and_merge_adds_counts() {
        let mut a = new_histogram();
        for us in 1..=1000 {
            a.record(us * 10).unwrap();
        }
        let mut b = new_histogram();
        b.record(50_000).unwrap();
        merge(&mut a, &b);
        let p = Percentiles::of(&a);
        assert_eq!(p.count, 1001);
        assert!((p.p50_ms - 5.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 50.0).abs() < 0.6, "{p:?}");
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn drift_puts_each_frame_in_its_window() {
        let drift = Drift::default();
        let s = std::time::Duration::from_secs;
        drift.record(s(1), Direction::CallerToProvider, 1_000);
        drift.record(s(12), Direction::ProviderToCaller, 8_000);
        let points = drift.points();
        assert_eq!(points.len(), 3);
        assert!((points[0].caller_to_provider_p99_ms - 1.0).abs() < 0.02);
        assert_eq!(
            points[1],
            DriftPoint {
                t_s: 5,
                ..DriftPoint::default()
            }
        );
        assert_eq!(points[2].t_s, 10);
        assert!((points[2].provider_to_caller_p50_ms - 8.0).abs() < 0.1);
    }
}
