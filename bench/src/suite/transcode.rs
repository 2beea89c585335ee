//! Per-frame latency for `transcode` (Twilio µ-law 8 kHz ↔ Gemini Live PCM16 16/24 kHz),
//! where resampling destroys the byte stamps the pass-through scenarios read.
//!
//! - Caller → provider, by **position**: the gateway forwards all caller audio in order,
//!   so frame k (caller audio [20k, 20k+20) ms, 640 bytes at 16 kHz) has reached Gemini
//!   with the first `realtimeInput.audio` whose running byte total covers the end of it.
//!   Frame k's latency is that arrival minus frame k's send time. It counts samples, so a
//!   resampler that holds samples back shows as latency; the filters' fixed signal delay
//!   (a shift of the waveform, not of the count) does not.
//! - Provider → caller, by **chunk**: the fake sends agent audio in chunks paced 100 ms
//!   apart; each Twilio `media` the caller gets came from the latest chunk sent before
//!   it arrived. Its latency is arrival minus that chunk's send time, which is exact while
//!   the gateway takes less than the chunk interval; a longer delay would be
//!   under-reported (wrapping at 100 ms), so the report's figure is only trusted below it.
//!
//! Nothing in the audio names its call, so sessions are paired with callers by timing,
//! as in [`super::webrtc`]: a session fits a caller whose frames all arrived after they
//! were sent, and of those the one with the lowest median latency.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::caller::CallerLog;
use super::stats::{Percentiles, new_histogram, pair_best_first};
use crate::fakes::gemini::SessionRecord;

/// One 20 ms caller frame as Gemini gets it: 320 samples of PCM16 at 16 kHz.
pub const GEMINI_FRAME_BYTES: u64 = 640;
/// Appends sampled per (session, caller) candidate when pairing.
const PAIRING_SAMPLES: usize = 24;

/// What the transcode join adds to a level's figures.
#[derive(Debug, Default)]
pub struct TranscodeFigures {
    pub caller_to_provider: Percentiles,
    /// Frames sent before the session took audio: they wait for Gemini's setup by design.
    pub caller_to_provider_during_setup: Percentiles,
    pub provider_to_caller: Percentiles,
    pub jitter: Percentiles,
    /// Sessions no caller could have fed (their audio counts as cross-wired).
    pub unpaired_sessions: u64,
}

/// Frame latencies implied by `audio_in` if `sent_at` were its caller: `(frame, latency)`
/// for every frame the appends complete, or `None` when one would have arrived before
/// it was sent or was never sent (another caller's audio). `step` samples the appends.
fn latencies(
    sent_at: &[Instant],
    audio_in: &[(Instant, u64)],
    step: usize,
) -> Option<Vec<(usize, Duration)>> {
    let mut out = Vec::new();
    let mut next = 0usize;
    for (i, &(at, total)) in audio_in.iter().enumerate() {
        let complete = (total / GEMINI_FRAME_BYTES) as usize;
        if step > 1 && i % step != 0 {
            next = next.max(complete);
            continue;
        }
        for frame in next..complete {
            let sent = *sent_at.get(frame)?;
            out.push((frame, at.checked_duration_since(sent)?));
        }
        next = next.max(complete);
    }
    Some(out)
}

fn median(mut v: Vec<(usize, Duration)>) -> Option<Duration> {
    v.sort_unstable_by_key(|&(_, d)| d);
    v.get(v.len() / 2).map(|&(_, d)| d)
}

/// Pairs sessions with callers, best fit first, one to one: `(session, caller)`.
pub fn pair(callers: &[CallerLog], sessions: &[SessionRecord]) -> Vec<(usize, usize)> {
    let mut fits = Vec::new();
    for (s, session) in sessions.iter().enumerate() {
        if session.audio_in.is_empty() {
            continue;
        }
        let step = (session.audio_in.len() / PAIRING_SAMPLES).max(1);
        for (c, caller) in callers.iter().enumerate() {
            let Some(first) = caller.sent_at.first() else {
                continue;
            };
            // Cheap test first: a session cannot take audio before its caller sent any.
            if session.audio_in[0].0 < *first {
                continue;
            }
            if let Some(score) =
                latencies(&caller.sent_at, &session.audio_in, step).and_then(median)
            {
                fits.push((score, s, c));
            }
        }
    }
    pair_best_first(fits, sessions.len(), callers.len())
}

/// Joins the Twilio callers with the fake Gemini's sessions.
pub fn join(callers: &[CallerLog], sessions: &[SessionRecord]) -> TranscodeFigures {
    let pairs = pair(callers, sessions);
    let (mut c2p, mut c2p_setup, mut p2c, mut jitter) = (
        new_histogram(),
        new_histogram(),
        new_histogram(),
        new_histogram(),
    );
    for &(s, c) in &pairs {
        let (session, caller) = (&sessions[s], &callers[c]);
        let ready = session.audio_in.first().map(|&(at, _)| at);
        for (frame, latency) in latencies(&caller.sent_at, &session.audio_in, 1).unwrap_or_default()
        {
            let waited = ready.is_some_and(|ready| caller.sent_at[frame] < ready);
            let into = if waited { &mut c2p_setup } else { &mut c2p };
            into.saturating_record(latency.as_micros() as u64);
        }
        record_agent_audio(&caller.media_at, &session.audio_out, &mut p2c, &mut jitter);
    }
    TranscodeFigures {
        caller_to_provider: Percentiles::of(&c2p),
        caller_to_provider_during_setup: Percentiles::of(&c2p_setup),
        provider_to_caller: Percentiles::of(&p2c),
        jitter: Percentiles::of(&jitter),
        unpaired_sessions: (sessions.iter().filter(|s| !s.audio_in.is_empty()).count()
            - pairs.len()) as u64,
    }
}

