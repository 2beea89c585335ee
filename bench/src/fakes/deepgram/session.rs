//! One fake Deepgram Voice Agent session as a sans-IO state machine (protocols.md §5).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vocalized_media::core::g711::{alaw_to_pcm, pcm_to_alaw, ulaw_to_pcm};

use super::{DeepgramBehaviour, DeepgramRecord, Failure};
use crate::fakes::elevenlabs::ws::{Machine, Out, agent_audio_as};
use crate::fakes::openai::vad::{EnergyVad, VadEvent};
use crate::fakes::random_hex;

/// Input encodings the fake can hear (a subset of §5.2's list; the rest are refused as
/// unsupported by the fake, not by Deepgram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Mulaw,
    Alaw,
    Linear16(u32),
}

impl Encoding {
    fn parse(v: Option<&Value>) -> Option<Self> {
        let v = v?;
        let rate = v.get("sample_rate").and_then(Value::as_u64)? as u32;
        match v.get("encoding").and_then(Value::as_str)? {
            "mulaw" if rate == 8000 => Some(Self::Mulaw),
            "alaw" if rate == 8000 => Some(Self::Alaw),
            "linear16" if rate > 0 => Some(Self::Linear16(rate)),
            _ => None,
        }
    }

    fn sample_rate_hz(self) -> u32 {
        match self {
            Self::Mulaw | Self::Alaw => 8000,
            Self::Linear16(rate) => rate,
        }
    }

    fn bytes_per_ms(self) -> usize {
        match self {
            Self::Mulaw | Self::Alaw => 8,
            Self::Linear16(rate) => rate as usize / 1000 * 2,
        }
    }
}

struct Turn {
    audio: Arc<[u8]>,
    sent: usize,
    next_due: Instant,
}

pub struct Session {
    behaviour: Arc<DeepgramBehaviour>,
    record: Arc<Mutex<DeepgramRecord>>,
    outputs: VecDeque<Out>,
    input: Encoding,
    output: Encoding,
    vad: EnergyVad,
    vad_events: Vec<VadEvent>,
    pcm: Vec<i16>,
    greeting: Option<String>,
    /// `SettingsApplied` is due at this time.
    ready_at: Option<Instant>,
    ready: bool,
    /// The session closes for lack of audio or KeepAlive at this time.
    idle_at: Option<Instant>,
    die_at: Option<Instant>,
    dead: bool,
    caller_turns: usize,
    agent_turns: usize,
    turn: Option<Turn>,
    /// A client-side function call waiting for its response: (id, name).
    pending_function: Option<(String, String)>,
}

impl Session {
    pub fn new(
        behaviour: Arc<DeepgramBehaviour>,
        record: Arc<Mutex<DeepgramRecord>>,
        now: Instant,
    ) -> Self {
        let die_at = match behaviour.failure {
            Some(Failure::DieAfterMs(ms)) => Some(now + Duration::from_millis(ms)),
            _ => None,
        };
        let mut session = Self {
            vad: EnergyVad::new(behaviour.vad, 24_000),
            behaviour,
            record,
            outputs: VecDeque::new(),
            input: Encoding::Linear16(24_000),
            output: Encoding::Linear16(24_000),
            vad_events: Vec::new(),
            pcm: Vec::new(),
            greeting: None,
            ready_at: None,
            ready: false,
            idle_at: None,
            die_at,
            dead: false,
            caller_turns: 0,
            agent_turns: 0,
            turn: None,
            pending_function: None,
        };
        let request_id = format!(
            "{}-{}-{}-{}-{}",
            random_hex(8),
            random_hex(4),
            random_hex(4),
            random_hex(4),
            random_hex(12)
        );
        session.send(json!({"type": "Welcome", "request_id": request_id}));
        session
    }

