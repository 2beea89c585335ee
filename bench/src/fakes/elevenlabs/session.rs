//! One fake ElevenLabs conversation as a sans-IO state machine (protocols.md §4.2–4.5).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use vocalized_media::core::g711::ulaw_to_pcm;

use super::ws::{Machine, Out, agent_audio_as};
use super::{ElevenLabsBehaviour, ElevenLabsRecord, Failure};
use crate::fakes::openai::vad::{EnergyVad, VadEvent};
use crate::fakes::random_hex;

/// `None` for µ-law, else the PCM16 rate of an ElevenLabs format name.
fn pcm_rate(name: &str) -> Option<u32> {
    name.strip_prefix("pcm_").and_then(|r| r.parse().ok())
}

struct Turn {
    event_id: u64,
    audio: Arc<[u8]>,
    sent: usize,
    next_due: Instant,
}

pub struct Session {
    behaviour: Arc<ElevenLabsBehaviour>,
    record: Arc<Mutex<ElevenLabsRecord>>,
    outputs: VecDeque<Out>,
    input_rate: Option<u32>,
    /// Agent audio in the output format.
    agent_audio: Arc<[u8]>,
    vad: EnergyVad,
    vad_events: Vec<VadEvent>,
    pcm: Vec<i16>,
    /// The metadata is due at this time (after the initiation message).
    ready_at: Option<Instant>,
    ready: bool,
    /// The first message to speak once ready (override or the agent's own).
    first_message: String,
    next_event_id: u64,
    next_ping: Option<Instant>,
    die_at: Option<Instant>,
    dead: bool,
    caller_turns: usize,
    agent_turns: usize,
    turn: Option<Turn>,
    /// A tool call waiting for its result: (tool_call_id).
    pending_tool: Option<String>,
}

impl Session {
    pub fn new(
        behaviour: Arc<ElevenLabsBehaviour>,
        record: Arc<Mutex<ElevenLabsRecord>>,
        now: Instant,
    ) -> Self {
        let input_rate = pcm_rate(&behaviour.user_input_audio_format);
        let agent_audio = agent_audio_as(
            &behaviour.agent_audio,
            pcm_rate(&behaviour.agent_output_audio_format),
        )
        .into();
        let die_at = match behaviour.failure {
            Some(Failure::DieAfterMs(ms)) => Some(now + Duration::from_millis(ms)),
            _ => None,
        };
        Self {
            vad: EnergyVad::new(behaviour.vad, input_rate.unwrap_or(8000)),
            first_message: behaviour.first_message.clone(),
            behaviour,
            record,
            outputs: VecDeque::new(),
            input_rate,
            agent_audio,
            vad_events: Vec::new(),
            pcm: Vec::new(),
            ready_at: None,
            ready: false,
            next_event_id: 1,
            next_ping: None,
            die_at,
            dead: false,
            caller_turns: 0,
            agent_turns: 0,
            turn: None,
            pending_tool: None,
        }
    }

