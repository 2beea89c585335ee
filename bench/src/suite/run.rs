//! Running one scenario at one concurrency level: start the fake provider and the
//! gateway, provision an agent, ramp the callers up, sample the gateway from /proc, wait
//! for every call to end, and join what both ends saw.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::caller::{CallerLog, Progress, run_call};
use super::gateway::{self, GatewayProcess, ProcSample};
use super::marker::StampClock;
use super::provider::{ProbeMode, ProbeProvider, ProviderLog};
use super::report::{self, GatewayUsage, LevelReport, UsageSample};
use super::transcode;
use super::webrtc::{self, WebCallerLog};
use crate::audio;
use crate::fakes::gemini::{FakeGemini, GeminiBehaviour};
use crate::fakes::openai::OpenAiBehaviour;

/// Where the gateway comes from.
#[derive(Debug, Clone)]
pub enum GatewaySource {
    /// Start this `vocalized` binary, one fresh process per level.
    Spawn(PathBuf),
    /// A gateway someone else started at `url`, with the bench's Twilio account and its
    /// OpenAI URL on the fake's `provider_port`; its pid (optional) for /proc sampling.
    Target { url: String, pid: Option<u32> },
}

/// Which scenario a level runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Twilio + OpenAI, µ-law straight through.
    Passthrough,
    /// The same calls held for a long time: the report's drift and RSS growth matter.
    Soak,
    /// Twilio + Gemini Live: µ-law 8 kHz resampled to PCM16 16 kHz in and 24 kHz out.
    /// Stamps do not survive resampling, so frames are timed by position and by chunk
    /// (`transcode.rs`), and loss is judged by byte count.
    Transcode,
    /// Half-way through, every provider session is cut (TCP reset); the gateway fails
    /// over to the built-in echo provider, configured as the next in the chain.
    Failover,
    /// Browser callers over real WebRTC (Opus) and OpenAI Realtime (PCM16 24 kHz): Opus
    /// and resampling both ways, frames timed by position (`webrtc.rs`).
    Webrtc,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough",
            Self::Soak => "soak",
            Self::Failover => "failover",
            Self::Transcode => "transcode",
            Self::Webrtc => "webrtc",
        }
    }
}

/// One level of one scenario.
#[derive(Debug, Clone)]
pub struct LevelConfig {
    pub scenario: Scenario,
    pub calls: usize,
    pub ramp_per_sec: f64,
    pub duration_secs: u64,
    pub provider_delay_ms: u64,
    /// Port of the fake provider (0: any); a `Target` gateway must be pointed at it.
    pub provider_port: u16,
    pub gateway: GatewaySource,
    /// Draw the progress line on stderr.
    pub show_progress: bool,
}

/// Why a level could not run at all (a crash during the run is a result, not this).
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

/// Length of every agent reply: long enough that the caller's next line lands on it.
pub const AGENT_REPLY_MS: u32 = 3_000;

/// What each caller says, looped to `duration_secs`: a pause while the greeting starts,
/// then lines that each begin ~1.2 s into the agent's reply to the previous one, so every
/// turn after the first is also a barge-in.
pub fn caller_script(duration_secs: u64) -> Vec<u8> {
    let total = duration_secs as usize * 1000 * audio::BYTES_PER_MS;
    let mut script = audio::silence(1_200);
    let mut line = audio::caller_hello();
    line.extend(audio::silence(700));
    while script.len() < total {
        script.extend_from_slice(&line);
    }
    script.truncate(total);
    script
}

/// The fake provider's behaviour: replies of [`AGENT_REPLY_MS`] paced in real time in
/// 100 ms deltas (so pacing jitter at the caller is the gateway's), after `delay_ms`.
pub fn provider_behaviour(delay_ms: u64) -> OpenAiBehaviour {
    OpenAiBehaviour {
        response_delay_ms: delay_ms,
        delta_bytes: 800,
        delta_interval_ms: 100,
        ..OpenAiBehaviour::default()
    }
    .with_agent_audio_ms(AGENT_REPLY_MS)
}

