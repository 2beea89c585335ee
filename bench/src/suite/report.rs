//! What a run found, joined from both ends, in the shape of the JSON report; and the
//! table printed at the end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::caller::{CallOutcome, CallerLog};
use super::provider::ProviderLog;
use super::stats::{Percentiles, merge, new_histogram};

/// Agent frames the provider sent this close before a `speech_started` may be dropped
/// by the gateway's barge-in on purpose (it clears what it has not yet forwarded), and
/// frames sent this close before the caller hung up may still be in flight. They are not
/// counted as lost; anything older that never arrived is.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_millis(250);

/// The whole report: one entry per scenario and concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub command: String,
    pub started_unix_s: u64,
    pub cores: usize,
    pub levels: Vec<LevelReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    pub scenario: String,
    pub calls: usize,
    pub ramp_per_sec: f64,
    pub duration_secs: u64,
    pub provider_delay_ms: u64,
    pub calls_completed: u64,
    pub calls_failed: u64,
    /// Up to ten failure reasons, for reading.
    pub failures: Vec<String>,
    /// Webhook sent (webrtc: offer posted) → first agent audio at the caller.
    pub setup: Percentiles,
    /// `setup` minus the fake provider's own handshake and response delay.
    pub setup_gateway: Percentiles,
    /// webrtc: offer posted → answer received (the gateway builds its peer, gathers its
    /// candidates and plans the call).
    pub setup_signalling: Percentiles,
    /// webrtc: answer received → the caller's peer connected (ICE checks and DTLS).
    pub setup_connect: Percentiles,
    /// Caller frame sent → the same bytes at the provider, after the provider was up.
    pub caller_to_provider: Percentiles,
    /// The same for frames sent while the gateway was still connecting the provider.
    pub caller_to_provider_during_setup: Percentiles,
    /// Provider delta sent → the same bytes at the caller.
    pub provider_to_caller: Percentiles,
    /// Variation of the provider → caller transit between consecutive frames.
    pub provider_to_caller_jitter: Percentiles,
    /// Provider `speech_started` sent → Twilio `clear` received.
    pub barge_in: Percentiles,
    pub speech_starts_without_clear: u64,
    /// Failover: the caller's last agent audio before the cut → first audio after it.
    pub failover_gap: Percentiles,
    /// Failover: the cut → the caller's first audio after it (from the fallback).
    pub failover_recovery: Percentiles,
    pub failovers_without_audio: u64,
    pub frames: FrameCounts,
    /// From the first call placed to the last one ended.
    pub wall_seconds: f64,
    /// CPU the bench itself (callers, fake provider) used meanwhile: on a shared machine
    /// it competes with the gateway for the same cores.
    pub bench_cpu_seconds: f64,
    /// p50/p99 per direction in consecutive 5 s windows.
    pub drift: Vec<super::stats::DriftPoint>,
    pub gateway: Option<GatewayUsage>,
    /// Set when the gateway process exited during the run.
    pub gateway_crash: Option<String>,
    /// webrtc: the fixed delay of the gateway's resamplers and Opus encoder, which the
    /// latency rows (timed by sample position) do not include.
    pub signal_delay: Option<super::webrtc::SignalDelay>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FrameCounts {
    pub caller_sent: u64,
    pub caller_received: u64,
    pub caller_lost: u64,
    /// webrtc: of `caller_lost`, frames missing from the very start of a call (the
    /// provider's audio lines up with the caller's only from a later frame on).
    pub caller_lost_first: u64,
    /// Failover: sent after the provider was cut, to the fallback the bench cannot see.
    pub caller_exempt: u64,
    /// Frames the provider could not read a stamp from (altered or misaligned bytes).
    pub caller_unstamped: u64,
    pub provider_sent: u64,
    /// Sent inside the in-flight grace of a barge-in or the hang-up: not judged.
    pub provider_exempt: u64,
    pub provider_received: u64,
    pub provider_lost: u64,
    pub provider_unstamped: u64,
    /// webrtc: agent frames heard more than one frame (20 ms) behind the best-case
    /// schedule of their reply: a browser's jitter buffer sized for one frame would have
    /// played silence instead. Not lost.
    pub provider_late: u64,
    /// webrtc: replies the caller heard in more than one piece (each extra piece is one):
    /// the gateway's playout ran dry mid-reply and filled the gap with silence.
    pub provider_split_runs: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Caller frames that reached another call's provider session.
    pub cross_wired: u64,
    pub responses_cancelled: u64,
}