    fn with_record(&self, f: impl FnOnce(&mut ElevenLabsRecord)) {
        f(&mut self.record.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn send(&mut self, message: Value) {
        if !self.dead {
            self.outputs.push_back(Out::Text(message.to_string()));
        }
    }

    fn event_id(&mut self) -> u64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        id
    }

    fn bad_input(&mut self, why: &str) {
        self.with_record(|r| r.bad_input += 1);
        tracing::debug!(why, "fake ElevenLabs: bad client message");
    }

    fn on_initiation(&mut self, message: Value, now: Instant) {
        if self.ready_at.is_some() || self.ready {
            return self.bad_input("second initiation message");
        }
        if let Some(first) = message
            .pointer("/conversation_config_override/agent/first_message")
            .and_then(Value::as_str)
        {
            self.first_message = first.to_owned();
        }
        self.with_record(|r| r.initiation = Some(message));
        self.ready_at = Some(now + Duration::from_millis(self.behaviour.ready_delay_ms));
        self.pump(now);
    }

    fn become_ready(&mut self, now: Instant) {
        self.ready_at = None;
        self.ready = true;
        let metadata = json!({
            "type": "conversation_initiation_metadata",
            "conversation_initiation_metadata_event": {
                "conversation_id": format!("conv_{}", random_hex(24)),
                "agent_output_audio_format": self.behaviour.agent_output_audio_format,
                "user_input_audio_format": self.behaviour.user_input_audio_format,
            }
        });
        self.send(metadata);
        if self.behaviour.failure == Some(Failure::CloseAfterSetup) {
            self.outputs.push_back(Out::Close {
                code: 1011,
                reason: "internal error".into(),
            });
            self.dead = true;
            return;
        }
        if self.behaviour.ping_interval_ms > 0 {
            self.next_ping = Some(now + Duration::from_millis(self.behaviour.ping_interval_ms));
        }
        if !self.first_message.trim().is_empty() {
            let text = self.first_message.clone();
            self.start_turn(text, now);
        }
    }

    fn start_turn(&mut self, text: String, now: Instant) {
        let event_id = self.event_id();
        self.with_record(|r| r.turns_started += 1);
        self.send(json!({"type": "agent_response",
                         "agent_response_event": {"agent_response": &text}}));
        self.turn = Some(Turn {
            event_id,
            audio: self.agent_audio.clone(),
            sent: 0,
            next_due: now,
        });
    }

    fn answer(&mut self, now: Instant) {
        let lines = &self.behaviour.agent_lines;
        let text = if lines.is_empty() {
            String::new()
        } else {
            lines[self.agent_turns % lines.len()].clone()
        };
        self.agent_turns += 1;
        self.start_turn(text, now);
    }

    fn on_audio(&mut self, b64: &str, now: Instant) {
        let Ok(bytes) = B64.decode(b64) else {
            return self.bad_input("user_audio_chunk is not base64");
        };
        self.with_record(|r| {
            r.audio_chunks_in += 1;
            r.audio_bytes_in += bytes.len() as u64;
        });
        if !self.ready {
            // Audio before the metadata is not heard (the agent is not live yet).
            return;
        }
        self.pcm.clear();
        match self.input_rate {
            None => ulaw_to_pcm(&bytes, &mut self.pcm),
            Some(_) => self.pcm.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
        }
        self.vad_events.clear();
        self.vad.process(&self.pcm, &mut self.vad_events);
        for i in 0..self.vad_events.len() {
            match self.vad_events[i] {
                VadEvent::SpeechStarted { .. } => self.on_speech_started(),
                VadEvent::SpeechStopped { .. } => self.on_speech_stopped(now),
            }
        }
    }

    fn on_speech_started(&mut self) {
        self.with_record(|r| r.speech_started += 1);
        let Some(turn) = self.turn.take() else {
            return;
        };
        self.with_record(|r| r.interruptions += 1);
        self.send(json!({"type": "interruption",
                         "interruption_event": {"event_id": turn.event_id}}));
        if self.behaviour.late_audio_after_interruption && turn.sent < turn.audio.len() {
            let end = (turn.sent + self.chunk_bytes()).min(turn.audio.len());
            let chunk = B64.encode(&turn.audio[turn.sent..end]);
            self.send(json!({"type": "audio",
                             "audio_event": {"audio_base_64": chunk, "event_id": turn.event_id}}));
        }
    }

    fn on_speech_stopped(&mut self, now: Instant) {
        let lines = &self.behaviour.caller_lines;
        let line = if lines.is_empty() {
            String::new()
        } else {
            lines[self.caller_turns % lines.len()].clone()
        };
        self.caller_turns += 1;
        self.send(json!({"type": "user_transcript",
                         "user_transcription_event": {"user_transcript": line}}));
        if self.caller_turns == 1
            && let Some(tool) = self.behaviour.tool_call.clone()
        {
            let id = format!("toolu_{}", random_hex(20));
            self.pending_tool = Some(id.clone());
            self.send(json!({"type": "client_tool_call", "client_tool_call": {
                "tool_name": tool.tool_name, "tool_call_id": id, "parameters": tool.parameters}}));
            return;
        }
        if self.turn.is_none() {
            self.answer(now);
        }
    }

    fn chunk_bytes(&self) -> usize {
        let per_ms = match pcm_rate(&self.behaviour.agent_output_audio_format) {
            Some(rate) => rate as usize / 1000 * 2,
            None => 8,
        };
        (self.behaviour.chunk_ms as usize * per_ms).max(1)
    }

    /// Sends whatever is due by `now`: the metadata, pings, audio, the death.
    fn pump(&mut self, now: Instant) {
        if self.dead {
            return;
        }
        if self.die_at.is_some_and(|at| at <= now) {
            self.dead = true;
            self.outputs.push_back(Out::Drop);
            return;
        }
        if self.ready_at.is_some_and(|at| at <= now) {
            self.become_ready(now);
        }
        while let Some(at) = self.next_ping
            && at <= now
            && !self.dead
        {
            let id = self.event_id();
            self.with_record(|r| r.pings_sent.push(id));
            self.send(json!({"type": "ping", "ping_event": {"event_id": id, "ping_ms": 45}}));
            self.next_ping = Some(at + Duration::from_millis(self.behaviour.ping_interval_ms));
        }
        let chunk = self.chunk_bytes();
        let interval = Duration::from_millis(self.behaviour.chunk_interval_ms);
        while let Some(turn) = self.turn.as_mut() {
            if turn.next_due > now || self.dead {
                return;
            }
            if turn.sent >= turn.audio.len() {
                self.turn = None;
                self.with_record(|r| r.turns_completed += 1);
                continue;
            }
            let end = (turn.sent + chunk).min(turn.audio.len());
            let b64 = B64.encode(&turn.audio[turn.sent..end]);
            let (event_id, n) = (turn.event_id, end - turn.sent);
            turn.sent = end;
            turn.next_due += interval;
            self.with_record(|r| r.audio_bytes_out += n as u64);
            self.send(json!({"type": "audio",
                             "audio_event": {"audio_base_64": b64, "event_id": event_id}}));
        }
    }
}

impl Machine for Session {
    fn handle_text(&mut self, text: &str, now: Instant) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            self.bad_input("not JSON");
            return self.pump(now);
        };
        // Audio chunks carry no `type` (§4.2).
        if let Some(chunk) = message.get("user_audio_chunk") {
            match chunk.as_str() {
                Some(b64) => self.on_audio(b64, now),
                None => self.bad_input("user_audio_chunk is not a string"),
            }
            return self.pump(now);
        }
        let Some(kind) = message
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            self.bad_input("no type");
            return self.pump(now);
        };
        self.with_record(|r| r.messages.push(kind.clone()));
        let text_field = |m: &Value| m.get("text").and_then(Value::as_str).map(str::to_owned);
        match kind.as_str() {
            "conversation_initiation_client_data" => return self.on_initiation(message, now),
            "pong" => match message.get("event_id").and_then(Value::as_u64) {
                Some(id) => self.with_record(|r| r.pongs.push(id)),
                None => self.bad_input("pong without event_id"),
            },
            "contextual_update" => match text_field(&message) {
                Some(t) => self.with_record(|r| r.contextual_updates.push(t)),
                None => self.bad_input("contextual_update without text"),
            },
            "user_message" => match text_field(&message) {
                Some(t) => {
                    self.with_record(|r| r.user_messages.push(t));
                    if self.ready && self.turn.is_none() {
                        self.answer(now);
                    }
                }
                None => self.bad_input("user_message without text"),
            },
            "user_activity" => self.with_record(|r| r.user_activity += 1),
            "client_tool_result" => {
                let id = message.get("tool_call_id").and_then(Value::as_str);
                if id.is_none() || id != self.pending_tool.as_deref() {
                    self.bad_input("client_tool_result for an unknown tool call");
                } else {
                    self.pending_tool = None;
                    self.with_record(|r| r.tool_results.push(message.clone()));
                    if self.turn.is_none() {
                        self.answer(now);
                    }
                }
            }
            _ => self.bad_input("unknown type"),
        }
        self.pump(now);
    }

    fn handle_binary(&mut self, _bytes: &[u8], now: Instant) {
        self.bad_input("binary frame");
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.pump(now);
    }

    fn poll_output(&mut self) -> Option<Out> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        [
            self.die_at,
            self.ready_at,
            self.next_ping,
            self.turn.as_ref().map(|t| t.next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn closed(&mut self) {
        self.with_record(|r| r.closed = true);
    }
}
