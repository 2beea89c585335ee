//! One simulated phone caller: Twilio's signed voice webhook, then a Media Streams socket
//! (protocols.md §1) that plays a script at real-time pace, 160-byte frames every 20 ms,
//! each stamped on its way out (see `marker.rs`), while it listens.
//!
//! What the caller hears is timed as it arrives: the stamps in the agent's audio give the
//! provider → caller latency and its variation (jitter), and sequence numbers show what
//! was lost. Like Twilio it keeps a playback clock so that marks are echoed when the audio
//! before them would have finished playing, and `clear` echoes every pending mark at once;
//! the gateway's barge-in logic depends on both.
//!
//! Lean on purpose: at hundreds of calls the bench shares two cores with the gateway, so
//! the caller records counters and histograms, not every message.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::gateway::{PUBLIC_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN};
use super::marker::{self, FrameReader, Stamp, StampClock};
use super::stats::{Direction, SeqSet, new_histogram};
use crate::fakes::twilio::signature::sign;
use crate::fakes::twilio::{CallParams, FakeTwilio};

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub placed: AtomicU64,
    pub active: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    /// The gateway's /proc readings so far.
    pub samples: std::sync::Mutex<Vec<super::report::UsageSample>>,
    pub drift: Arc<super::stats::Drift>,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The script ran out and the caller sent `stop`.
    HungUp,
    /// The gateway closed the socket first.
    GatewayClosed,
    /// The webhook, the socket or a send failed.
    Failed(String),
}

/// Everything one caller measured.
#[derive(Debug)]
pub struct CallerLog {
    pub index: u16,
    pub webhook_sent_at: Instant,
    pub started_at: Option<Instant>,
    pub first_audio_at: Option<Instant>,
    /// When the caller sent `stop` (or the call otherwise ended).
    pub ended_at: Option<Instant>,
    pub outcome: CallOutcome,
    pub frames_sent: u32,
    /// When each frame was sent, by index: `transcode` times frames by position, as
    /// resampling destroys the stamps.
    pub sent_at: Vec<Instant>,
    /// Provider → caller, per frame (µs).
    pub agent_latency_us: Histogram<u64>,
    /// |transit(i) − transit(i−1)| between consecutive agent frames (µs), RFC 3550's
    /// D(i−1, i): how unevenly the gateway delivers what the provider paced evenly.
    pub jitter_us: Histogram<u64>,
    /// Agent frames received, per provider session (stamp stream).
    pub received: HashMap<u16, SeqSet>,
    pub unstamped: u64,
    /// Caller stamps heard back (an echo provider): not counted as agent audio.
    pub echoed_frames: u64,
    pub clears: Vec<Instant>,
    /// Arrival of every `media` event (agent audio, from whichever provider).
    pub media_at: Vec<Instant>,
    /// Gateway messages that were not valid Twilio messages.
    pub bad_messages: u64,
}

impl CallerLog {
    pub(crate) fn new(index: u16) -> Self {
        Self {
            index,
            webhook_sent_at: Instant::now(),
            started_at: None,
            first_audio_at: None,
            ended_at: None,
            outcome: CallOutcome::Failed("never started".into()),
            frames_sent: 0,
            sent_at: Vec::new(),
            agent_latency_us: new_histogram(),
            jitter_us: new_histogram(),
            received: HashMap::new(),
            unstamped: 0,
            echoed_frames: 0,
            clears: Vec::new(),
            media_at: Vec::new(),
            bad_messages: 0,
        }
    }

    /// Webhook sent → first agent audio received.
    pub fn setup(&self) -> Option<Duration> {
        self.first_audio_at
            .map(|at| at.saturating_duration_since(self.webhook_sent_at))
    }
}

/// Twilio's playback buffer, reduced to what mark timing needs: when queued audio will
/// have played, and which marks fall due when.
#[derive(Debug, Default)]
struct PlayoutClock {
    tail: Option<Instant>,
    marks: VecDeque<(Instant, String)>,
}

impl PlayoutClock {
    fn queue_audio(&mut self, bytes: usize, now: Instant) {
        let start = self.tail.map_or(now, |t| t.max(now));
        // 8 kHz µ-law: 125 µs per byte.
        self.tail = Some(start + Duration::from_micros(bytes as u64 * 125));
    }

