//! One fake Realtime session as a sans-IO state machine: client events and the time go
//! in (`handle_*`), server events come out (`poll_output`), and `poll_timeout` says when
//! the next paced audio delta is due. The socket driver lives in `server.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use vocalized_media::core::g711::{alaw_to_pcm, ulaw_to_pcm};

use super::events as ev;
use super::vad::{EnergyVad, VadEvent};
use super::{Failure, OpenAiBehaviour, SessionRecord, Truncate};
use crate::fakes::random_hex;

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this server event as a text frame.
    Send(Value),
    /// Send a close frame and end the session.
    Close { code: u16, reason: String },
    /// Drop the TCP connection with no close frame (a crashed or cut-off server).
    Drop,
    /// Send part of a frame, then neither read nor write again (a wedged server).
    StallMidFrame,
}

/// Fields of the beta session shape; GA rejects them as unknown parameters.
const BETA_SESSION_FIELDS: &[&str] = &[
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "voice",
    "turn_detection",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "max_response_output_tokens",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputFormat {
    Pcmu,
    Pcma,
    /// PCM16 LE at 24 kHz, GA's only PCM rate.
    Pcm24k,
}

impl InputFormat {
    fn from_session(session: &Value) -> Self {
        match session
            .pointer("/audio/input/format/type")
            .and_then(Value::as_str)
        {
            Some("audio/pcmu") => Self::Pcmu,
            Some("audio/pcma") => Self::Pcma,
            _ => Self::Pcm24k,
        }
    }

    fn sample_rate_hz(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::Pcm24k => 24_000,
        }
    }
}

struct ActiveResponse {
    response_id: String,
    item_id: String,
    transcript: String,
    words: Vec<String>,
    words_sent: usize,
    audio: Arc<[u8]>,
    bytes_sent: usize,
    next_due: Instant,
    /// `DropAfter`, `StallMidFrame`: cut the connection once this many bytes have gone out.
    drop_at_bytes: Option<usize>,
    /// `StallMidFrame`: the cut is a stall, not a drop.
    stall: bool,
}

pub struct Session {
    behaviour: Arc<OpenAiBehaviour>,
    record: Arc<Mutex<SessionRecord>>,
    config: Value,
    input_format: InputFormat,
    vad: EnergyVad,
    vad_events: Vec<VadEvent>,
    pcm: Vec<i16>,
    outputs: VecDeque<Output>,
    /// `Stall`: record everything, say nothing.
    mute: bool,
    /// After a fatal error or a drop nothing more may be sent.
    dead: bool,
    last_item_id: Option<String>,
    /// The user item the caller is speaking into, between speech start and stop.
    speech_item_id: Option<String>,
    speech_started_ms: u64,
    uncommitted_bytes: usize,
    caller_turns: usize,
    responses_started: u32,
    responses_completed: u32,
    active: Option<ActiveResponse>,
    /// Audio bytes sent per assistant item, for validating truncates.
    item_audio_bytes: HashMap<String, usize>,
}