/// Each `media` arrival against the latest chunk the session sent before it; jitter is
/// the change in that latency between consecutive chunks' first arrivals.
fn record_agent_audio(
    media_at: &[Instant],
    chunks_out: &[Instant],
    latency: &mut Histogram<u64>,
    jitter: &mut Histogram<u64>,
) {
    let mut chunk = 0usize;
    let mut last: Option<(usize, u64)> = None;
    for &arrived in media_at {
        while chunk + 1 < chunks_out.len() && chunks_out[chunk + 1] <= arrived {
            chunk += 1;
        }
        let Some(transit) = chunks_out
            .get(chunk)
            .and_then(|&sent| arrived.checked_duration_since(sent))
        else {
            continue;
        };
        let us = transit.as_micros() as u64;
        latency.saturating_record(us);
        match last {
            Some((c, previous)) if c != chunk => {
                jitter.saturating_record(us.abs_diff(previous));
                last = Some((chunk, us));
            }
            None => last = Some((chunk, us)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn caller(base: Instant, start_ms: u64, frames: u64) -> CallerLog {
        let mut log = CallerLog::new(0);
        log.sent_at = (0..frames).map(|k| ms(base, start_ms + 20 * k)).collect();
        log
    }

    /// A session that got two frames per append, `lag_ms` after the second was sent.
    fn session(base: Instant, start_ms: u64, frames: u64, lag_ms: u64) -> SessionRecord {
        let mut s = SessionRecord::default();
        s.audio_in = (1..=frames / 2)
            .map(|i| {
                let last_sent = start_ms + 20 * (2 * i - 1);
                (ms(base, last_sent + lag_ms), 2 * i * GEMINI_FRAME_BYTES)
            })
            .collect();
        s
    }

    #[test]
    fn frames_are_timed_by_the_append_that_completes_them() {
        let base = Instant::now();
        let c = caller(base, 0, 10);
        let s = session(base, 0, 10, 3);
        let l = latencies(&c.sent_at, &s.audio_in, 1).unwrap();
        // Frame 0 waited for frame 1 to be sent, then 3 ms: 23 ms; frame 1 took 3 ms.
        assert_eq!(l.len(), 10);
        assert_eq!(l[0], (0, Duration::from_millis(23)));
        assert_eq!(l[1], (1, Duration::from_millis(3)));
        // Audio that would have arrived before it was sent is not this caller's.
        let later = caller(base, 30, 10);
        assert!(latencies(&later.sent_at, &s.audio_in, 1).is_none());
        // Nor is more audio than the caller ever sent.
        let short = caller(base, 0, 4);
        assert!(latencies(&short.sent_at, &s.audio_in, 1).is_none());
    }

    #[test]
    fn sessions_pair_with_the_caller_that_fits_best() {
        let base = Instant::now();
        // Callers 40 ms apart; each session lags its own caller by 2 ms.
        let callers: Vec<CallerLog> = [0, 40, 80].iter().map(|&t| caller(base, t, 50)).collect();
        let sessions = vec![
            session(base, 80, 50, 2),
            session(base, 0, 50, 2),
            session(base, 40, 50, 2),
        ];
        let mut pairs = pair(&callers, &sessions);
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(0, 2), (1, 0), (2, 1)]);
        let figures = join(&callers, &sessions);
        assert_eq!(figures.unpaired_sessions, 0);
        // Odd frames took 2 ms and even ones 22 ms: the median is in between, p99 at 22.
        assert!(
            figures.caller_to_provider.p99_ms >= 21.5 && figures.caller_to_provider.p99_ms <= 22.5,
            "{:?}",
            figures.caller_to_provider
        );
    }

    #[test]
    fn agent_audio_is_timed_against_the_chunk_before_it() {
        let base = Instant::now();
        let chunks: Vec<Instant> = (0..5).map(|i| ms(base, 100 * i)).collect();
        // Chunk i arrives 1 ms late in two media messages, except chunk 3 at 7 ms.
        let mut media = Vec::new();
        for i in 0..5u64 {
            let lag = if i == 3 { 7 } else { 1 };
            media.push(ms(base, 100 * i + lag));
            media.push(ms(base, 100 * i + lag));
        }
        let (mut latency, mut jitter) = (new_histogram(), new_histogram());
        record_agent_audio(&media, &chunks, &mut latency, &mut jitter);
        assert_eq!(latency.len(), 10);
        assert_eq!(latency.max(), latency.highest_equivalent(7_000));
        // Jitter between chunks: 0, 0, 6, 6 ms.
        assert_eq!(jitter.len(), 4);
        assert_eq!(jitter.count_between(5_900, 6_100), 2);
    }
}