/// The fake Gemini: replies of [`AGENT_REPLY_MS`] paced in real time in 100 ms chunks.
pub fn gemini_behaviour(delay_ms: u64) -> GeminiBehaviour {
    GeminiBehaviour {
        response_delay_ms: delay_ms,
        chunk_ms: 100,
        chunk_interval_ms: 100,
        ..GeminiBehaviour::default()
    }
    .with_agent_audio_ms(AGENT_REPLY_MS)
}

/// Transcode loss by byte count: every 20 ms caller frame must reach Gemini as 640 bytes
/// of PCM16 16 kHz. Agent audio is not judged (barge-ins cut it by design, and without
/// stamps the bench cannot tell which frames those were).
fn transcode_frames(
    frames: &mut report::FrameCounts,
    callers: &[super::caller::CallerLog],
    sessions: &[crate::fakes::gemini::SessionRecord],
) {
    const PCM16_16K_FRAME_BYTES: u64 = 640;
    let received = sessions.iter().map(|s| s.audio_bytes_in).sum::<u64>() / PCM16_16K_FRAME_BYTES;
    let sent: u64 = callers.iter().map(|c| u64::from(c.frames_sent)).sum();
    frames.caller_received = received.min(sent);
    frames.caller_lost = sent.saturating_sub(received);
    frames.caller_unstamped = 0;
    frames.provider_sent = sessions.iter().map(|s| s.audio_bytes_out).sum::<u64>() / 960;
    // The callers hear µ-law: 160 bytes per 20 ms frame.
    frames.provider_received = callers.iter().map(|c| c.unstamped).sum();
    frames.provider_unstamped = 0;
    frames.provider_exempt = frames
        .provider_sent
        .saturating_sub(frames.provider_received);
}

/// One finished call of either kind.
enum Finished {
    Phone(CallerLog),
    Web(WebCallerLog),
}

