//! One fake Gemini Live session as a sans-IO state machine: client frames and the time go
//! in (`handle_*`), server messages come out (`poll_output`), and `poll_timeout` says when
//! something scripted is next due (a delayed `setupComplete`, paced audio, a failure).
//! The socket driver lives in `server.rs`.
//!
//! Protocol rules enforced like the real server (protocols.md §3): the first message must
//! be `setup` and comes once; a bad `setup` or a malformed message closes the socket with
//! 1007; `activityStart`/`activityEnd` need automatic activity detection off. Messages
//! sent between `setup` and `setupComplete` are counted in `early_messages` and dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::messages as msg;
use super::pcm;
use super::{Failure, GeminiBehaviour, SessionRecord};
use crate::fakes::openai::vad::{EnergyVad, VadEvent};
use crate::fakes::random_hex;

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this server message (as text, or binary with `binary_frames`).
    Send(Value),
    /// Send a close frame and end the session.
    Close { code: u16, reason: String },
    /// Drop the TCP connection with no close frame (a crashed or cut-off server).
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingSetup,
    /// `setup` accepted; `setupComplete` goes out at this instant.
    SetupPending(Instant),
    Ready,
    Dead,
}

struct Reply {
    words: Vec<String>,
    words_sent: usize,
    audio: Arc<[u8]>,
    bytes_sent: usize,
    next_due: Instant,
}

pub struct Session {
    behaviour: Arc<GeminiBehaviour>,
    record: Arc<Mutex<SessionRecord>>,
    /// Resumable handles issued by every session of this server.
    known_handles: Arc<Mutex<Vec<String>>>,
    outputs: VecDeque<Output>,
    phase: Phase,
    die_at: Option<Instant>,
    go_away_at: Option<Instant>,
    close_at: Option<Instant>,
    vad: EnergyVad,
    input_rate_hz: u32,
    vad_events: Vec<VadEvent>,
    samples: Vec<i16>,
    manual_activity: bool,
    interrupts: bool,
    transcribe_input: bool,
    transcribe_output: bool,
    resumable: bool,
    caller_turns: usize,
    replies: u32,
    active: Option<Reply>,
    /// The id of a scripted tool call waiting for its `toolResponse`.
    pending_tool: Option<String>,
}

impl Session {
    pub fn new(
        behaviour: Arc<GeminiBehaviour>,
        record: Arc<Mutex<SessionRecord>>,
        known_handles: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        let mut session = Self {
            vad: EnergyVad::new(behaviour.vad, 16_000),
            behaviour,
            record,
            known_handles,
            outputs: VecDeque::new(),
            phase: Phase::AwaitingSetup,
            die_at: None,
            go_away_at: None,
            close_at: None,
            input_rate_hz: 16_000,
            vad_events: Vec::new(),
            samples: Vec::new(),
            manual_activity: false,
            interrupts: true,
            transcribe_input: false,
            transcribe_output: false,
            resumable: false,
            caller_turns: 0,
            replies: 0,
            active: None,
            pending_tool: None,
        };
        if let Some(expected) = session.behaviour.api_key.clone() {
            let given = session.with_record(|r| r.key.clone().or(r.api_key_header.clone()));
            if given.as_deref() != Some(expected.as_str()) {
                session.close(1008, "API key not valid. Please pass a valid API key.");
            }
        }
        session
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let setup = match self.phase {
            Phase::Dead => return None,
            Phase::SetupPending(at) => Some(at),
            _ => None,
        };
        [
            setup,
            self.die_at,
            self.go_away_at,
            self.close_at,
            self.active.as_ref().map(|r| r.next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Phase::SetupPending(at) = self.phase
            && at <= now
        {
            self.become_ready(now);
        }
        if self.die_at.is_some_and(|at| at <= now) {
            self.die_at = None;
            self.phase = Phase::Dead;
            self.outputs.push_back(Output::Drop);
            return;
        }
        if let Some(at) = self.go_away_at.filter(|at| *at <= now) {
            self.go_away_at = None;
            if let Some(Failure::GoAwayAfterMs { time_left_ms, .. }) = self.behaviour.failure {
                self.with_record(|r| r.go_away_sent = true);
                self.send(msg::go_away(time_left_ms));
                self.close_at = Some(at + Duration::from_millis(time_left_ms));
            }
        }
        if self.close_at.is_some_and(|at| at <= now) {
            self.close_at = None;
            return self.close(1000, "The connection reached its time limit.");
        }
        self.pump(now);
    }

    /// One binary client frame: Gemini reads it as UTF-8 JSON, like a text frame.
    pub fn handle_client_binary(&mut self, bytes: &[u8], now: Instant) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.handle_client_text(text, now),
            Err(_) => self.close(1007, "Invalid JSON payload received: not UTF-8."),
        }
    }