    fn queue_mark(&mut self, name: String, now: Instant) {
        let due = self.tail.map_or(now, |t| t.max(now));
        self.marks.push_back((due, name));
    }

    fn clear(&mut self) -> Vec<String> {
        self.tail = None;
        self.marks.drain(..).map(|(_, n)| n).collect()
    }

    fn poll_mark(&mut self, now: Instant) -> Option<String> {
        if self.marks.front().is_some_and(|(due, _)| *due <= now) {
            return self.marks.pop_front().map(|(_, n)| n);
        }
        None
    }

    fn next_due(&self) -> Option<Instant> {
        self.marks.front().map(|(due, _)| *due)
    }
}

/// Per provider session: the previous frame's transit time, for jitter.
#[derive(Debug)]
struct Listener {
    clock: StampClock,
    reader: FrameReader,
    last_transit_us: HashMap<u16, u64>,
}

impl Listener {
    fn new(clock: StampClock) -> Self {
        Self {
            clock,
            reader: FrameReader::default(),
            last_transit_us: HashMap::new(),
        }
    }
}

/// Places one call to `number` at `base` (`http://ADDR` of the gateway) and plays `script`.
pub async fn run_call(
    index: u16,
    base: String,
    number: Arc<str>,
    script: Arc<[u8]>,
    clock: StampClock,
    progress: Arc<Progress>,
) -> CallerLog {
    let mut log = CallerLog::new(index);
    progress.placed.fetch_add(1, Ordering::Relaxed);
    progress.active.fetch_add(1, Ordering::Relaxed);
    let result = call(&mut log, &base, &number, &script, clock, &progress).await;
    log.ended_at.get_or_insert_with(Instant::now);
    log.outcome = match result {
        Ok(outcome) => outcome,
        Err(why) => CallOutcome::Failed(why),
    };
    progress.active.fetch_sub(1, Ordering::Relaxed);
    if matches!(log.outcome, CallOutcome::Failed(_)) {
        progress.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        progress.finished.fetch_add(1, Ordering::Relaxed);
    }
    log
}