/// Runs `config.scenario` at one level. Every phone scenario shares the pass-through
/// traffic; `transcode` swaps the provider for Gemini and `failover` cuts it half-way.
/// `webrtc` places browser calls to the same fake OpenAI instead.
pub async fn run_level(config: &LevelConfig) -> Result<LevelReport, RunError> {
    let epoch = Instant::now();
    let clock = StampClock::new(epoch);
    let progress = Arc::new(Progress::default());
    let web = config.scenario == Scenario::Webrtc;
    let (behaviour, mode) = if web {
        (
            webrtc::provider_behaviour(config.provider_delay_ms),
            ProbeMode::Positions,
        )
    } else {
        (
            provider_behaviour(config.provider_delay_ms),
            ProbeMode::Stamps,
        )
    };
    let provider = ProbeProvider::start(
        behaviour,
        mode,
        clock,
        config.provider_port,
        progress.drift.clone(),
    )
    .await
    .map_err(|e| RunError(format!("fake provider: {e}")))?;
    let (mut process, base, pid) = match &config.gateway {
        GatewaySource::Spawn(bin) => {
            let bin = bin.clone();
            // Every phone scenario verifies its number as this admin; web calls need none.
            let with_admin = true;
            let url = provider.url();
            let process =
                tokio::task::spawn_blocking(move || GatewayProcess::start(&bin, &url, with_admin))
                    .await
                    .map_err(|e| RunError(e.to_string()))?
                    .map_err(|e| RunError(e.0))?;
            let base = format!("http://{}", process.addr);
            let pid = process.pid();
            (Some(process), base, Some(pid))
        }
        GatewaySource::Target { url, pid } => (None, url.trim_end_matches('/').to_owned(), *pid),
    };
    let agent_config = json!({
        "instructions": "You are the bench's agent.",
        "call": {"callGreeting": "Thanks for calling the bench.",
                 "maxCallDuration": (config.duration_secs + 60).clamp(60, 3600)}
    });
    if config.scenario == Scenario::Failover {
        gateway::add_platform_provider(&base, json!({"provider": "echo", "priority": 10}))
            .await
            .map_err(|e| RunError(format!("adding the fallback provider: {e}")))?;
    }
    // Transcode: Gemini's URL can only come from an admin provider config.
    let gemini = match config.scenario {
        Scenario::Transcode => {
            let fake = FakeGemini::start(gemini_behaviour(config.provider_delay_ms))
                .await
                .map_err(|e| RunError(format!("fake Gemini: {e}")))?;
            let body = json!({"provider": "gemini", "priority": 0, "base_url": fake.url(),
                              "api_key": "bench-gemini-key"});
            gateway::add_platform_provider(&base, body)
                .await
                .map_err(|e| RunError(format!("configuring Gemini: {e}")))?;
            Some(fake)
        }
        _ => None,
    };
    let voice_provider = if gemini.is_some() { "google" } else { "openai" };
    let number: Arc<str> = gateway::agent_number().into();
    // Calls through the platform's Twilio account route only to verified numbers.
    // The admin verifies the phone number (calls through the platform's Twilio account
    // route only to verified numbers) and moves the workspace onto the enterprise tier,
    // which has no cap on calls at once (starter's 25 would refuse the larger levels).
    let admin = match &config.gateway {
        GatewaySource::Spawn(_) => Some(gateway::AdminLogin::bench()),
        GatewaySource::Target { .. } => match (gateway::AdminLogin::from_env(), web) {
            (Some(admin), _) => Some(admin),
            (None, true) => None,
            (None, false) => {
                return Err(RunError(
                    "a --target gateway routes phone calls only to numbers a platform admin \
                     verified: create one on it (`vocalized admin create --role admin ...`) and \
                     set VOCALIZED_BENCH_ADMIN_EMAIL and VOCALIZED_BENCH_ADMIN_PASSWORD"
                        .into(),
                ));
            }
        },
    };
    let provisioned =
        gateway::provision(&base, voice_provider, agent_config, &number, admin.as_ref())
            .await
            .map_err(|e| RunError(format!("provisioning: {e}")))?;
    let widget_key: Arc<str> = provisioned.widget_key.into();
    let line: Arc<[i16]> = webrtc::caller_line().into();
    let http = reqwest::Client::new();

    let script: Arc<[u8]> = caller_script(config.duration_secs).into();
    let ticks = gateway::clock_ticks_per_sec();
    // Let the gateway settle after provisioning before taking its idle size.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = pid.and_then(|p| gateway::read_proc(p, ticks));
    let bench_idle = gateway::read_proc(std::process::id(), ticks);

    let sampler = pid.map(|pid| {
        let progress = progress.clone();
        tokio::spawn(sample_gateway(pid, ticks, progress, epoch))
    });
    let drawer = config.show_progress.then(|| {
        let progress = progress.clone();
        let calls = config.calls;
        tokio::spawn(draw_progress(progress, calls, epoch))
    });

    let run_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let spacing = Duration::from_secs_f64(1.0 / config.ramp_per_sec.max(0.001));
    for i in 0..config.calls {
        let at = tokio::time::Instant::from_std(run_started + spacing.mul_f64(i as f64));
        tokio::time::sleep_until(at).await;
        if web {
            let call = webrtc::run_web_call(
                i as u16,
                base.clone(),
                widget_key.clone(),
                (config.duration_secs * 50) as u32,
                line.clone(),
                http.clone(),
                progress.clone(),
            );
            tasks.spawn(async move { Finished::Web(call.await) });
        } else {
            let call = run_call(
                i as u16,
                base.clone(),
                number.clone(),
                script.clone(),
                clock,
                progress.clone(),
            );
            tasks.spawn(async move { Finished::Phone(call.await) });
        }
    }
    let mut callers = Vec::with_capacity(config.calls);
    let mut web_callers = Vec::new();
    // Failover: cut every provider session half-way through the calls.
    let kill_at = (config.scenario == Scenario::Failover)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(config.duration_secs) / 2);
    let mut killed_at = None;
    loop {
        let kill = async {
            match kill_at {
                Some(at) if killed_at.is_none() => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(Finished::Phone(log))) => callers.push(log),
                Some(Ok(Finished::Web(log))) => web_callers.push(log),
                Some(Err(_)) => {}
                None => break,
            },
            () = kill => {
                provider.kill_sessions();
                killed_at = Some(Instant::now());
            }
        }
    }
    // The provider sessions close just after the calls; give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end = pid.and_then(|p| gateway::read_proc(p, ticks));
    let bench_end = gateway::read_proc(std::process::id(), ticks);
    let wall_seconds = run_started.elapsed().as_secs_f64();
    if let Some(drawer) = drawer {
        drawer.abort();
        eprintln!();
    }
    if let Some(task) = sampler {
        task.abort();
    }
    let gateway_crash = process.as_mut().and_then(|p| {
        p.exited()
            .map(|status| format!("{status}; stderr: {}", p.stderr_tail()))
    });

    let mut provider_logs: Vec<ProviderLog> = provider
        .logs()
        .into_iter()
        .map(|l| {
            std::mem::replace(
                &mut *l.lock().unwrap_or_else(|p| p.into_inner()),
                ProviderLog::new(u16::MAX, epoch),
            )
        })
        .collect();
    let (mut figures, mut frames) = if web {
        webrtc::join(&web_callers, &mut provider_logs, &progress.drift, epoch)
    } else {
        report::join(&callers, &provider_logs, killed_at)
    };
    let mut unpaired_sessions = 0;
    if let Some(gemini) = &gemini {
        let sessions = gemini.sessions();
        transcode_frames(&mut frames, &callers, &sessions);
        let timed = transcode::join(&callers, &sessions);
        figures.caller_to_provider = timed.caller_to_provider;
        figures.caller_to_provider_during_setup = timed.caller_to_provider_during_setup;
        figures.provider_to_caller = timed.provider_to_caller;
        figures.jitter = timed.jitter;
        unpaired_sessions = timed.unpaired_sessions;
    }
    let (calls_completed, calls_failed, mut failures) = if web {
        report::outcomes_of(web_callers.iter().map(|c| (c.index, &c.outcome)))
    } else {
        report::outcomes(&callers)
    };
    if unpaired_sessions > 0 {
        failures.push(format!(
            "{unpaired_sessions} Gemini sessions could not be paired with a caller; their frames are not timed"
        ));
    }
    let call_seconds = if web {
        report::call_seconds_of(web_callers.iter().map(|c| (c.started_at, c.ended_at)))
    } else {
        report::call_seconds(&callers)
    };
    let usage = match (pid, idle, end) {
        (Some(pid), Some(idle), Some(end)) => Some(usage(
            pid,
            idle,
            end,
            call_seconds,
            &progress_samples(&progress),
        )),
        _ => None,
    };
    Ok(LevelReport {
        scenario: config.scenario.name().into(),
        drift: progress.drift.points(),
        wall_seconds,
        bench_cpu_seconds: match (bench_idle, bench_end) {
            (Some(a), Some(b)) => b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e6,
            _ => 0.0,
        },
        calls: config.calls,
        ramp_per_sec: config.ramp_per_sec,
        duration_secs: config.duration_secs,
        provider_delay_ms: config.provider_delay_ms,
        calls_completed,
        calls_failed,
        failures,
        setup: figures.setup,
        setup_gateway: figures.setup_gateway,
        setup_signalling: figures.setup_signalling,
        setup_connect: figures.setup_connect,
        caller_to_provider: figures.caller_to_provider,
        caller_to_provider_during_setup: figures.caller_to_provider_during_setup,
        provider_to_caller: figures.provider_to_caller,
        provider_to_caller_jitter: figures.jitter,
        barge_in: figures.barge_in,
        failover_gap: figures.failover_gap,
        failover_recovery: figures.failover_recovery,
        speech_starts_without_clear: figures.speech_starts_without_clear,
        failovers_without_audio: figures.failovers_without_audio,
        frames,
        gateway: usage,
        gateway_crash,
        signal_delay: web.then(webrtc::signal_delay),
    })
}