impl FrameCounts {
    pub fn lost(&self) -> u64 {
        self.caller_lost + self.provider_lost
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub call_seconds: f64,
    pub cpu_us_per_call_second: f64,
    pub rss_idle_kb: u64,
    pub rss_peak_kb: u64,
    /// (RSS under full load − idle RSS) / concurrent calls.
    pub rss_kb_per_call: f64,
    /// Slope of RSS under full load (KB per minute): memory drift during a soak.
    pub rss_growth_kb_per_min: f64,
    pub samples: Vec<UsageSample>,
}

/// One /proc reading during the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageSample {
    pub t_s: f64,
    pub active_calls: u64,
    pub rss_kb: u64,
    /// Gateway CPU since the previous sample, in % of one core.
    pub cpu_percent: f64,
}

/// Joins the callers' and the provider sessions' logs into the level's figures.
/// `killed_at`: when the failover scenario cut the provider sessions. Frames sent after
/// it minus [`IN_FLIGHT_GRACE`] are not judged (caller frames then go to the fallback,
/// which the bench does not observe), and the failover gap is measured around it.
pub fn join(
    callers: &[CallerLog],
    providers: &[ProviderLog],
    killed_at: Option<Instant>,
) -> (JoinedFigures, FrameCounts) {
    let mut by_call: HashMap<u16, Vec<&ProviderLog>> = HashMap::new();
    for p in providers {
        if let Some(call) = p.call {
            by_call.entry(call).or_default().push(p);
        }
    }
    let callers_by_index: HashMap<u16, &CallerLog> = callers.iter().map(|c| (c.index, c)).collect();
    let mut f = JoinedFigures::default();
    let mut gap = new_histogram();
    let mut recovery = new_histogram();
    let judged = |at: Instant| killed_at.is_none_or(|k| at + IN_FLIGHT_GRACE < k);
    let mut counts = FrameCounts::default();
    let (mut setup, mut setup_gateway, mut c2p, mut c2p_setup, mut p2c, mut jitter, mut barge) = (
        new_histogram(),
        new_histogram(),
        new_histogram(),
        new_histogram(),
        new_histogram(),
        new_histogram(),
        new_histogram(),
    );
    for caller in callers {
        merge(&mut p2c, &caller.agent_latency_us);
        merge(&mut jitter, &caller.jitter_us);
        counts.provider_unstamped += caller.unstamped;
        counts.caller_sent += u64::from(caller.frames_sent);
        let mut sessions = by_call.get(&caller.index).cloned().unwrap_or_default();
        sessions.sort_by_key(|p| p.accepted_at);
        for seq in 0..caller.frames_sent {
            if sessions.iter().any(|p| p.caller_frames.contains(seq)) {
                counts.caller_received += 1;
            } else if caller
                .started_at
                .is_some_and(|s| !judged(s + Duration::from_millis(20 * u64::from(seq))))
            {
                counts.caller_exempt += 1;
            } else {
                counts.caller_lost += 1;
            }
        }
        if let Some(k) = killed_at {
            let before = caller.media_at.iter().rev().find(|t| **t <= k);
            let after = caller.media_at.iter().find(|t| **t > k);
            if let Some(after) = after {
                recovery.saturating_record((*after - k).as_micros() as u64);
            }
            if let (Some(before), Some(after)) = (before, after) {
                gap.saturating_record((*after - *before).as_micros() as u64);
            } else if caller.media_at.iter().any(|t| *t <= k) {
                f.failovers_without_audio += 1;
            }
        }
        if let Some(total) = caller.setup() {
            setup.saturating_record(total.as_micros() as u64);
            if let Some(own) = sessions.first().and_then(|p| p.own_setup()) {
                setup_gateway.saturating_record(total.saturating_sub(own).as_micros() as u64);
            }
        }
        for seen in caller.received.values() {
            counts.duplicates += seen.duplicates;
            counts.reordered += seen.reordered;
        }
    }
    for p in providers {
        merge(&mut c2p, &p.caller_latency_us);
        merge(&mut c2p_setup, &p.setup_latency_us);
        counts.caller_unstamped += p.caller_frames_unstamped;
        counts.cross_wired += p.foreign_frames;
        counts.duplicates += p.caller_frames.duplicates;
        counts.reordered += p.caller_frames.reordered;
        counts.responses_cancelled += p.cancelled.len() as u64;
        counts.provider_sent += p.agent_frames.len() as u64;
        let caller = p.call.and_then(|c| callers_by_index.get(&c));
        let hung_up = caller.and_then(|c| c.ended_at);
        let received = caller.and_then(|c| c.received.get(&p.session));
        for (seq, frame) in p.agent_frames.iter().enumerate() {
            let near_barge_in = p
                .speech_started
                .iter()
                .any(|ss| frame.at <= *ss && *ss - frame.at <= IN_FLIGHT_GRACE);
            let near_hang_up = hung_up.is_none_or(|end| frame.at + IN_FLIGHT_GRACE >= end);
            if near_barge_in || near_hang_up || !judged(frame.at) {
                counts.provider_exempt += 1;
            } else if received.is_some_and(|r| r.contains(seq as u32)) {
                counts.provider_received += 1;
            } else {
                counts.provider_lost += 1;
            }
        }
        if let Some(caller) = caller {
            for ss in &p.speech_started {
                match caller
                    .clears
                    .iter()
                    .find(|c| **c >= *ss && **c - *ss < Duration::from_secs(2))
                {
                    Some(clear) => barge.saturating_record((*clear - *ss).as_micros() as u64),
                    None => f.speech_starts_without_clear += 1,
                }
            }
        }
    }
    f.setup = Percentiles::of(&setup);
    f.setup_gateway = Percentiles::of(&setup_gateway);
    f.caller_to_provider = Percentiles::of(&c2p);
    f.caller_to_provider_during_setup = Percentiles::of(&c2p_setup);
    f.provider_to_caller = Percentiles::of(&p2c);
    f.jitter = Percentiles::of(&jitter);
    f.barge_in = Percentiles::of(&barge);
    f.failover_gap = Percentiles::of(&gap);
    f.failover_recovery = Percentiles::of(&recovery);
    (f, counts)
}