async fn call(
    log: &mut CallerLog,
    base: &str,
    number: &str,
    script: &[u8],
    clock: StampClock,
    progress: &Progress,
) -> Result<CallOutcome, String> {
    let from = format!("+1202555{:04}", log.index % 10_000);
    let params = CallParams::new(TWILIO_ACCOUNT_SID, &from, number);
    log.webhook_sent_at = Instant::now();
    let reply = FakeTwilio::voice_webhook(base, PUBLIC_URL, TWILIO_AUTH_TOKEN, &params)
        .await
        .map_err(|e| format!("webhook: {e}"))?;
    if reply.status != 200 {
        return Err(format!("webhook answered {}: {}", reply.status, reply.body));
    }
    let stream_url = reply
        .twiml
        .stream_url
        .clone()
        .ok_or("no <Stream> in the TwiML")?;
    let token = reply
        .twiml
        .parameter("token")
        .ok_or("no token in the TwiML")?
        .to_owned();
    let target = format!("{}/media/twilio", base.replacen("http", "ws", 1));
    let mut request = target.into_client_request().map_err(|e| e.to_string())?;
    if let Ok(signature) = sign(&stream_url, &[], TWILIO_AUTH_TOKEN).parse() {
        request
            .headers_mut()
            .insert("x-twilio-signature", signature);
    }
    // Nagle off, as Twilio's media servers send each frame as it is due: with it on, a
    // frame waits for the previous one's (delayed) ACK and the bench would time itself.
    // A small read buffer, as tungstenite zeroes all of its default 128 KiB on every read.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        request,
        Some(WebSocketConfig::default().read_buffer_size(4096)),
        true,
    )
    .await
    .map_err(|e| format!("media socket: {e}"))?;
    let stream_sid = format!("MZ{}", crate::fakes::random_hex(32));
    let mut sequence = 0u64;
    let mut next_sequence = || {
        sequence += 1;
        sequence.to_string()
    };
    let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
    let start = json!({"event": "start", "sequenceNumber": next_sequence(), "streamSid": stream_sid,
        "start": {"streamSid": stream_sid, "accountSid": TWILIO_ACCOUNT_SID, "callSid": params.call_sid,
                  "tracks": ["inbound"], "customParameters": {"token": token},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    for message in [connected, start] {
        ws.send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("sending start: {e}"))?;
    }
    log.started_at = Some(Instant::now());

    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    // Twilio's media clock does not skip: if the bench falls behind it catches up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut playout = PlayoutClock::default();
    let mut listener = Listener::new(clock);
    let mut frame = [0u8; marker::FRAME_BYTES];
    let frames = script.len().div_ceil(marker::FRAME_BYTES) as u32;
    loop {
        let mark_due = playout.next_due().map(tokio::time::Instant::from_std);
        let mark_sleep = async {
            match mark_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                let seq = log.frames_sent;
                if seq >= frames {
                    let stop = json!({"event": "stop", "sequenceNumber": next_sequence(), "streamSid": stream_sid,
                        "stop": {"accountSid": TWILIO_ACCOUNT_SID, "callSid": params.call_sid}});
                    log.ended_at = Some(Instant::now());
                    let _ = ws.send(Message::text(stop.to_string())).await;
                    let _ = ws.close(None).await;
                    return Ok(CallOutcome::HungUp);
                }
                let offset = seq as usize * marker::FRAME_BYTES;
                frame.fill(crate::audio::ULAW_SILENCE);
                let end = (offset + marker::FRAME_BYTES).min(script.len());
                frame[..end - offset].copy_from_slice(&script[offset..end]);
                let sent_at = Instant::now();
                log.sent_at.push(sent_at);
                let stamp = Stamp { stream: log.index, seq, sent_us: clock.micros(sent_at) };
                marker::write(&stamp, &mut frame);
                // Written directly rather than through a `serde_json::Value` tree: the bench's
                // own CPU per frame competes with the gateway's for the same cores.
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}}}}"#,
                    next_sequence(), seq + 1, u64::from(seq) * 20, B64.encode(frame));
                ws.send(Message::text(media)).await.map_err(|e| format!("sending media: {e}"))?;
                log.frames_sent += 1;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let now = Instant::now();
                    for name in on_gateway_text(log, &mut listener, &mut playout, &stream_sid, text.as_str(), now, Some(&progress.drift)) {
                        let echo = json!({"event": "mark", "sequenceNumber": next_sequence(),
                                          "streamSid": stream_sid, "mark": {"name": name}});
                        ws.send(Message::text(echo.to_string())).await.map_err(|e| format!("sending mark: {e}"))?;
                    }
                }
                Some(Ok(Message::Binary(_))) => log.bad_messages += 1,
                Some(Ok(Message::Close(_))) | None => {
                    log.ended_at = Some(Instant::now());
                    return Ok(CallOutcome::GatewayClosed);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("media socket: {e}")),
            },
            () = mark_sleep => {
                let now = Instant::now();
                while let Some(name) = playout.poll_mark(now) {
                    let echo = json!({"event": "mark", "sequenceNumber": next_sequence(),
                                      "streamSid": stream_sid, "mark": {"name": name}});
                    ws.send(Message::text(echo.to_string())).await.map_err(|e| format!("sending mark: {e}"))?;
                }
            }
        }
    }
}

