//! The provider end of the bench: the fake OpenAI Realtime session
//! ([`crate::fakes::openai::Session`], unchanged, so the protocol is the fake's) behind a
//! socket driver that also times the audio.
//!
//! Caller → provider: every `input_audio_buffer.append` is split into 160-byte frames
//! and each frame's stamp (written by the caller when it sent the frame) gives the
//! gateway-added latency on arrival. Provider → caller: every 160-byte frame of every
//! `response.output_audio.delta` is stamped with this session's number, a sequence number
//! and the send time just before the delta goes out. The log keeps what the loss
//! accounting needs: which frames went out when, for which response, and which responses
//! a barge-in cancelled.
//!
//! Browser calls (the `webrtc` scenario, [`ProbeMode::Positions`]) go through Opus, which
//! keeps no byte intact, so there are no stamps to read or write: the driver logs when
//! each append arrived with the caller audio received so far, and when each delta left
//! with its place in its reply; `webrtc.rs` times frames by those positions.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::marker::{self, FrameReader, Stamp, StampClock};
use super::stats::{Direction, Drift, SeqSet, new_histogram};
use crate::fakes::openai::{OpenAiBehaviour, Output, Session, SessionRecord};

/// Agent audio stamps carry `AGENT_STREAMS | session number`, so that they can never be
/// taken for a caller's stamps (call numbers stay below it) if audio is echoed back.
pub const AGENT_STREAMS: u16 = 0x8000;

/// How the driver times audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// Phone calls: µ-law bytes pass through untouched, so frames carry stamps.
    Stamps,
    /// Browser calls: no stamps survive; log audio positions instead.
    Positions,
}

/// One `response.output_audio.delta` sent ([`ProbeMode::Positions`]).
#[derive(Debug, Clone, Copy)]
pub struct SentDelta {
    pub at: Instant,
    /// Index of its response in [`ProviderLog::responses`].
    pub response: u32,
    /// Its first byte's offset in the response's audio.
    pub start: u64,
    pub bytes: u32,
}

/// One agent frame sent.
#[derive(Debug, Clone, Copy)]
pub struct SentFrame {
    pub at: Instant,
    /// Index of its response in [`ProviderLog::responses`].
    pub response: u32,
}

/// What one provider session saw, for joining with the caller's log afterwards.
#[derive(Debug)]
pub struct ProviderLog {
    /// Stamp stream number of the agent audio this session sent.
    pub session: u16,
    /// The call whose stamps arrived here (learnt from the first stamped caller frame).
    pub call: Option<u16>,
    pub accepted_at: Instant,
    pub upgraded_at: Option<Instant>,
    pub first_response_create_at: Option<Instant>,
    pub first_delta_at: Option<Instant>,
    pub closed_at: Option<Instant>,
    /// Caller frames sent after this session was up: the steady-state latency (µs).
    pub caller_latency_us: Histogram<u64>,
    /// Caller frames sent while the gateway was still connecting this session (µs): they
    /// wait for the provider by design and are reported apart.
    pub setup_latency_us: Histogram<u64>,
    pub caller_frames: SeqSet,
    pub caller_frames_unstamped: u64,
    /// Stamps of another call arriving here (a cross-wired call would show up here).
    pub foreign_frames: u64,
    pub agent_frames: Vec<SentFrame>,
    /// Response ids in order of their first delta.
    pub responses: Vec<String>,
    pub cancelled: HashSet<u32>,
    pub speech_started: Vec<Instant>,
    /// [`ProbeMode::Positions`]: every append's arrival and the caller audio bytes
    /// received up to and including it.
    pub appends: Vec<(Instant, u64)>,
    /// [`ProbeMode::Positions`]: every delta sent, in order.
    pub deltas: Vec<SentDelta>,
    /// [`ProbeMode::Positions`]: audio bytes sent so far per response.
    response_bytes: Vec<u64>,
}

impl ProviderLog {
    pub(crate) fn new(session: u16, accepted_at: Instant) -> Self {
        Self {
            session,
            call: None,
            accepted_at,
            upgraded_at: None,
            first_response_create_at: None,
            first_delta_at: None,
            closed_at: None,
            caller_latency_us: new_histogram(),
            setup_latency_us: new_histogram(),
            caller_frames: SeqSet::default(),
            caller_frames_unstamped: 0,
            foreign_frames: 0,
            agent_frames: Vec::new(),
            responses: Vec::new(),
            cancelled: HashSet::new(),
            speech_started: Vec::new(),
            appends: Vec::new(),
            deltas: Vec::new(),
            response_bytes: Vec::new(),
        }
    }

    /// The provider's own share of call setup: its handshake, plus the time from the
    /// first `response.create` to the first delta (the configured response delay).
    pub fn own_setup(&self) -> Option<std::time::Duration> {
        let handshake = self.upgraded_at? - self.accepted_at;
        let respond = self
            .first_delta_at?
            .checked_duration_since(self.first_response_create_at?)?;
        Some(handshake + respond)
    }
}