    /// One client text frame. Bad input closes the session with 1007, never a panic.
    pub fn handle_client_text(&mut self, text: &str, now: Instant) {
        if self.phase == Phase::Dead {
            return;
        }
        let message: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.close(1007, &format!("Invalid JSON payload received. {e}")),
        };
        let Some(fields) = message.as_object().filter(|m| m.len() == 1) else {
            return self.close(
                1007,
                "A client message must hold exactly one of setup, clientContent, realtimeInput or toolResponse.",
            );
        };
        let Some((kind, body)) = fields.iter().next() else {
            return;
        };
        let kind = match (kind.as_str(), body.as_object()) {
            ("realtimeInput", Some(input)) if input.len() == 1 => {
                format!("realtimeInput.{}", input.keys().next().map_or("", |k| k))
            }
            (k @ ("setup" | "clientContent" | "toolResponse"), _) => k.to_owned(),
            _ => {
                return self.close(
                    1007,
                    &format!("Invalid JSON payload received. Unknown name \"{kind}\"."),
                );
            }
        };
        if kind != "realtimeInput.audio" {
            self.with_record(|r| r.messages.push(kind.clone()));
        }
        self.with_record(|r| *r.counts.entry(kind.clone()).or_default() += 1);
        match (self.phase, kind.as_str()) {
            (Phase::AwaitingSetup, "setup") => self.on_setup(body, now),
            (Phase::AwaitingSetup, _) => self.close(1007, "The first message must be setup."),
            (_, "setup") => self.close(1007, "setup may be sent only once."),
            (Phase::SetupPending(_), _) => self.with_record(|r| r.early_messages += 1),
            (Phase::Ready, _) => self.on_message(&kind, body, now),
            (Phase::Dead, _) => {}
        }
        self.pump(now);
    }

    fn on_message(&mut self, kind: &str, body: &Value, now: Instant) {
        let input = &body[kind.strip_prefix("realtimeInput.").unwrap_or("")];
        match kind {
            "realtimeInput.audio" | "realtimeInput.mediaChunks" => {
                let chunks: Vec<&Value> = match input {
                    Value::Array(chunks) => chunks.iter().collect(),
                    single => vec![single],
                };
                for chunk in chunks {
                    self.on_audio(chunk, now);
                }
            }
            "realtimeInput.text" => {
                let text = input.as_str().unwrap_or_default().to_owned();
                self.with_record(|r| r.texts.push(text));
                self.start_reply(now);
            }
            "realtimeInput.audioStreamEnd" => {}
            "realtimeInput.activityStart" | "realtimeInput.activityEnd" => {
                if !self.manual_activity {
                    return self.close(
                        1007,
                        "activityStart and activityEnd need automaticActivityDetection.disabled.",
                    );
                }
                if kind.ends_with("Start") {
                    self.on_speech_started();
                } else {
                    self.on_speech_stopped(now);
                }
            }
            "clientContent" => self.on_client_content(body, now),
            "toolResponse" => self.on_tool_response(body, now),
            _ => self.close(1007, &format!("Unsupported input {kind}.")),
        }
    }

    fn send(&mut self, message: Value) {
        if self.phase != Phase::Dead {
            self.outputs.push_back(Output::Send(message));
        }
    }

    fn close(&mut self, code: u16, reason: &str) {
        if self.phase == Phase::Dead {
            return;
        }
        self.with_record(|r| r.close_sent = Some((code, reason.to_owned())));
        self.outputs.push_back(Output::Close {
            code,
            reason: reason.to_owned(),
        });
        self.phase = Phase::Dead;
        self.active = None;
    }

    fn with_record<T>(&self, f: impl FnOnce(&mut SessionRecord) -> T) -> T {
        // A poisoned lock only means a test thread panicked while reading; keep recording.
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut record)
    }

    fn on_setup(&mut self, setup: &Value, now: Instant) {
        self.with_record(|r| r.setup = Some(setup.clone()));
        if let Err(reason) = msg::check_setup(setup) {
            return self.close(1007, &reason);
        }
        let detection = setup.pointer("/realtimeInputConfig/automaticActivityDetection");
        let ms = |key: &str| {
            detection
                .and_then(|d| d.get(key))
                .and_then(Value::as_u64)
                .map(|v| v.clamp(20, 10_000) as u32)
        };
        let mut vad = self.behaviour.vad;
        vad.stop_ms = ms("silenceDurationMs").unwrap_or(vad.stop_ms);
        vad.start_ms = ms("prefixPaddingMs").unwrap_or(vad.start_ms);
        self.vad = EnergyVad::new(vad, self.input_rate_hz);
        self.manual_activity = detection
            .and_then(|d| d.get("disabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.interrupts = setup
            .pointer("/realtimeInputConfig/activityHandling")
            .and_then(Value::as_str)
            != Some("NO_INTERRUPTION");
        self.transcribe_input = setup.get("inputAudioTranscription").is_some();
        self.transcribe_output = setup.get("outputAudioTranscription").is_some();
        self.resumable = setup.get("sessionResumption").is_some();
        if let Some(handle) = setup
            .pointer("/sessionResumption/handle")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
        {
            self.with_record(|r| r.resumed_from = Some(handle.to_owned()));
            let known = self
                .known_handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|h| h == handle);
            if !known {
                return self.close(1007, "Invalid session resumption handle.");
            }
        }
        let delay = Duration::from_millis(self.behaviour.setup_delay_ms);
        self.phase = Phase::SetupPending(now + delay);
        if delay.is_zero() {
            self.become_ready(now);
        }
    }

    fn become_ready(&mut self, now: Instant) {
        self.phase = Phase::Ready;
        self.send(msg::setup_complete(&random_hex(16)));
        self.issue_handle();
        match self.behaviour.failure {
            Some(Failure::CloseAfterSetup { code }) => self.close(code, "Internal error."),
            Some(Failure::DieAfterMs(ms)) => self.die_at = Some(now + Duration::from_millis(ms)),
            Some(Failure::GoAwayAfterMs { after_ms, .. }) => {
                self.go_away_at = Some(now + Duration::from_millis(after_ms))
            }
            _ => {}
        }
    }

    /// A fresh resumable handle, when the setup asked for resumption.
    fn issue_handle(&mut self) {
        if !self.resumable {
            return;
        }
        let handle = format!("CiQ{}", random_hex(32));
        self.known_handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle.clone());
        self.with_record(|r| r.handles_issued.push(handle.clone()));
        self.send(msg::resumption_update(&handle, true));
    }

    fn on_audio(&mut self, chunk: &Value, now: Instant) {
        let mime = chunk.get("mimeType").and_then(Value::as_str).unwrap_or("");
        let Some(rate) = mime.strip_prefix("audio/pcm").map(|rest| {
            rest.strip_prefix(";rate=")
                .map_or(Some(16_000), |r| r.parse().ok())
        }) else {
            return self.close(1007, &format!("Unsupported audio mime type '{mime}'."));
        };
        let Some(rate) = rate.filter(|r: &u32| (8_000..=48_000).contains(r)) else {
            return self.close(1007, &format!("Invalid sample rate in '{mime}'."));
        };
        let Some(bytes) = chunk
            .get("data")
            .and_then(Value::as_str)
            .and_then(|d| B64.decode(d).ok())
        else {
            return self.close(
                1007,
                "Invalid value at 'realtime_input.audio.data': base64.",
            );
        };
        self.with_record(|r| {
            r.audio_bytes_in += bytes.len() as u64;
            r.audio_in.push((now, r.audio_bytes_in));
            if !r.audio_mime_types.iter().any(|m| m == mime) {
                r.audio_mime_types.push(mime.to_owned());
            }
        });
        if rate != self.input_rate_hz {
            self.input_rate_hz = rate;
            self.vad.set_sample_rate(rate);
        }
        self.samples.clear();
        self.samples.extend(pcm::from_bytes(&bytes));
        self.vad_events.clear();
        self.vad.process(&self.samples, &mut self.vad_events);
        if self.manual_activity {
            return;
        }
        for i in 0..self.vad_events.len() {
            match self.vad_events[i] {
                VadEvent::SpeechStarted { .. } => self.on_speech_started(),
                VadEvent::SpeechStopped { .. } => self.on_speech_stopped(now),
            }
        }
    }

    fn on_speech_started(&mut self) {
        self.with_record(|r| r.speech_started += 1);
        if self.active.is_some() && self.interrupts {
            self.active = None;
            self.with_record(|r| r.interruptions += 1);
            self.send(msg::interrupted());
        }
    }

    fn on_speech_stopped(&mut self, now: Instant) {
        let line = pick(&self.behaviour.caller_lines, self.caller_turns);
        self.caller_turns += 1;
        if self.transcribe_input {
            // Input transcription arrives in pieces, like the real service's.
            for piece in pieces(&line, 3) {
                self.send(msg::input_transcription(&piece));
            }
        }
        if self.active.is_none() && self.pending_tool.is_none() {
            self.start_reply(now);
        }
    }

    fn on_client_content(&mut self, body: &Value, now: Instant) {
        let turns = body.get("turns").and_then(Value::as_array);
        let complete = body.get("turnComplete").and_then(Value::as_bool) == Some(true);
        if turns.is_some_and(|t| {
            t.iter()
                .any(|turn| !turn.get("parts").is_some_and(Value::is_array))
        }) {
            return self.close(
                1007,
                "Invalid value at 'client_content.turns': parts needed.",
            );
        }
        let turns = turns.cloned().unwrap_or_default();
        self.with_record(|r| {
            r.client_turns.extend(turns);
            r.client_turn_completes += u32::from(complete);
        });
        if complete && self.active.is_none() && self.pending_tool.is_none() {
            self.start_reply(now);
        }
    }

    fn on_tool_response(&mut self, body: &Value, now: Instant) {
        let Some(responses) = body.get("functionResponses").and_then(Value::as_array) else {
            return self.close(1007, "toolResponse needs functionResponses.");
        };
        if responses
            .iter()
            .any(|r| !r.get("response").is_some_and(Value::is_object))
        {
            return self.close(
                1007,
                "Invalid value at 'tool_response.function_responses[0].response': an object.",
            );
        }
        let answered = self.pending_tool.as_deref().is_some_and(|id| {
            responses
                .iter()
                .any(|r| r.get("id").and_then(Value::as_str) == Some(id))
        });
        self.with_record(|r| r.tool_responses.extend(responses.iter().cloned()));
        if answered {
            self.pending_tool = None;
            self.start_audio(now);
        }
    }

    /// The model's next reply: a scripted tool call, or speech.
    fn start_reply(&mut self, now: Instant) {
        self.replies += 1;
        let call = self
            .behaviour
            .tool_call
            .as_ref()
            .filter(|c| c.reply == self.replies)
            .cloned();
        match call {
            Some(call) => {
                let id = format!("fc_{}", random_hex(16));
                if self.resumable {
                    self.send(msg::resumption_update("", false));
                }
                self.send(msg::tool_call(&id, &call.name, &call.args));
                self.pending_tool = Some(id);
            }
            None => self.start_audio(now),
        }
    }

    fn start_audio(&mut self, now: Instant) {
        let line = pick(&self.behaviour.agent_lines, self.replies as usize - 1);
        self.with_record(|r| r.turns_started += 1);
        if self.resumable {
            self.send(msg::resumption_update("", false));
        }
        self.active = Some(Reply {
            words: line.split_inclusive(' ').map(str::to_owned).collect(),
            words_sent: 0,
            audio: self.behaviour.agent_audio.clone(),
            bytes_sent: 0,
            next_due: now + Duration::from_millis(self.behaviour.response_delay_ms),
        });
    }

    /// Sends every audio chunk due by `now`, then the turn's end once all are out.
    fn pump(&mut self, now: Instant) {
        let chunk_bytes = (self.behaviour.chunk_ms.max(1) as usize) * 48;
        let interval = Duration::from_millis(self.behaviour.chunk_interval_ms);
        while self.phase == Phase::Ready {
            let Some(reply) = self.active.as_mut() else {
                return;
            };
            if reply.next_due > now {
                return;
            }
            if reply.bytes_sent >= reply.audio.len() {
                return self.finish_reply();
            }
            let start = reply.bytes_sent;
            let end = (start + chunk_bytes).min(reply.audio.len());
            let data = B64.encode(&reply.audio[start..end]);
            reply.bytes_sent = end;
            // Spread the transcription over the audio so text and sound stay aligned.
            let words_due = reply.words.len() * end / reply.audio.len().max(1);
            let text: String = reply.words[reply.words_sent..words_due].concat();
            reply.words_sent = words_due;
            reply.next_due += interval;
            self.with_record(|r| {
                r.audio_bytes_out += (end - start) as u64;
                r.audio_out.push(now);
            });
            self.send(msg::audio(&data));
            if self.transcribe_output && !text.is_empty() {
                self.send(msg::output_transcription(&text));
            }
        }
    }

    fn finish_reply(&mut self) {
        self.active = None;
        self.send(msg::generation_complete());
        self.send(msg::turn_complete(&self.behaviour.usage));
        self.with_record(|r| r.turns_completed += 1);
        self.issue_handle();
    }
}