fn progress_samples(progress: &Progress) -> Vec<UsageSample> {
    progress
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn usage(
    pid: u32,
    idle: ProcSample,
    end: ProcSample,
    call_seconds: f64,
    samples: &[UsageSample],
) -> GatewayUsage {
    let cpu_us = end.cpu_us.saturating_sub(idle.cpu_us);
    let max_active = samples.iter().map(|s| s.active_calls).max().unwrap_or(0);
    // Under full load: the samples with at least 90% of the peak concurrency.
    let loaded: Vec<&UsageSample> = samples
        .iter()
        .filter(|s| max_active > 0 && s.active_calls * 10 >= max_active * 9)
        .collect();
    let rss_kb_per_call = if loaded.is_empty() {
        0.0
    } else {
        let n = loaded.len() as f64;
        let rss = loaded.iter().map(|s| s.rss_kb as f64).sum::<f64>() / n;
        let active = loaded.iter().map(|s| s.active_calls as f64).sum::<f64>() / n;
        (rss - idle.rss_kb as f64).max(0.0) / active
    };
    GatewayUsage {
        rss_growth_kb_per_min: growth_per_min(&loaded),
        pid,
        cpu_seconds: cpu_us as f64 / 1e6,
        call_seconds,
        cpu_us_per_call_second: if call_seconds > 0.0 {
            cpu_us as f64 / call_seconds
        } else {
            0.0
        },
        rss_idle_kb: idle.rss_kb,
        rss_peak_kb: samples
            .iter()
            .map(|s| s.rss_kb)
            .max()
            .unwrap_or(end.rss_kb)
            .max(end.rss_kb),
        rss_kb_per_call,
        samples: samples.to_vec(),
    }
}

/// Least-squares slope of RSS over time, in KB per minute, across the loaded samples:
/// near zero when memory is flat under steady load.
fn growth_per_min(samples: &[&UsageSample]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 3 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.t_s).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kb as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        num += (s.t_s - mean_t) * (s.rss_kb as f64 - mean_r);
        den += (s.t_s - mean_t).powi(2);
    }
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