pub type SharedLog = Arc<Mutex<ProviderLog>>;

/// The running fake; dropping it stops the server and every session.
pub struct ProbeProvider {
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<SharedLog>>>,
    kill: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl ProbeProvider {
    /// Binds 127.0.0.1:`port` (0: any free port) and starts serving.
    pub async fn start(
        behaviour: OpenAiBehaviour,
        mode: ProbeMode,
        clock: StampClock,
        port: u16,
        drift: Arc<Drift>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let logs: Arc<Mutex<Vec<SharedLog>>> = Arc::default();
        let (kill, killed) = watch::channel(false);
        let behaviour = Arc::new(behaviour);
        let accept_logs = logs.clone();
        let accept_task = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        let accepted_at = Instant::now();
                        let log = {
                            let mut logs = accept_logs.lock().unwrap_or_else(|p| p.into_inner());
                            let log = Arc::new(Mutex::new(ProviderLog::new(AGENT_STREAMS | logs.len() as u16, accepted_at)));
                            logs.push(log.clone());
                            log
                        };
                        let driver = Driver { behaviour: behaviour.clone(), mode, log, clock, reader: FrameReader::default(), drift: drift.clone() };
                        sessions.spawn(driver.serve(tcp, killed.clone()));
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            logs,
            kill,
            accept_task,
        })
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// Every session so far, in connection order.
    pub fn logs(&self) -> Vec<SharedLog> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Cuts every open session's TCP connection (no close frame), as a crashed provider
    /// would, and refuses nothing afterwards: new sessions work again.
    pub fn kill_sessions(&self) {
        self.kill.send_modify(|k| *k = !*k);
    }
}

impl Drop for ProbeProvider {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

struct Driver {
    behaviour: Arc<OpenAiBehaviour>,
    mode: ProbeMode,
    log: SharedLog,
    clock: StampClock,
    reader: FrameReader,
    drift: Arc<Drift>,
}

/// The base64 audio of an `input_audio_buffer.append` without parsing the whole event
/// (the gateway writes compact JSON; anything else falls back to a full parse).
fn append_audio(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains("\"input_audio_buffer.append\"") {
        return None;
    }
    if let Some(start) = text.find("\"audio\":\"") {
        let rest = &text[start + 9..];
        if let Some(end) = rest.find('"') {
            return Some(std::borrow::Cow::Borrowed(&rest[..end]));
        }
    }
    let value: Value = serde_json::from_str(text).ok()?;
    value
        .get("audio")
        .and_then(Value::as_str)
        .map(|s| std::borrow::Cow::Owned(s.to_owned()))
}

impl Driver {
    fn with_log<T>(&self, f: impl FnOnce(&mut ProviderLog) -> T) -> T {
        f(&mut self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn serve(mut self, tcp: TcpStream, mut killed: watch::Receiver<bool>) {
        let Ok(mut ws) =
            tokio_tungstenite::accept_async_with_config(tcp, Some(crate::fakes::ws_config())).await
        else {
            self.with_log(|l| l.closed_at = Some(Instant::now()));
            return;
        };
        killed.mark_unchanged();
        self.with_log(|l| l.upgraded_at = Some(Instant::now()));
        let record = Arc::new(Mutex::new(SessionRecord::default()));
        let mut session = Session::new(self.behaviour.clone(), record, "gpt-realtime");
        let mut response_ids: HashMap<String, u32> = HashMap::new();
        'session: loop {
            while let Some(output) = session.poll_output() {
                match output {
                    Output::Send(mut event) => {
                        self.before_send(&mut event, &mut response_ids);
                        if ws.send(Message::text(event.to_string())).await.is_err() {
                            break 'session;
                        }
                    }
                    Output::Close { .. } | Output::Drop | Output::StallMidFrame => break 'session,
                }
            }
            let due = session.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let now = Instant::now();
                        self.on_client_text(text.as_str(), now);
                        session.handle_client_text(text.as_str(), now);
                    }
                    Some(Ok(Message::Binary(_))) => session.handle_binary(Instant::now()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'session,
                    Some(Ok(_)) => {}
                },
                () = sleep => session.handle_timeout(Instant::now()),
                _ = killed.changed() => {
                    // RST, no close frame: what the gateway sees when a provider dies.
                    let _ = ws.get_ref().set_zero_linger();
                    break 'session;
                }
            }
        }
        self.with_log(|l| l.closed_at = Some(Instant::now()));
    }