/// Handles one gateway message; returns the marks to echo right away (after a `clear`).
fn on_gateway_text(
    log: &mut CallerLog,
    listener: &mut Listener,
    playout: &mut PlayoutClock,
    stream_sid: &str,
    text: &str,
    now: Instant,
    drift: Option<&super::stats::Drift>,
) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        log.bad_messages += 1;
        return Vec::new();
    };
    if value.get("streamSid").and_then(Value::as_str) != Some(stream_sid) {
        log.bad_messages += 1;
        return Vec::new();
    }
    match value.get("event").and_then(Value::as_str) {
        Some("media") => {
            let Some(Ok(bytes)) = value
                .pointer("/media/payload")
                .and_then(Value::as_str)
                .map(|p| B64.decode(p))
            else {
                log.bad_messages += 1;
                return Vec::new();
            };
            log.first_audio_at.get_or_insert(now);
            log.media_at.push(now);
            playout.queue_audio(bytes.len(), now);
            let mut stamps: Vec<Stamp> = Vec::new();
            listener.reader.feed(&bytes, |s| stamps.push(s));
            log.unstamped += std::mem::take(&mut listener.reader.unstamped);
            let clock = listener.clock;
            for stamp in stamps {
                if stamp.stream & super::provider::AGENT_STREAMS == 0 {
                    // A caller's own frame coming back (an echoing fallback): not agent audio.
                    log.echoed_frames += 1;
                    continue;
                }
                let transit_us = clock.age(&stamp, now).as_micros() as u64;
                log.agent_latency_us.saturating_record(transit_us);
                if let Some(drift) = drift {
                    drift.record(
                        clock.since_epoch(now),
                        Direction::ProviderToCaller,
                        transit_us,
                    );
                }
                if let Some(previous) = listener.last_transit_us.insert(stamp.stream, transit_us) {
                    log.jitter_us
                        .saturating_record(transit_us.abs_diff(previous));
                }
                log.received
                    .entry(stamp.stream)
                    .or_default()
                    .insert(stamp.seq);
            }
            Vec::new()
        }
        Some("mark") => {
            match value.pointer("/mark/name").and_then(Value::as_str) {
                Some(name) => playout.queue_mark(name.to_owned(), now),
                None => log.bad_messages += 1,
            }
            Vec::new()
        }
        Some("clear") => {
            log.clears.push(now);
            playout.clear()
        }
        _ => {
            log.bad_messages += 1;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_fall_due_when_the_audio_before_them_has_played() {
        let t0 = Instant::now();
        let mut clock = PlayoutClock::default();
        clock.queue_audio(800, t0); // 100 ms
        clock.queue_mark("a".into(), t0);
        clock.queue_audio(1600, t0 + Duration::from_millis(10)); // 200 ms more
        clock.queue_mark("b".into(), t0 + Duration::from_millis(10));
        assert_eq!(clock.poll_mark(t0 + Duration::from_millis(99)), None);
        assert_eq!(
            clock.poll_mark(t0 + Duration::from_millis(100)).as_deref(),
            Some("a")
        );
        assert_eq!(clock.next_due(), Some(t0 + Duration::from_millis(300)));
        assert_eq!(clock.clear(), vec!["b".to_owned()]);
        assert_eq!(clock.next_due(), None);
    }

    #[test]
    fn received_agent_audio_is_timed_and_counted_by_its_stamps() {
        let epoch = Instant::now();
        let clock = StampClock::new(epoch);
        let mut log = CallerLog::new(3);
        let mut listener = Listener::new(clock);
        let mut playout = PlayoutClock::default();
        let mut audio = vec![0xFF; 320];
        for (seq, frame) in audio.chunks_mut(160).enumerate() {
            marker::write(
                &Stamp {
                    stream: 0x8009,
                    seq: seq as u32,
                    sent_us: 1_000,
                },
                frame,
            );
        }
        let text = json!({"event": "media", "streamSid": "MZ1",
                          "media": {"payload": B64.encode(&audio)}})
        .to_string();
        let now = epoch + Duration::from_micros(4_000);
        on_gateway_text(
            &mut log,
            &mut listener,
            &mut playout,
            "MZ1",
            &text,
            now,
            None,
        );
        assert_eq!(log.agent_latency_us.len(), 2);
        assert!(
            log.agent_latency_us
                .equivalent(log.agent_latency_us.max(), 3_000)
        );
        assert_eq!(log.received[&0x8009].len(), 2);
        assert_eq!(log.first_audio_at, Some(now));

        let wrong =
            json!({"event": "media", "streamSid": "MZ2", "media": {"payload": ""}}).to_string();
        on_gateway_text(
            &mut log,
            &mut listener,
            &mut playout,
            "MZ1",
            &wrong,
            now,
            None,
        );
        on_gateway_text(
            &mut log,
            &mut listener,
            &mut playout,
            "MZ1",
            "not json",
            now,
            None,
        );
        assert_eq!(log.bad_messages, 2);
    }
}
