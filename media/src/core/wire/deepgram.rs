//! Deepgram Voice Agent API (v1), protocols.md §5, as a sans-IO adapter: JSON control
//! messages are text frames, audio is raw binary frames both ways.
//!
//! The API, in the order a driver uses it:
//! - [`DeepgramSetup`]: what the adapter needs from the call plan.
//! - [`connect_url`]`(base_url)` ([`DEFAULT_URL`]) with the [`api_key_header`]
//!   (`Authorization: Token <key>`, §5.1).
//! - [`DeepgramDecoder::new`]`(caller, settings)` with `settings` from [`settings`] (or
//!   [`seed_history`] after a failover). The decoder queues `Settings` when `Welcome`
//!   arrives (§5.2: nothing may be sent before it), so the driver only ever drains
//!   [`DeepgramDecoder::poll_reply`] after feeding a frame and sends each as text.
//! - [`DeepgramDecoder::handle_text`] / [`DeepgramDecoder::handle_binary`]: server frames
//!   to events; `Connected` comes with `SettingsApplied`, and audio must wait for it.
//! - [`write_command`] returns a [`Frame`]: caller audio as [`Frame::Binary`] (no copy),
//!   [`ProviderCommand::Say`] as `InjectAgentMessage`; nothing for truncate/cancel
//!   (Deepgram stops its own output when the caller speaks, §5.5).
//! - [`KeepAlive`]: when to send [`KEEP_ALIVE`] (every 8 s without audio, §5.5).
//! - [`tool_result`] answers a `FunctionCallRequest`.
//!
//! Agent turns get made-up item ids (`dg_turn_1`, …): a turn opens at
//! `AgentStartedSpeaking`, an assistant `ConversationText` or its first audio, and closes
//! at `AgentAudioDone` or `UserStartedSpeaking`. After `UserStartedSpeaking`, binary audio
//! still in flight from the cut turn is dropped until the next agent turn starts (§8).
//! `Error` is fatal, `Warning` is not; server-side functions (`client_side: false`) are
//! not surfaced.
//!
//! Usage: Deepgram bills per connected minute and reports no counts, so the decoder
//! counts agent audio per turn into `audio_output_ms` under the catalogue's model name
//! [`MODEL`], emitted when a turn closes and by [`DeepgramDecoder::finish`]; the minute
//! charge comes from the call's duration.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::session::{ProviderCommand, ProviderEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{Role, Usage};
use vocalized_shared::plan::ToolSpec;

/// The v1 agent endpoint (§5.1).
pub const DEFAULT_URL: &str = "wss://agent.deepgram.com/v1/agent/converse";
/// The model name of the Deepgram Voice Agent in the pricing catalogue.
pub const MODEL: &str = "voice-agent";
/// The speech-to-text model the agent listens with.
pub const LISTEN_MODEL: &str = "nova-3";
/// The voice used when the agent's voice is not a Deepgram one.
pub const DEFAULT_SPEAK_MODEL: &str = "aura-2-thalia-en";
/// The KeepAlive message: a text frame, no reply (§5.3, §5.5).
pub const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;
/// How long the socket may go without audio before a KeepAlive is due.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(8);

/// What the adapter needs from the call plan.
#[derive(Clone, Debug)]
pub struct DeepgramSetup {
    /// The think provider's `type` (`open_ai`, `anthropic`, `google`, …).
    pub think_provider: String,
    /// The think model, e.g. `gpt-4o-mini`.
    pub think_model: String,
    pub instructions: String,
    pub settings: CallSettings,
    pub tools: Vec<ToolSpec>,
    /// Caller leg format: µ-law for Twilio, PCM otherwise.
    pub format: AudioFormat,
}

/// The header carrying the API key: `("authorization", "Token <key>")`.
pub fn api_key_header(api_key: &str) -> (&'static str, String) {
    ("authorization", format!("Token {api_key}"))
}