/// The latency part of [`join`]'s answer.
#[derive(Debug, Clone, Default)]
pub struct JoinedFigures {
    pub setup: Percentiles,
    pub setup_gateway: Percentiles,
    pub setup_signalling: Percentiles,
    pub setup_connect: Percentiles,
    pub caller_to_provider: Percentiles,
    pub caller_to_provider_during_setup: Percentiles,
    pub provider_to_caller: Percentiles,
    pub jitter: Percentiles,
    pub barge_in: Percentiles,
    pub speech_starts_without_clear: u64,
    pub failover_gap: Percentiles,
    pub failover_recovery: Percentiles,
    /// Calls that heard the agent before the cut and nothing after it.
    pub failovers_without_audio: u64,
}

/// Outcome counts and the first failure reasons.
pub fn outcomes(callers: &[CallerLog]) -> (u64, u64, Vec<String>) {
    outcomes_of(callers.iter().map(|c| (c.index, &c.outcome)))
}

/// [`outcomes`] over `(call index, outcome)` of any kind of caller.
pub fn outcomes_of<'a>(
    callers: impl IntoIterator<Item = (u16, &'a CallOutcome)>,
) -> (u64, u64, Vec<String>) {
    let mut failures = Vec::new();
    let mut completed = 0;
    let mut total = 0;
    for (index, outcome) in callers {
        total += 1;
        match outcome {
            CallOutcome::HungUp => completed += 1,
            CallOutcome::GatewayClosed => {
                if failures.len() < 10 {
                    failures.push(format!("call {index}: the gateway closed the call early"));
                }
            }
            CallOutcome::Failed(why) => {
                if failures.len() < 10 {
                    failures.push(format!("call {index}: {why}"));
                }
            }
        }
    }
    (completed, total - completed, failures)
}

/// Σ of each call's time between `start` and hang-up, in seconds.
pub fn call_seconds(callers: &[CallerLog]) -> f64 {
    call_seconds_of(callers.iter().map(|c| (c.started_at, c.ended_at)))
}