/// Reads the gateway's CPU and RSS every 250 ms into `progress.samples`.
async fn sample_gateway(pid: u32, ticks: u64, progress: Arc<Progress>, epoch: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let mut last: Option<(Instant, ProcSample)> = None;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let Some(sample) = gateway::read_proc(pid, ticks) else {
            continue;
        };
        let cpu_percent = last.map_or(0.0, |(at, prev)| {
            let wall = now.saturating_duration_since(at).as_micros().max(1) as f64;
            sample.cpu_us.saturating_sub(prev.cpu_us) as f64 * 100.0 / wall
        });
        last = Some((now, sample));
        let point = UsageSample {
            t_s: report::secs_since(epoch, now),
            active_calls: progress.active.load(Ordering::Relaxed),
            rss_kb: sample.rss_kb,
            cpu_percent,
        };
        progress
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(point);
    }
}

/// `[#####-----] 120/500 placed, 87 active, 30 done, 0 failed, 12 s` on stderr.
async fn draw_progress(progress: Arc<Progress>, calls: usize, epoch: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        let placed = progress.placed.load(Ordering::Relaxed);
        let active = progress.active.load(Ordering::Relaxed);
        let done = progress.finished.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        let width = 30usize;
        let filled = ((done + failed) as usize * width)
            .checked_div(calls)
            .unwrap_or(0)
            .min(width);
        let placed_w = (placed as usize * width)
            .checked_div(calls)
            .unwrap_or(0)
            .min(width)
            .max(filled);
        let bar = format!(
            "{}{}{}",
            "#".repeat(filled),
            "=".repeat(placed_w - filled),
            "-".repeat(width - placed_w)
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {placed}/{calls} placed, {active} active, {done} done, {failed} failed, {} s",
            epoch.elapsed().as_secs()
        );
        let _ = err.flush();
    }
}