/// The WebSocket URL: the base as it is (the agent is configured by `Settings`).
pub fn connect_url(base_url: &str) -> String {
    base_url.to_owned()
}

/// `(input, output)` formats for a caller format: G.711 passes through both ways (zero
/// transcoding, §5.5), anything else is linear16 at 24 kHz, the API's default rate.
pub fn provider_format(caller: AudioFormat) -> (AudioFormat, AudioFormat) {
    match caller {
        AudioFormat::Mulaw8k | AudioFormat::Alaw8k => (caller, caller),
        _ => {
            let pcm = AudioFormat::Pcm16 {
                sample_rate_hz: 24_000,
            };
            (pcm, pcm)
        }
    }
}

fn encoding(format: AudioFormat) -> (&'static str, u32) {
    match format {
        AudioFormat::Mulaw8k => ("mulaw", 8000),
        AudioFormat::Alaw8k => ("alaw", 8000),
        AudioFormat::Pcm16 { sample_rate_hz } => ("linear16", sample_rate_hz),
        // Never chosen by `provider_format`; linear16 keeps the message valid.
        AudioFormat::Opus48k => ("linear16", 24_000),
    }
}

/// The `Settings` message (§5.2) built from the agent.
pub fn settings(setup: &DeepgramSetup) -> String {
    settings_value(setup, &setup.instructions, true).to_string()
}

fn settings_value(setup: &DeepgramSetup, prompt: &str, greet: bool) -> Value {
    let s = &setup.settings;
    let (input, output) = provider_format(setup.format);
    let (in_enc, in_rate) = encoding(input);
    let (out_enc, out_rate) = encoding(output);
    let speak_model = if s.voice_provider == "deepgram" && !s.voice_id.trim().is_empty() {
        s.voice_id.as_str()
    } else {
        DEFAULT_SPEAK_MODEL
    };
    let functions: Vec<Value> = setup
        .tools
        .iter()
        .map(
            |t| json!({ "name": t.name, "description": t.description, "parameters": t.parameters }),
        )
        .chain(std::iter::once(json!({
            "name": "end_call",
            "description": "Hang up once the caller is done or asks to end the call.",
            "parameters": { "type": "object", "properties": {} },
        })))
        .collect();
    let mut agent = json!({
        "listen": { "provider": { "type": "deepgram", "model": LISTEN_MODEL } },
        "think": {
            "provider": { "type": setup.think_provider, "model": setup.think_model },
            "prompt": prompt,
            "functions": functions,
        },
        "speak": { "provider": { "type": "deepgram", "model": speak_model } },
    });
    let greeting = s.call_greeting.trim();
    if greet && !greeting.is_empty() {
        agent["greeting"] = json!(greeting);
    }
    json!({
        "type": "Settings",
        "audio": {
            "input": { "encoding": in_enc, "sample_rate": in_rate },
            "output": { "encoding": out_enc, "sample_rate": out_rate, "container": "none" },
        },
        "agent": agent,
    })
}

/// `Settings` for a fresh session that carries on a call (failover): the conversation so
/// far is appended to the prompt and the greeting is left out.
pub fn seed_history(setup: &DeepgramSetup, turns: &[(Role, String)]) -> String {
    let lines: Vec<String> = turns
        .iter()
        .filter(|(role, text)| *role != Role::System && !text.trim().is_empty())
        .map(|(role, text)| {
            let who = if *role == Role::User {
                "Caller"
            } else {
                "Agent"
            };
            format!("{who}: {}", text.trim())
        })
        .collect();
    let prompt = if lines.is_empty() {
        setup.instructions.clone()
    } else {
        format!(
            "{}\n\nThe call so far (carry on from here, do not greet again):\n{}",
            setup.instructions,
            lines.join("\n")
        )
    };
    settings_value(setup, &prompt, false).to_string()
}