    fn on_client_text(&mut self, text: &str, now: Instant) {
        if self.mode == ProbeMode::Positions
            && let Some(audio) = append_audio(text)
        {
            let bytes = base64_len(audio.as_bytes()) as u64;
            self.with_log(|l| {
                let total = l.appends.last().map_or(0, |(_, n)| *n) + bytes;
                l.appends.push((now, total));
            });
        } else if let Some(audio) = append_audio(text) {
            let Ok(bytes) = B64.decode(audio.as_bytes()) else {
                return;
            };
            let clock = self.clock;
            let drift = self.drift.clone();
            let mut stamps: Vec<Stamp> = Vec::with_capacity(bytes.len() / marker::FRAME_BYTES + 1);
            self.reader.feed(&bytes, |s| stamps.push(s));
            let unstamped = std::mem::take(&mut self.reader.unstamped);
            self.with_log(|l| {
                l.caller_frames_unstamped += unstamped;
                for stamp in stamps {
                    if *l.call.get_or_insert(stamp.stream) != stamp.stream {
                        l.foreign_frames += 1;
                        continue;
                    }
                    l.caller_frames.insert(stamp.seq);
                    let age = clock.age(&stamp, now);
                    let sent = now.checked_sub(age).unwrap_or(now);
                    let us = age.as_micros() as u64;
                    if l.upgraded_at.is_some_and(|up| sent >= up) {
                        l.caller_latency_us.saturating_record(us);
                        drift.record(clock.since_epoch(now), Direction::CallerToProvider, us);
                    } else {
                        l.setup_latency_us.saturating_record(us);
                    }
                }
            });
        } else if text.contains("\"response.create\"") {
            self.with_log(|l| {
                l.first_response_create_at.get_or_insert(now);
            });
        }
    }

    /// Stamps agent audio and notes speech starts and cancellations, just before `event`
    /// goes out.
    fn before_send(&mut self, event: &mut Value, response_ids: &mut HashMap<String, u32>) {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "response.output_audio.delta" => {
                let response_id = event
                    .get("response_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if self.mode == ProbeMode::Positions {
                    let bytes = event
                        .get("delta")
                        .and_then(Value::as_str)
                        .map_or(0, |d| base64_len(d.as_bytes()));
                    let now = Instant::now();
                    self.with_log(|l| {
                        let next = response_ids.len() as u32;
                        let response =
                            *response_ids.entry(response_id.clone()).or_insert_with(|| {
                                l.responses.push(response_id);
                                l.response_bytes.push(0);
                                next
                            });
                        l.first_delta_at.get_or_insert(now);
                        let start = l.response_bytes[response as usize];
                        l.response_bytes[response as usize] += bytes as u64;
                        l.deltas.push(SentDelta {
                            at: now,
                            response,
                            start,
                            bytes: bytes as u32,
                        });
                    });
                    return;
                }
                let Some(Ok(mut audio)) = event
                    .get("delta")
                    .and_then(Value::as_str)
                    .map(|d| B64.decode(d))
                else {
                    return;
                };
                let now = Instant::now();
                let sent_us = self.clock.micros(now);
                self.with_log(|l| {
                    let next = response_ids.len() as u32;
                    let response = *response_ids.entry(response_id.clone()).or_insert_with(|| {
                        l.responses.push(response_id);
                        next
                    });
                    l.first_delta_at.get_or_insert(now);
                    for frame in audio.chunks_mut(marker::FRAME_BYTES) {
                        if frame.len() < marker::STAMP_BYTES {
                            continue;
                        }
                        let seq = l.agent_frames.len() as u32;
                        marker::write(
                            &Stamp {
                                stream: l.session,
                                seq,
                                sent_us,
                            },
                            frame,
                        );
                        l.agent_frames.push(SentFrame { at: now, response });
                    }
                });
                event["delta"] = Value::String(B64.encode(&audio));
            }
            "input_audio_buffer.speech_started" => {
                let now = Instant::now();
                self.with_log(|l| l.speech_started.push(now));
            }
            "response.done" => {
                let cancelled =
                    event.pointer("/response/status").and_then(Value::as_str) == Some("cancelled");
                let id = event.pointer("/response/id").and_then(Value::as_str);
                if cancelled && let Some(&n) = id.and_then(|id| response_ids.get(id)) {
                    self.with_log(|l| {
                        l.cancelled.insert(n);
                    });
                }
            }
            _ => {}
        }
    }
}

/// Length of the bytes that padded base64 `text` decodes to, without decoding it (the
/// fake provider's own parser already rejects malformed audio).
fn base64_len(text: &[u8]) -> usize {
    let padding = text.iter().rev().take(2).filter(|&&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::{B64, Engine, append_audio, base64_len};

    #[test]
    fn base64_lengths_match_the_decoded_bytes() {
        for n in 0..10 {
            let encoded = B64.encode(vec![7u8; n]);
            assert_eq!(base64_len(encoded.as_bytes()), n, "{encoded}");
        }
    }

    #[test]
    fn append_audio_is_found_with_or_without_the_fast_path() {
        let compact = r#"{"type":"input_audio_buffer.append","audio":"AAEC"}"#;
        assert_eq!(append_audio(compact).as_deref(), Some("AAEC"));
        let spaced = r#"{ "type" : "input_audio_buffer.append", "audio" : "AAEC" }"#;
        assert_eq!(append_audio(spaced).as_deref(), Some("AAEC"));
        assert_eq!(append_audio(r#"{"type":"response.create"}"#), None);
    }
}