impl Session {
    pub fn new(
        behaviour: Arc<OpenAiBehaviour>,
        record: Arc<Mutex<SessionRecord>>,
        model: &str,
    ) -> Self {
        let config = ev::default_session(model);
        let input_format = InputFormat::from_session(&config);
        let mute = matches!(behaviour.failure, Some(Failure::Stall));
        let mut session = Self {
            vad: EnergyVad::new(behaviour.vad, input_format.sample_rate_hz()),
            behaviour,
            record,
            input_format,
            config,
            vad_events: Vec::new(),
            pcm: Vec::new(),
            outputs: VecDeque::new(),
            mute,
            dead: false,
            last_item_id: None,
            speech_item_id: None,
            speech_started_ms: 0,
            uncommitted_bytes: 0,
            caller_turns: 0,
            responses_started: 0,
            responses_completed: 0,
            active: None,
            item_audio_bytes: HashMap::new(),
        };
        let created = ev::session_created(&session.config);
        session.send(created);
        session.maybe_fail_after_response();
        session
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` must next be called (a paced audio delta is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        self.active.as_ref().map(|a| a.next_due)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.pump(now);
    }

    /// A binary frame: the Realtime API speaks JSON text only.
    pub fn handle_binary(&mut self, now: Instant) {
        self.bad_input();
        self.send(ev::error(
            "invalid_request_error",
            "invalid_json",
            "Binary frames are not supported; send JSON text events.",
            None,
            None,
        ));
        self.pump(now);
    }

    /// One client text frame. Bad input is answered with an `error` event, never a panic.
    pub fn handle_client_text(&mut self, text: &str, now: Instant) {
        let event: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.bad_input();
                self.send(ev::error(
                    "invalid_request_error",
                    "invalid_json",
                    &format!("We could not parse the JSON body of your request. ({e})"),
                    None,
                    None,
                ));
                return self.pump(now);
            }
        };
        let client_event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(kind) = event.get("type").and_then(Value::as_str).map(str::to_owned) else {
            self.bad_input();
            self.send(ev::error(
                "invalid_request_error",
                "missing_required_parameter",
                "Missing required parameter: 'type'.",
                Some("type"),
                client_event_id.as_deref(),
            ));
            return self.pump(now);
        };
        self.record_event(&kind);
        let id = client_event_id.as_deref();
        match kind.as_str() {
            "input_audio_buffer.append" => self.on_append(&event, id, now),
            "session.update" => self.on_session_update(&event, id),
            "input_audio_buffer.commit" => self.on_commit(id),
            "input_audio_buffer.clear" => {
                self.uncommitted_bytes = 0;
                self.send(ev::cleared());
            }
            "conversation.item.create" => self.on_item_create(&event, id),
            "conversation.item.truncate" => self.on_truncate(&event, id),
            "response.create" => self.on_response_create(&event, id, now),
            "response.cancel" => {
                if self.active.is_some() {
                    self.cancel_active("client_cancelled");
                } else {
                    self.bad_input();
                    self.client_error(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found.",
                        None,
                        id,
                    );
                }
            }
            other => {
                self.bad_input();
                let message = format!(
                    "Invalid value: '{other}'. Supported values are: 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear', 'conversation.item.create', 'conversation.item.truncate', 'conversation.item.delete', 'conversation.item.retrieve', 'response.create', and 'response.cancel'."
                );
                self.client_error("invalid_value", &message, Some("type"), id);
            }
        }
        self.pump(now);
    }

    fn send(&mut self, event: Value) {
        if !self.mute && !self.dead {
            self.outputs.push_back(Output::Send(event));
        }
    }

    fn client_error(
        &mut self,
        code: &str,
        message: &str,
        param: Option<&str>,
        client_event_id: Option<&str>,
    ) {
        self.send(ev::error(
            "invalid_request_error",
            code,
            message,
            param,
            client_event_id,
        ));
    }

    fn with_record(&self, f: impl FnOnce(&mut SessionRecord)) {
        // A poisoned lock only means a test thread panicked while reading; keep recording.
        let mut record = self.record.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut record);
    }

    fn record_event(&self, kind: &str) {
        self.with_record(|r| {
            *r.event_counts.entry(kind.to_owned()).or_default() += 1;
            // Appends arrive 50 times a second; they are counted, not listed.
            if kind != "input_audio_buffer.append" {
                r.events.push(kind.to_owned());
            }
        });
    }

    fn bad_input(&self) {
        self.with_record(|r| r.errors_sent += 1);
    }

    fn on_session_update(&mut self, event: &Value, id: Option<&str>) {
        let Some(update) = event.get("session").filter(|s| s.is_object()) else {
            self.bad_input();
            return self.client_error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
                id,
            );
        };
        self.with_record(|r| r.session_updates.push(update.clone()));
        if update.get("type").and_then(Value::as_str).is_none() {
            self.bad_input();
            return self.client_error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                Some("session.type"),
                id,
            );
        }
        if let Some(field) = BETA_SESSION_FIELDS
            .iter()
            .find(|f| update.get(**f).is_some())
        {
            self.bad_input();
            let message = format!("Unknown parameter: 'session.{field}'.");
            return self.client_error(
                "unknown_parameter",
                &message,
                Some(&format!("session.{field}")),
                id,
            );
        }
        merge(&mut self.config, update);
        let format = InputFormat::from_session(&self.config);
        if format != self.input_format {
            self.input_format = format;
            self.vad.set_sample_rate(format.sample_rate_hz());
        }
        let updated = ev::session_updated(&self.config);
        self.send(updated);
    }

    fn on_append(&mut self, event: &Value, id: Option<&str>, now: Instant) {
        let Some(audio) = event.get("audio").and_then(Value::as_str) else {
            self.bad_input();
            return self.client_error(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                Some("audio"),
                id,
            );
        };
        let Ok(bytes) = B64.decode(audio) else {
            self.bad_input();
            return self.client_error(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                Some("audio"),
                id,
            );
        };
        self.with_record(|r| r.audio_bytes_in += bytes.len() as u64);
        self.uncommitted_bytes += bytes.len();
        self.pcm.clear();
        match self.input_format {
            InputFormat::Pcmu => ulaw_to_pcm(&bytes, &mut self.pcm),
            InputFormat::Pcma => alaw_to_pcm(&bytes, &mut self.pcm),
            InputFormat::Pcm24k => self.pcm.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
        }
        self.vad_events.clear();
        self.vad.process(&self.pcm, &mut self.vad_events);
        // Server VAD runs only while turn detection is configured (`null` turns it off).
        if self
            .config
            .pointer("/audio/input/turn_detection")
            .is_none_or(Value::is_null)
        {
            return;
        }
        for i in 0..self.vad_events.len() {
            match self.vad_events[i] {
                VadEvent::SpeechStarted { audio_start_ms } => {
                    self.on_speech_started(audio_start_ms)
                }
                VadEvent::SpeechStopped { audio_end_ms } => {
                    self.on_speech_stopped(audio_end_ms, now)
                }
            }
        }
    }

    fn turn_detection_flag(&self, name: &str) -> bool {
        self.config
            .pointer(&format!("/audio/input/turn_detection/{name}"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    fn on_speech_started(&mut self, audio_start_ms: u64) {
        let item_id = new_item_id();
        self.speech_started_ms = audio_start_ms;
        self.speech_item_id = Some(item_id.clone());
        self.with_record(|r| r.speech_started += 1);
        self.send(ev::speech_started(audio_start_ms, &item_id));
        if self.active.is_some() && self.turn_detection_flag("interrupt_response") {
            self.cancel_active("turn_detected");
        }
    }

    fn on_speech_stopped(&mut self, audio_end_ms: u64, now: Instant) {
        let item_id = self.speech_item_id.take().unwrap_or_else(new_item_id);
        self.send(ev::speech_stopped(audio_end_ms, &item_id));
        let previous = self.last_item_id.replace(item_id.clone());
        self.send(ev::committed(&item_id, previous.as_deref()));
        self.uncommitted_bytes = 0;
        let item = json!({"id": item_id, "object": "realtime.item", "type": "message",
                          "status": "completed", "role": "user",
                          "content": [{"type": "input_audio", "transcript": null}]});
        self.send(ev::item_added(&item, previous.as_deref()));
        self.send(ev::item_done(&item, previous.as_deref()));
        let transcribing = self
            .config
            .pointer("/audio/input/transcription")
            .is_some_and(|t| !t.is_null());
        let line = pick(&self.behaviour.caller_lines, self.caller_turns);
        self.caller_turns += 1;
        if transcribing {
            let seconds = audio_end_ms.saturating_sub(self.speech_started_ms) as f64 / 1000.0;
            self.send(ev::transcription_completed(&item_id, &line, seconds));
        }
        if self.turn_detection_flag("create_response") && self.active.is_none() {
            self.start_response(now);
        }
    }

    fn on_commit(&mut self, id: Option<&str>) {
        // 100 ms is the minimum the real server accepts for a manual commit.
        let min_bytes = self.input_format.sample_rate_hz() as usize / 10
            * if self.input_format == InputFormat::Pcm24k {
                2
            } else {
                1
            };
        if self.uncommitted_bytes < min_bytes {
            self.bad_input();
            return self.client_error("input_audio_buffer_commit_empty", "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio.", None, id);
        }
        let item_id = new_item_id();
        let previous = self.last_item_id.replace(item_id.clone());
        self.uncommitted_bytes = 0;
        self.send(ev::committed(&item_id, previous.as_deref()));
    }

    fn on_item_create(&mut self, event: &Value, id: Option<&str>) {
        let Some(item) = event.get("item").filter(|i| i.is_object()) else {
            self.bad_input();
            return self.client_error(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                Some("item"),
                id,
            );
        };
        self.with_record(|r| r.item_creates.push(item.clone()));
        let mut item = item.clone();
        let item_id = match item.get("id").and_then(Value::as_str) {
            Some(existing) => existing.to_owned(),
            None => {
                let fresh = new_item_id();
                item["id"] = json!(fresh);
                fresh
            }
        };
        item["object"] = json!("realtime.item");
        item["status"] = json!("completed");
        let previous = self.last_item_id.replace(item_id);
        self.send(ev::item_added(&item, previous.as_deref()));
        self.send(ev::item_done(&item, previous.as_deref()));
    }

    fn on_truncate(&mut self, event: &Value, id: Option<&str>) {
        let item_id = event.get("item_id").and_then(Value::as_str);
        let content_index = event.get("content_index").and_then(Value::as_u64);
        let audio_end_ms = event.get("audio_end_ms").and_then(Value::as_u64);
        let (Some(item_id), Some(content_index), Some(audio_end_ms)) =
            (item_id, content_index, audio_end_ms)
        else {
            self.bad_input();
            return self.client_error("missing_required_parameter", "conversation.item.truncate needs item_id, content_index and audio_end_ms (non-negative integers).", None, id);
        };
        let item_id = item_id.to_owned();
        self.with_record(|r| {
            r.truncates.push(Truncate {
                item_id: item_id.clone(),
                content_index,
                audio_end_ms,
            })
        });
        let Some(&bytes) = self.item_audio_bytes.get(&item_id) else {
            self.bad_input();
            let message = format!(
                "Item with item_id '{item_id}' not found, or it is not an assistant message with audio."
            );
            return self.client_error(
                "item_truncate_invalid_item_id",
                &message,
                Some("item_id"),
                id,
            );
        };
        let sent_ms = (bytes / 8) as u64;
        if content_index != 0 || audio_end_ms > sent_ms {
            self.bad_input();
            let message =
                format!("Audio content of {sent_ms}ms is already shorter than {audio_end_ms}ms");
            return self.client_error("invalid_value", &message, Some("audio_end_ms"), id);
        }
        self.send(ev::item_truncated(&item_id, content_index, audio_end_ms));
    }

    fn on_response_create(&mut self, event: &Value, id: Option<&str>, now: Instant) {
        self.with_record(|r| {
            r.response_creates
                .push(event.get("response").cloned().unwrap_or(Value::Null))
        });
        if let Some(active) = &self.active {
            let message = format!(
                "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                active.response_id
            );
            self.bad_input();
            return self.client_error(
                "conversation_already_has_active_response",
                &message,
                None,
                id,
            );
        }
        self.start_response(now);
    }

    fn start_response(&mut self, now: Instant) {
        self.responses_started += 1;
        let n = self.responses_started;
        let response_id = format!("resp_{}", random_hex(22));
        let item_id = new_item_id();
        let transcript = pick(&self.behaviour.agent_lines, n as usize - 1);
        let (drop_at_bytes, stall) = match self.behaviour.failure {
            Some(Failure::DropAfter { responses }) if n == responses + 1 => {
                (Some(self.behaviour.agent_audio.len() / 2), false)
            }
            Some(Failure::StallMidFrame { responses }) if n == responses + 1 => {
                (Some(self.behaviour.agent_audio.len() / 2), true)
            }
            _ => (None, false),
        };
        self.with_record(|r| r.responses_started += 1);
        let response = ev::response_object(&response_id, "in_progress", None, vec![], None);
        self.send(ev::response_created(&response));
        self.send(ev::rate_limits_updated());
        let item = ev::assistant_item(&item_id, "in_progress", None);
        self.send(ev::output_item_added(&response_id, &item));
        let previous = self.last_item_id.replace(item_id.clone());
        self.send(ev::item_added(&item, previous.as_deref()));
        self.send(ev::content_part(
            "response.content_part.added",
            &response_id,
            &item_id,
            "",
        ));
        self.item_audio_bytes.insert(item_id.clone(), 0);
        self.active = Some(ActiveResponse {
            words: transcript.split_inclusive(' ').map(str::to_owned).collect(),
            words_sent: 0,
            response_id,
            item_id,
            transcript,
            audio: self.behaviour.agent_audio.clone(),
            bytes_sent: 0,
            next_due: now
                + Duration::from_millis(self.behaviour.response_delay_ms)
                + jitter(self.behaviour.response_jitter_ms),
            drop_at_bytes,
            stall,
        });
    }

    /// Sends every delta that is due by `now`, then the closing events once all are out.
    fn pump(&mut self, now: Instant) {
        let chunk = self.behaviour.delta_bytes.max(1);
        let interval = Duration::from_millis(self.behaviour.delta_interval_ms);
        while !self.dead {
            let Some(active) = self.active.as_mut() else {
                return;
            };
            if active.next_due > now {
                return;
            }
            if let Some(limit) = active.drop_at_bytes
                && active.bytes_sent >= limit
            {
                self.dead = true;
                let cut = if active.stall {
                    Output::StallMidFrame
                } else {
                    Output::Drop
                };
                self.outputs.push_back(cut);
                return;
            }
            if active.bytes_sent >= active.audio.len() {
                return self.finish_active();
            }
            let start = active.bytes_sent;
            let end = (start + chunk).min(active.audio.len());
            let delta = B64.encode(&active.audio[start..end]);
            active.bytes_sent = end;
            // Spread the transcript over the audio so text and sound stay roughly aligned.
            let words_due = active.words.len() * end / active.audio.len().max(1);
            let text: String = active.words[active.words_sent..words_due].concat();
            active.words_sent = words_due;
            active.next_due += interval;
            let (response_id, item_id) = (active.response_id.clone(), active.item_id.clone());
            *self.item_audio_bytes.entry(item_id.clone()).or_default() = end;
            self.with_record(|r| r.audio_bytes_out += (end - start) as u64);
            self.send(ev::audio_delta(&response_id, &item_id, &delta));
            if !text.is_empty() {
                self.send(ev::transcript_delta(&response_id, &item_id, &text));
            }
        }
    }

    fn finish_active(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let (rid, iid) = (&active.response_id, &active.item_id);
        self.send(ev::audio_done(rid, iid));
        self.send(ev::transcript_done(rid, iid, &active.transcript));
        self.send(ev::content_part(
            "response.content_part.done",
            rid,
            iid,
            &active.transcript,
        ));
        let item = ev::assistant_item(iid, "completed", Some(&active.transcript));
        self.send(ev::output_item_done(rid, &item));
        self.send(ev::item_done(&item, None));
        let response = ev::response_object(
            rid,
            "completed",
            None,
            vec![item],
            Some(&self.behaviour.usage),
        );
        self.send(ev::response_done(&response));
        self.responses_completed += 1;
        self.with_record(|r| r.responses_completed += 1);
        self.maybe_fail_after_response();
    }

    fn cancel_active(&mut self, reason: &str) {
        let Some(active) = self.active.take() else {
            return;
        };
        let (rid, iid) = (&active.response_id, &active.item_id);
        let partial = active.words[..active.words_sent].concat();
        let item = ev::assistant_item(iid, "incomplete", Some(&partial));
        self.send(ev::output_item_done(rid, &item));
        let response = ev::response_object(
            rid,
            "cancelled",
            Some(reason),
            vec![item],
            Some(&self.behaviour.usage),
        );
        self.send(ev::response_done(&response));
        self.with_record(|r| r.responses_cancelled += 1);
    }

    fn maybe_fail_after_response(&mut self) {
        if let Some(Failure::ErrorAfter { responses, fatal }) = self.behaviour.failure
            && responses == self.responses_completed
        {
            self.send(ev::error(
                "server_error",
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
                None,
                None,
            ));
            if fatal && !self.mute {
                self.outputs.push_back(Output::Close {
                    code: 1011,
                    reason: "server_error".into(),
                });
                self.dead = true;
            }
        }
    }
}

/// A uniform draw from [0, `max_ms`) at µs resolution; zero when `max_ms` is 0.
fn jitter(max_ms: u64) -> Duration {
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let draw = u64::from_str_radix(&random_hex(12), 16).unwrap_or(0);
    Duration::from_micros(draw % (max_ms * 1000))
}

fn new_item_id() -> String {
    format!("item_{}", random_hex(22))
}

/// Line `i` of a script, cycling; empty if there is no script.
fn pick(lines: &[String], i: usize) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        lines[i % lines.len()].clone()
    }
}

/// `session.update` semantics: only the fields present change; objects merge
/// recursively; anything else (including `null` and arrays) replaces.
fn merge(target: &mut Value, update: &Value) {
    match (target, update) {
        (Value::Object(t), Value::Object(u)) => {
            for (key, value) in u {
                match t.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        t.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (t, u) => *t = u.clone(),
    }
}