/// One frame for the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// The frame for `cmd`; text is written into `out` (cleared first). Audio is the caller's
/// bytes as they are, in a binary frame (§5.2). `None` when there is nothing to send:
/// `Truncate` and `CancelResponse` (Deepgram has no truncate and stops on its own, §5.5)
/// and `Close` (the driver closes the socket).
pub fn write_command<'a>(cmd: &ProviderCommand<'a>, out: &'a mut String) -> Option<Frame<'a>> {
    out.clear();
    match *cmd {
        ProviderCommand::Audio(bytes) => Some(Frame::Binary(bytes)),
        ProviderCommand::Say { text } => {
            out.push_str(&json!({ "type": "InjectAgentMessage", "message": text }).to_string());
            Some(Frame::Text(out))
        }
        ProviderCommand::Truncate { .. } | ProviderCommand::CancelResponse => None,
        ProviderCommand::Close => None,
    }
}

/// A client-side function's result (§5.3). Strings are sent as they are, anything else
/// as JSON.
pub fn tool_result(call_id: &str, name: &str, output: &Value) -> String {
    let content = match output {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    json!({ "type": "FunctionCallResponse", "id": call_id, "name": name, "content": content })
        .to_string()
}

/// When a KeepAlive is due: [`KEEP_ALIVE_INTERVAL`] after the last frame sent (audio or
/// KeepAlive). The driver calls `handle_sent` for every frame it sends and sends
/// [`KEEP_ALIVE`] whenever `poll_due` says so.
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    last_sent: Instant,
}

impl KeepAlive {
    pub fn new(now: Instant) -> Self {
        Self { last_sent: now }
    }

    pub fn handle_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// When the next KeepAlive is due, for the driver's timer.
    pub fn poll_timeout(&self) -> Instant {
        self.last_sent + KEEP_ALIVE_INTERVAL
    }