/// Line `i` of a script, cycling; empty if there is no script.
fn pick(lines: &[String], i: usize) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        lines[i % lines.len()].clone()
    }
}

/// `line` in at most `n` pieces at word boundaries, spaces kept, so joining them gives
/// `line` back.
fn pieces(line: &str, n: usize) -> Vec<String> {
    let words: Vec<&str> = line.split_inclusive(' ').collect();
    let per = words.len().div_ceil(n.max(1)).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(behaviour: GeminiBehaviour) -> (Session, Arc<Mutex<SessionRecord>>) {
        let record = Arc::new(Mutex::new(SessionRecord::default()));
        let s = Session::new(Arc::new(behaviour), record.clone(), Arc::default());
        (s, record)
    }

    fn drain(s: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn setup() -> String {
        json!({"setup": {"model": "models/m", "inputAudioTranscription": {},
                         "outputAudioTranscription": {}, "sessionResumption": {}}})
        .to_string()
    }

    #[test]
    fn pieces_join_back_to_the_line() {
        let line = "Hello, I would like to check my order.";
        let p = pieces(line, 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.concat(), line);
        assert!(pieces("", 3).concat().is_empty());
    }

    #[test]
    fn setup_delay_and_a_scripted_clock() {
        let behaviour = GeminiBehaviour {
            setup_delay_ms: 300,
            ..GeminiBehaviour::default()
        }
        .with_failure(Failure::GoAwayAfterMs {
            after_ms: 1000,
            time_left_ms: 500,
        });
        let (mut s, record) = session(behaviour);
        let t0 = Instant::now();
        s.handle_client_text(&setup(), t0);
        assert!(drain(&mut s).is_empty());
        s.handle_client_text(r#"{"realtimeInput":{"audioStreamEnd":true}}"#, t0);
        assert_eq!(record.lock().unwrap().early_messages, 1);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(300)));

        let ready = t0 + Duration::from_millis(300);
        s.handle_timeout(ready);
        let out = drain(&mut s);
        assert!(matches!(&out[0], Output::Send(v) if v.get("setupComplete").is_some()));
        assert!(
            matches!(&out[1], Output::Send(v) if v["sessionResumptionUpdate"]["resumable"] == true)
        );
        assert_eq!(s.poll_timeout(), Some(ready + Duration::from_millis(1000)));

        s.handle_timeout(ready + Duration::from_millis(1000));
        let out = drain(&mut s);
        assert_eq!(
            out,
            [Output::Send(json!({"goAway": {"timeLeft": "0.500s"}}))]
        );
        s.handle_timeout(ready + Duration::from_millis(1500));
        assert!(matches!(
            drain(&mut s)[..],
            [Output::Close { code: 1000, .. }]
        ));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn protocol_violations_close_with_1007() {
        for bad in [
            "not json",
            r#"{"realtimeInput":{"audioStreamEnd":true}}"#,
            r#"{"setup":{"model":"models/m"},"clientContent":{}}"#,
            r#"{"setup":{"model":"gemini"}}"#,
            r#"{"bidiGenerateContentSetup":{}}"#,
        ] {
            let (mut s, record) = session(GeminiBehaviour::default());
            s.handle_client_text(bad, Instant::now());
            assert!(
                matches!(drain(&mut s).last(), Some(Output::Close { code: 1007, .. })),
                "{bad}"
            );
            assert_eq!(record.lock().unwrap().close_sent.as_ref().unwrap().0, 1007);
        }
        let (mut s, _) = session(GeminiBehaviour::default());
        let now = Instant::now();
        s.handle_client_text(&setup(), now);
        drain(&mut s);
        s.handle_client_text(r#"{"realtimeInput":{"activityStart":{}}}"#, now);
        assert!(matches!(
            drain(&mut s)[..],
            [Output::Close { code: 1007, .. }]
        ));
    }
}