    fn with_record(&self, f: impl FnOnce(&mut DeepgramRecord)) {
        f(&mut self.record.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn send(&mut self, message: Value) {
        if !self.dead {
            self.outputs.push_back(Out::Text(message.to_string()));
        }
    }

    fn bad_input(&self, why: &str) {
        self.with_record(|r| r.bad_input += 1);
        tracing::debug!(why, "fake Deepgram: bad client message");
    }

    fn error(&mut self, code: &str, description: &str) {
        self.send(json!({"type": "Error", "description": description, "code": code}));
    }

    fn on_settings(&mut self, message: Value, now: Instant) {
        if self.ready || self.ready_at.is_some() {
            self.bad_input("second Settings");
            return self.error("SETTINGS_ALREADY_APPLIED", "Settings were already applied.");
        }
        self.with_record(|r| r.settings = Some(message.clone()));
        let input = match message.pointer("/audio/input") {
            None => Some(Encoding::Linear16(24_000)),
            some => Encoding::parse(some),
        };
        let output = match message.pointer("/audio/output") {
            None => Some(Encoding::Linear16(24_000)),
            some => Encoding::parse(some),
        };
        let container_ok = message
            .pointer("/audio/output/container")
            .and_then(Value::as_str)
            .is_none_or(|c| c == "none");
        let has_agent = ["/agent/listen", "/agent/think", "/agent/speak"]
            .iter()
            .all(|p| message.pointer(p).is_some_and(Value::is_object));
        let (Some(input), Some(output), true, true) = (input, output, container_ok, has_agent)
        else {
            self.bad_input("invalid Settings");
            self.error(
                "INVALID_SETTINGS",
                "Settings need audio input/output encodings the agent supports and agent.listen, agent.think and agent.speak.",
            );
            self.outputs.push_back(Out::Close {
                code: 1008,
                reason: "INVALID_SETTINGS".into(),
            });
            self.dead = true;
            return;
        };
        self.input = input;
        self.output = output;
        self.vad = EnergyVad::new(self.behaviour.vad, input.sample_rate_hz());
        self.greeting = message
            .pointer("/agent/greeting")
            .and_then(Value::as_str)
            .filter(|g| !g.trim().is_empty())
            .map(str::to_owned);
        self.ready_at = Some(now + Duration::from_millis(self.behaviour.ready_delay_ms));
    }

    fn become_ready(&mut self, now: Instant) {
        self.ready_at = None;
        self.ready = true;
        self.send(json!({"type": "SettingsApplied"}));
        if self.behaviour.failure == Some(Failure::CloseAfterSetup) {
            self.outputs.push_back(Out::Close {
                code: 1011,
                reason: "internal error".into(),
            });
            self.dead = true;
            return;
        }
        self.touch(now);
        if let Some(greeting) = self.greeting.take() {
            self.start_turn(greeting, now);
        }
    }

    /// Audio or KeepAlive arrived: the idle clock restarts.
    fn touch(&mut self, now: Instant) {
        if self.ready && self.behaviour.idle_timeout_ms > 0 {
            self.idle_at = Some(now + Duration::from_millis(self.behaviour.idle_timeout_ms));
        }
    }

    fn agent_audio(&self) -> Vec<u8> {
        let clip = &self.behaviour.agent_audio;
        match self.output {
            Encoding::Mulaw => clip.to_vec(),
            Encoding::Alaw => {
                let mut pcm = Vec::new();
                ulaw_to_pcm(clip, &mut pcm);
                let mut out = Vec::new();
                pcm_to_alaw(&pcm, &mut out);
                out
            }
            Encoding::Linear16(rate) => agent_audio_as(clip, Some(rate)),
        }
    }

    fn start_turn(&mut self, text: String, now: Instant) {
        self.with_record(|r| r.turns_started += 1);
        self.send(json!({"type": "ConversationText", "role": "assistant", "content": text}));
        self.send(
            json!({"type": "AgentStartedSpeaking", "total_latency": 0.81,
                         "tts_latency": 0.22, "ttt_latency": 0.59}),
        );
        self.turn = Some(Turn {
            audio: self.agent_audio().into(),
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
        self.send(json!({"type": "AgentThinking", "content": ""}));
        self.start_turn(text, now);
    }

    fn on_speech_started(&mut self) {
        self.with_record(|r| r.speech_started += 1);
        self.send(json!({"type": "UserStartedSpeaking"}));
        if self.turn.take().is_some() {
            self.with_record(|r| r.interruptions += 1);
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
        self.send(json!({"type": "ConversationText", "role": "user", "content": line}));
        if self.caller_turns == 1
            && let Some(f) = self.behaviour.function_call.clone()
        {
            let id = format!("fc_{}", random_hex(16));
            self.pending_function = Some((id.clone(), f.name.clone()));
            self.send(json!({"type": "FunctionCallRequest", "functions": [
                {"id": id, "name": f.name, "arguments": f.arguments, "client_side": true}]}));
            return;
        }
        if self.turn.is_none() {
            self.answer(now);
        }
    }

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
        if self.idle_at.is_some_and(|at| at <= now) {
            self.with_record(|r| r.idle_closed = true);
            self.error(
                "CLIENT_MESSAGE_TIMEOUT",
                "We did not receive audio or a KeepAlive within the timeout window.",
            );
            self.outputs.push_back(Out::Close {
                code: 1011,
                reason: "NET-0001".into(),
            });
            self.dead = true;
            return;
        }
        let chunk = (self.behaviour.chunk_ms as usize * self.output.bytes_per_ms()).max(1);
        let interval = Duration::from_millis(self.behaviour.chunk_interval_ms);
        while let Some(turn) = self.turn.as_mut() {
            if turn.next_due > now || self.dead {
                return;
            }
            if turn.sent >= turn.audio.len() {
                self.turn = None;
                self.with_record(|r| r.turns_completed += 1);
                self.send(json!({"type": "AgentAudioDone"}));
                continue;
            }
            let end = (turn.sent + chunk).min(turn.audio.len());
            let bytes = turn.audio[turn.sent..end].to_vec();
            turn.sent = end;
            turn.next_due += interval;
            self.with_record(|r| r.audio_bytes_out += bytes.len() as u64);
            self.outputs.push_back(Out::Binary(bytes));
        }
    }
}

impl Machine for Session {
    fn handle_text(&mut self, text: &str, now: Instant) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            self.bad_input("not JSON");
            self.error("PARSE_ERROR", "The message was not valid JSON.");
            return self.pump(now);
        };
        let Some(kind) = message
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            self.bad_input("no type");
            self.error("PARSE_ERROR", "The message has no type.");
            return self.pump(now);
        };
        self.with_record(|r| r.messages.push(kind.clone()));
        let field = |name: &str| message.get(name).and_then(Value::as_str).map(str::to_owned);
        match kind.as_str() {
            "Settings" => self.on_settings(message, now),
            "KeepAlive" => {
                self.with_record(|r| r.keep_alives += 1);
                self.touch(now);
            }
            "InjectAgentMessage" => match field("message") {
                Some(m) => {
                    self.with_record(|r| r.injected_agent_messages.push(m.clone()));
                    if self.ready && self.turn.is_none() {
                        self.start_turn(m, now);
                    } else {
                        self.send(json!({"type": "InjectionRefused",
                                         "message": "The agent is speaking."}));
                    }
                }
                None => self.bad_input("InjectAgentMessage without message"),
            },
            "InjectUserMessage" => match field("content") {
                Some(c) => {
                    self.with_record(|r| r.injected_user_messages.push(c));
                    if self.ready && self.turn.is_none() {
                        self.answer(now);
                    }
                }
                None => self.bad_input("InjectUserMessage without content"),
            },
            "FunctionCallResponse" => {
                let id = field("id");
                match self.pending_function.take() {
                    Some((pending, _)) if id.as_deref() == Some(pending.as_str()) => {
                        self.with_record(|r| r.function_responses.push(message.clone()));
                        if self.turn.is_none() {
                            self.answer(now);
                        }
                    }
                    other => {
                        self.pending_function = other;
                        self.bad_input("FunctionCallResponse for an unknown call");
                    }
                }
            }
            "UpdatePrompt" | "UpdateSpeak" | "UpdateListen" | "UpdateThink" => {}
            _ => {
                self.bad_input("unknown type");
                self.error("UNPARSABLE_CLIENT_MESSAGE", "Unknown message type.");
            }
        }
        self.pump(now);
    }

    fn handle_binary(&mut self, bytes: &[u8], now: Instant) {
        self.with_record(|r| {
            r.audio_frames_in += 1;
            r.audio_bytes_in += bytes.len() as u64;
        });
        if !self.ready {
            // §5.2: audio must wait for SettingsApplied.
            self.bad_input("audio before SettingsApplied");
            return self.pump(now);
        }
        self.touch(now);
        self.pcm.clear();
        match self.input {
            Encoding::Mulaw => ulaw_to_pcm(bytes, &mut self.pcm),
            Encoding::Alaw => alaw_to_pcm(bytes, &mut self.pcm),
            Encoding::Linear16(_) => self.pcm.extend(
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
            self.idle_at,
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