    /// True (and the clock restarts) when a KeepAlive must go out now.
    pub fn poll_due(&mut self, now: Instant) -> bool {
        if now >= self.poll_timeout() {
            self.last_sent = now;
            true
        } else {
            false
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Welcome {
        #[serde(default)]
        request_id: Option<String>,
    },
    SettingsApplied,
    ConversationText {
        role: String,
        content: String,
    },
    UserStartedSpeaking,
    AgentStartedSpeaking,
    AgentAudioDone,
    FunctionCallRequest {
        functions: Vec<FunctionCall>,
    },
    Error {
        #[serde(default)]
        description: String,
        #[serde(default)]
        code: Option<String>,
    },
    Warning {
        #[serde(default)]
        description: String,
        #[serde(default)]
        code: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct FunctionCall {
    id: String,
    name: String,
    #[serde(default)]
    arguments: String,
    #[serde(default = "client_side_default")]
    client_side: bool,
}

fn client_side_default() -> bool {
    true
}

/// Turns server frames into provider events and queues the messages the protocol asks
/// for (`Settings` after `Welcome`).
pub struct DeepgramDecoder {
    output: AudioFormat,
    settings: Option<String>,
    replies: VecDeque<String>,
    turns: u64,
    /// The made-up id of the agent turn in progress, if one is open.
    turn: Option<String>,
    turn_audio_bytes: u64,
    /// Between `UserStartedSpeaking` and the next agent turn, audio still in flight from
    /// the interrupted one is dropped.
    barged_in: bool,
    /// `request_id` from `Welcome`.
    pub request_id: Option<String>,
    /// Server frames that were not JSON or not a known shape; counted, never fatal.
    pub malformed: u64,
    /// Binary frames dropped because the caller had barged in.
    pub dropped_audio: u64,
}

impl DeepgramDecoder {
    /// A decoder for a call whose caller speaks `caller`; `settings` is the `Settings`
    /// message to send once `Welcome` arrives.
    pub fn new(caller: AudioFormat, settings: String) -> Self {
        Self {
            output: provider_format(caller).1,
            settings: Some(settings),
            replies: VecDeque::new(),
            turns: 0,
            turn: None,
            turn_audio_bytes: 0,
            barged_in: false,
            request_id: None,
            malformed: 0,
            dropped_audio: 0,
        }
    }

    /// The next text message the protocol requires the driver to send, if any.
    pub fn poll_reply(&mut self) -> Option<String> {
        self.replies.pop_front()
    }

    /// Feeds one binary frame: agent audio in the output format.
    pub fn handle_binary(&mut self, bytes: &[u8], mut emit: impl FnMut(ProviderEvent<'_>)) {
        if self.barged_in {
            self.dropped_audio += 1;
            return;
        }
        if bytes.is_empty() {
            return;
        }
        self.turn_audio_bytes += bytes.len() as u64;
        let item_id = self.open_turn();
        emit(ProviderEvent::AudioDelta {
            item_id,
            audio: bytes,
        });
    }

    /// Feeds one text frame; `emit` receives the provider events it means, in order.
    pub fn handle_text(&mut self, text: &str, mut emit: impl FnMut(ProviderEvent<'_>)) {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "unparseable Deepgram message skipped");
                return;
            }
        };
        match message {
            ServerMessage::Welcome { request_id } => {
                self.request_id = request_id;
                match self.settings.take() {
                    Some(settings) => self.replies.push_back(settings),
                    None => self.malformed += 1,
                }
            }
            ServerMessage::SettingsApplied => emit(ProviderEvent::Connected),
            ServerMessage::ConversationText { role, content } => {
                let role = match role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    _ => {
                        self.malformed += 1;
                        return;
                    }
                };
                let item_id = if role == Role::Assistant {
                    self.barged_in = false;
                    Some(self.open_turn().to_owned())
                } else {
                    None
                };
                emit(ProviderEvent::Transcript {
                    role,
                    text: content.trim(),
                    is_final: true,
                    item_id: item_id.as_deref(),
                    confidence: None,
                });
            }
            ServerMessage::UserStartedSpeaking => {
                self.barged_in = true;
                self.close_turn(&mut emit);
                emit(ProviderEvent::SpeechStarted);
            }
            ServerMessage::AgentStartedSpeaking => {
                self.barged_in = false;
                self.open_turn();
            }
            ServerMessage::AgentAudioDone => self.close_turn(&mut emit),
            ServerMessage::FunctionCallRequest { functions } => {
                for f in functions.iter().filter(|f| f.client_side) {
                    let arguments = if f.arguments.trim().is_empty() {
                        "{}"
                    } else {
                        f.arguments.as_str()
                    };
                    emit(ProviderEvent::ToolCall {
                        call_id: &f.id,
                        name: &f.name,
                        arguments,
                    });
                }
            }
            ServerMessage::Error { description, code } => emit(ProviderEvent::Error {
                fatal: true,
                code: code.as_deref().unwrap_or("error"),
                message: &description,
            }),
            ServerMessage::Warning { description, code } => emit(ProviderEvent::Error {
                fatal: false,
                code: code.as_deref().unwrap_or("warning"),
                message: &description,
            }),
            ServerMessage::Other => {}
        }
    }

    /// The call is over: reports the usage of the turn still open.
    pub fn finish(&mut self, mut emit: impl FnMut(ProviderEvent<'_>)) {
        self.close_turn(&mut emit);
    }

    fn open_turn(&mut self) -> &str {
        if self.turn.is_none() {
            self.turns += 1;
            self.turn = Some(format!("dg_turn_{}", self.turns));
        }
        self.turn.as_deref().unwrap_or_default()
    }

    fn close_turn(&mut self, emit: &mut impl FnMut(ProviderEvent<'_>)) {
        if self.turn.take().is_none() {
            return;
        }
        let bytes = std::mem::take(&mut self.turn_audio_bytes);
        let per_ms = self.output.bytes_per_ms().unwrap_or(1).max(1);
        if bytes > 0 {
            let usage = Usage {
                audio_output_ms: bytes / u64::from(per_ms),
                ..Usage::default()
            };
            emit(ProviderEvent::Usage {
                model: MODEL,
                usage: &usage,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> DeepgramSetup {
        let settings = CallSettings {
            call_greeting: "Hi, how can I help?".into(),
            ..CallSettings::default()
        };
        DeepgramSetup {
            think_provider: "open_ai".into(),
            think_model: "gpt-4o-mini".into(),
            instructions: "You are a concise phone agent.".into(),
            settings,
            tools: vec![ToolSpec {
                name: "lookup_order".into(),
                description: "Look up an order".into(),
                parameters: json!({"type":"object","properties":{"id":{"type":"string"}}}),
            }],
            format: AudioFormat::Mulaw8k,
        }
    }

    #[test]
    fn settings_is_the_v1_shape_with_mulaw_both_ways() {
        let v: Value = serde_json::from_str(&settings(&setup())).unwrap();
        assert_eq!(v["type"], "Settings");
        assert_eq!(
            v["audio"],
            json!({"input":{"encoding":"mulaw","sample_rate":8000},
                   "output":{"encoding":"mulaw","sample_rate":8000,"container":"none"}})
        );
        let a = &v["agent"];
        assert_eq!(
            a["listen"],
            json!({"provider":{"type":"deepgram","model":"nova-3"}})
        );
        assert_eq!(
            a["think"]["provider"],
            json!({"type":"open_ai","model":"gpt-4o-mini"})
        );
        assert_eq!(a["think"]["prompt"], "You are a concise phone agent.");
        assert_eq!(a["think"]["functions"][0]["name"], "lookup_order");
        assert_eq!(
            a["think"]["functions"][0]["parameters"]["properties"]["id"]["type"],
            "string"
        );
        assert_eq!(a["think"]["functions"][1]["name"], "end_call");
        assert_eq!(
            a["speak"],
            json!({"provider":{"type":"deepgram","model":"aura-2-thalia-en"}})
        );
        assert_eq!(a["greeting"], "Hi, how can I help?");
        assert!(a.get("language").is_none(), "agent.language is deprecated");

        let mut web = setup();
        web.format = AudioFormat::Opus48k;
        web.settings.voice_provider = "deepgram".into();
        web.settings.voice_id = "aura-2-orion-en".into();
        web.settings.call_greeting = " ".into();
        let v: Value = serde_json::from_str(&settings(&web)).unwrap();
        assert_eq!(
            v["audio"]["input"],
            json!({"encoding":"linear16","sample_rate":24000})
        );
        assert_eq!(v["audio"]["output"]["encoding"], "linear16");
        assert_eq!(v["agent"]["speak"]["provider"]["model"], "aura-2-orion-en");
        assert!(v["agent"].get("greeting").is_none());
    }

    #[test]
    fn formats_url_and_key() {
        assert_eq!(
            provider_format(AudioFormat::Alaw8k),
            (AudioFormat::Alaw8k, AudioFormat::Alaw8k)
        );
        let pcm = AudioFormat::Pcm16 {
            sample_rate_hz: 24_000,
        };
        assert_eq!(
            provider_format(AudioFormat::Pcm16 {
                sample_rate_hz: 48_000
            }),
            (pcm, pcm)
        );
        assert_eq!(connect_url(DEFAULT_URL), DEFAULT_URL);
        assert_eq!(
            api_key_header("dg1"),
            ("authorization", "Token dg1".to_owned())
        );
    }

    #[test]
    fn history_goes_into_the_prompt_without_a_greeting() {
        let v: Value = serde_json::from_str(&seed_history(
            &setup(),
            &[
                (Role::User, "where is my order".into()),
                (Role::System, "ignored".into()),
                (Role::Assistant, "It shipped.".into()),
            ],
        ))
        .unwrap();
        let prompt = v["agent"]["think"]["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("You are a concise phone agent."));
        assert!(prompt.ends_with("Caller: where is my order\nAgent: It shipped."));
        assert!(!prompt.contains("ignored"));
        assert!(v["agent"].get("greeting").is_none());
    }

    #[test]
    fn commands_become_frames() {
        let mut out = String::new();
        assert_eq!(
            write_command(&ProviderCommand::Audio(&[1, 2, 3]), &mut out),
            Some(Frame::Binary(&[1, 2, 3]))
        );
        let Some(Frame::Text(text)) = write_command(
            &ProviderCommand::Say {
                text: "Still there?",
            },
            &mut out,
        ) else {
            panic!("Say must be a text frame");
        };
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            v,
            json!({"type":"InjectAgentMessage","message":"Still there?"})
        );
        for cmd in [
            ProviderCommand::Truncate {
                item_id: "dg_turn_1",
                audio_end_ms: 5,
            },
            ProviderCommand::CancelResponse,
            ProviderCommand::Close,
        ] {
            assert_eq!(write_command(&cmd, &mut out), None, "{cmd:?}");
        }
        let v: Value = serde_json::from_str(&tool_result(
            "f1",
            "lookup_order",
            &json!({"status":"shipped"}),
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"FunctionCallResponse","id":"f1","name":"lookup_order",
                   "content":"{\"status\":\"shipped\"}"})
        );
        let v: Value = serde_json::from_str(KEEP_ALIVE).unwrap();
        assert_eq!(v, json!({"type":"KeepAlive"}));
    }

    #[test]
    fn keep_alive_is_due_eight_seconds_after_the_last_frame() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(t0);
        assert!(!k.poll_due(t0 + Duration::from_millis(7999)));
        k.handle_sent(t0 + Duration::from_secs(5));
        assert!(!k.poll_due(t0 + Duration::from_secs(12)));
        assert_eq!(k.poll_timeout(), t0 + Duration::from_secs(13));
        assert!(k.poll_due(t0 + Duration::from_secs(13)));
        assert!(
            !k.poll_due(t0 + Duration::from_secs(14)),
            "the clock restarts"
        );
    }

    fn feed(d: &mut DeepgramDecoder, frames: &[Result<&str, &[u8]>]) -> Vec<String> {
        let mut seen = Vec::new();
        for f in frames {
            match f {
                Ok(text) => d.handle_text(text, |e| seen.push(format!("{e:?}"))),
                Err(bytes) => d.handle_binary(bytes, |e| seen.push(format!("{e:?}"))),
            }
        }
        seen
    }

    #[test]
    fn welcome_queues_settings_and_settings_applied_connects() {
        let mut d = DeepgramDecoder::new(AudioFormat::Mulaw8k, "SETTINGS".into());
        let seen = feed(&mut d, &[Ok(r#"{"type":"Welcome","request_id":"r-1"}"#)]);
        assert!(seen.is_empty());
        assert_eq!(d.request_id.as_deref(), Some("r-1"));
        assert_eq!(d.poll_reply().as_deref(), Some("SETTINGS"));
        assert_eq!(d.poll_reply(), None);
        let seen = feed(&mut d, &[Ok(r#"{"type":"SettingsApplied"}"#)]);
        assert_eq!(seen, vec!["Connected"]);
        // A second Welcome is a protocol error: counted, Settings not sent twice.
        feed(&mut d, &[Ok(r#"{"type":"Welcome","request_id":"r-2"}"#)]);
        assert_eq!(d.poll_reply(), None);
        assert_eq!(d.malformed, 1);
    }

    #[test]
    fn server_messages_map_to_provider_events() {
        let mut d = DeepgramDecoder::new(AudioFormat::Mulaw8k, String::new());
        let audio = [0xFFu8; 800];
        let seen = feed(
            &mut d,
            &[
                Ok(r#"{"type":"ConversationText","role":"user","content":" where is my order "}"#),
                Ok(r#"{"type":"AgentThinking","content":"…"}"#),
                Ok(
                    r#"{"type":"FunctionCallRequest","functions":[{"id":"f1","name":"lookup_order","arguments":"{\"id\":\"42\"}","client_side":true},{"id":"f2","name":"server_fn","arguments":"{}","client_side":false}]}"#,
                ),
                Ok(
                    r#"{"type":"AgentStartedSpeaking","total_latency":0.81,"tts_latency":0.22,"ttt_latency":0.59}"#,
                ),
                Ok(r#"{"type":"ConversationText","role":"assistant","content":"It shipped."}"#),
                Err(&audio),
                Ok(r#"{"type":"AgentAudioDone"}"#),
                Ok(r#"{"type":"Warning","description":"slow","code":"W1"}"#),
                Ok(r#"{"type":"Error","description":"bad settings","code":"INVALID_SETTINGS"}"#),
                Ok(r#"{"type":"History","role":"user","content":"x"}"#),
            ],
        );
        assert_eq!(
            seen[0],
            r#"Transcript { role: User, text: "where is my order", is_final: true, item_id: None, confidence: None }"#
        );
        assert_eq!(
            seen[1],
            r#"ToolCall { call_id: "f1", name: "lookup_order", arguments: "{\"id\":\"42\"}" }"#
        );
        assert_eq!(
            seen[2],
            r#"Transcript { role: Assistant, text: "It shipped.", is_final: true, item_id: Some("dg_turn_1"), confidence: None }"#
        );
        assert!(seen[3].starts_with(r#"AudioDelta { item_id: "dg_turn_1", audio: [255"#));
        assert!(seen[4].starts_with(r#"Usage { model: "voice-agent""#));
        assert!(seen[4].contains("audio_output_ms: 100"), "{}", seen[4]);
        assert_eq!(
            seen[5],
            r#"Error { fatal: false, code: "W1", message: "slow" }"#
        );
        assert_eq!(
            seen[6],
            r#"Error { fatal: true, code: "INVALID_SETTINGS", message: "bad settings" }"#
        );
        assert_eq!(seen.len(), 7);
        assert_eq!(d.malformed, 0);
    }

    #[test]
    fn barge_in_drops_in_flight_audio_until_the_next_turn() {
        let mut d = DeepgramDecoder::new(AudioFormat::Mulaw8k, String::new());
        let audio = [0xFFu8; 80];
        let seen = feed(
            &mut d,
            &[
                Err(&audio),
                Ok(r#"{"type":"UserStartedSpeaking"}"#),
                Err(&audio),
                Ok(r#"{"type":"ConversationText","role":"user","content":"stop"}"#),
                Err(&audio),
                Ok(r#"{"type":"AgentStartedSpeaking"}"#),
                Err(&audio),
            ],
        );
        assert!(seen[0].starts_with(r#"AudioDelta { item_id: "dg_turn_1""#));
        assert!(seen[1].contains("audio_output_ms: 10"), "{}", seen[1]);
        assert_eq!(seen[2], "SpeechStarted");
        assert!(seen[3].contains(r#"role: User, text: "stop""#));
        assert!(seen[4].starts_with(r#"AudioDelta { item_id: "dg_turn_2""#));
        assert_eq!(seen.len(), 5);
        assert_eq!(d.dropped_audio, 2);
        let mut end = Vec::new();
        d.finish(|e| end.push(format!("{e:?}")));
        assert_eq!(end.len(), 1);
        assert!(end[0].contains("audio_output_ms: 10"));
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = DeepgramDecoder::new(AudioFormat::Mulaw8k, String::new());
        let seen = feed(
            &mut d,
            &[
                Ok("not json"),
                Ok("{}"),
                Ok(r#"{"type":"ConversationText","role":"robot","content":"x"}"#),
                Ok(r#"{"type":"ConversationText","role":"user"}"#),
                Ok(r#"{"type":"FunctionCallRequest","functions":[{"name":"x"}]}"#),
                Ok(r#"{"type":7}"#),
            ],
        );
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(d.malformed, 6);
    }
}