/// [`call_seconds`] over `(started, ended)` of any kind of caller.
pub fn call_seconds_of(spans: impl IntoIterator<Item = (Option<Instant>, Option<Instant>)>) -> f64 {
    spans
        .into_iter()
        .filter_map(|(start, end)| Some(end?.saturating_duration_since(start?)))
        .map(|d| d.as_secs_f64())
        .sum()
}

/// `t` as seconds since `origin`, for the samples.
pub fn secs_since(origin: Instant, t: Instant) -> f64 {
    t.saturating_duration_since(origin).as_secs_f64()
}

/// The end-of-run table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for l in &report.levels {
        let _ = writeln!(
            out,
            "\n{} — {} calls (ramp {}/s, {} s each, provider delay {} ms): {} completed, {} failed{}",
            l.scenario,
            l.calls,
            l.ramp_per_sec,
            l.duration_secs,
            l.provider_delay_ms,
            l.calls_completed,
            l.calls_failed,
            l.gateway_crash
                .as_deref()
                .map(|c| format!(", GATEWAY EXITED: {c}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "ms", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let rows = [
            (
                if l.scenario == "webrtc" {
                    "setup (offer → first audio)"
                } else {
                    "setup (webhook → first audio)"
                },
                &l.setup,
            ),
            ("  of which the gateway's", &l.setup_gateway),
            ("  offer → answer", &l.setup_signalling),
            ("  answer → connected (ICE, DTLS)", &l.setup_connect),
            ("caller → provider", &l.caller_to_provider),
            (
                "  frames sent during setup",
                &l.caller_to_provider_during_setup,
            ),
            ("provider → caller", &l.provider_to_caller),
            ("  jitter", &l.provider_to_caller_jitter),
            ("barge-in (speech_started → clear)", &l.barge_in),
            ("failover gap (audio → audio)", &l.failover_gap),
            ("  provider cut → first audio", &l.failover_recovery),
        ];
        for (name, p) in rows.into_iter().filter(|(_, p)| p.count > 0) {
            let _ = writeln!(
                out,
                "  {name:<34} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
            );
        }
        let fc = &l.frames;
        if l.scenario == "webrtc" {
            let _ = writeln!(
                out,
                "  frames caller→provider (by position): {} sent, {} received, {} lost ({} of them a call's first frames), {} unattributed; provider→caller: {} sent, {} heard, {} lost, {} late (>20 ms behind, or after a gap), {} exempt (hang-up), {} playout gaps inside replies, {} runs before any reply",
                fc.caller_sent,
                fc.caller_received,
                fc.caller_lost,
                fc.caller_lost_first,
                fc.cross_wired,
                fc.provider_sent,
                fc.provider_received,
                fc.provider_lost,
                fc.provider_late,
                fc.provider_exempt,
                fc.provider_split_runs,
                fc.provider_unstamped,
            );
        } else {
            let _ = writeln!(
                out,
                "  frames caller→provider: {} sent, {} received, {} lost, {} after a failover cut, {} unstamped; provider→caller: {} sent, {} judged received, {} lost, {} exempt (barge-in/hang-up), {} unstamped; {} duplicates, {} reordered, {} cross-wired",
                fc.caller_sent,
                fc.caller_received,
                fc.caller_lost,
                fc.caller_exempt,
                fc.caller_unstamped,
                fc.provider_sent,
                fc.provider_received,
                fc.provider_lost,
                fc.provider_exempt,
                fc.provider_unstamped,
                fc.duplicates,
                fc.reordered,
                fc.cross_wired
            );
        }
        if let Some(d) = &l.signal_delay {
            let _ = writeln!(
                out,
                "  plus the gateway's fixed signal delay, not in the rows above: {:.1} ms caller → provider (resampler), {:.1} ms provider → caller (resampler + Opus lookahead)",
                d.caller_to_provider_ms, d.provider_to_caller_ms
            );
        }
        if let Some(g) = &l.gateway {
            let _ = writeln!(
                out,
                "  gateway pid {}: {:.2} CPU-s over {:.0} call-s = {:.0} CPU-µs per call-second; RSS idle {} KB, peak {} KB, {:.0} KB per call, growing {:.0} KB/min under load",
                g.pid,
                g.cpu_seconds,
                g.call_seconds,
                g.cpu_us_per_call_second,
                g.rss_idle_kb,
                g.rss_peak_kb,
                g.rss_kb_per_call,
                g.rss_growth_kb_per_min
            );
        }
        let _ = writeln!(
            out,
            "  run: {:.1} s wall; the bench itself used {:.2} CPU-s",
            l.wall_seconds, l.bench_cpu_seconds
        );
        for f in &l.failures {
            let _ = writeln!(out, "  failure: {f}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::provider::SentFrame;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One call with one provider session: what arrived where, scripted.
    fn logs(t0: Instant) -> (CallerLog, ProviderLog) {
        let mut caller = CallerLog::new(4);
        caller.started_at = Some(t0);
        caller.webhook_sent_at = t0;
        caller.first_audio_at = Some(t0 + ms(100));
        caller.ended_at = Some(t0 + ms(10_000));
        caller.outcome = CallOutcome::HungUp;
        caller.frames_sent = 10;
        let mut provider = ProviderLog::new(0x8001, t0);
        provider.call = Some(4);
        provider.upgraded_at = Some(t0 + ms(10));
        provider.first_response_create_at = Some(t0 + ms(20));
        provider.first_delta_at = Some(t0 + ms(50));
        // Caller frame 7 never reached the provider.
        for seq in (0..10).filter(|s| *s != 7) {
            provider.caller_frames.insert(seq);
        }
        // Agent frames at 1 s, 2 s, 3 s; a speech start at 3.1 s; a hang-up at 10 s.
        for at in [1_000, 2_000, 3_000] {
            provider.agent_frames.push(SentFrame {
                at: t0 + ms(at),
                response: 0,
            });
        }
        provider.speech_started.push(t0 + ms(3_100));
        caller.clears.push(t0 + ms(3_102));
        (caller, provider)
    }

    #[test]
    fn a_missing_frame_is_lost_unless_a_barge_in_could_have_dropped_it() {
        let t0 = Instant::now();
        let (mut caller, provider) = logs(t0);
        // Frame 0 arrived; frame 1 (sent 1 s before the barge-in) did not: lost. Frame 2
        // was sent 100 ms before the speech start: the gateway may drop it on purpose.
        caller.received.entry(0x8001).or_default().insert(0);
        let (figures, counts) = join(&[caller], &[provider], None);
        assert_eq!(
            (
                counts.caller_sent,
                counts.caller_received,
                counts.caller_lost
            ),
            (10, 9, 1)
        );
        assert_eq!(
            (
                counts.provider_received,
                counts.provider_lost,
                counts.provider_exempt
            ),
            (1, 1, 1)
        );
        assert_eq!(figures.barge_in.count, 1);
        assert!(
            (figures.barge_in.p50_ms - 2.0).abs() < 0.05,
            "{:?}",
            figures.barge_in
        );
        // Setup 100 ms, of which the provider's own: 10 ms handshake + 30 ms to respond.
        assert!(
            (figures.setup_gateway.p50_ms - 60.0).abs() < 1.0,
            "{:?}",
            figures.setup_gateway
        );
    }

    #[test]
    fn after_a_failover_cut_frames_are_not_judged_and_the_gap_is_measured() {
        let t0 = Instant::now();
        let (mut caller, provider) = logs(t0);
        caller.received.entry(0x8001).or_default().insert(0);
        caller.media_at = vec![t0 + ms(1_000), t0 + ms(1_400), t0 + ms(2_600)];
        // Cut at 1.5 s: caller frames from 1.25 s on (none of the ten here) and agent
        // frames after 1.25 s are not judged.
        let (figures, counts) = join(&[caller], &[provider], Some(t0 + ms(1_500)));
        assert_eq!(counts.provider_lost, 0, "{counts:?}");
        assert_eq!(counts.provider_exempt, 2);
        assert_eq!(figures.failover_gap.count, 1);
        assert!(
            (figures.failover_gap.p50_ms - 1_200.0).abs() < 15.0,
            "{:?}",
            figures.failover_gap
        );
        assert!((figures.failover_recovery.p50_ms - 1_100.0).abs() < 15.0);
    }
}
