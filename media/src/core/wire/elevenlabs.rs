//! ElevenLabs Agents Platform (Conversational AI) WebSocket, protocols.md §4, as a sans-IO
//! adapter: it builds the client messages and turns server messages into the session's
//! provider-neutral [`ProviderEvent`]s.
//!
//! The API, in the order a driver uses it:
//! - [`ElevenLabsSetup`]: what the adapter needs from the call plan.
//! - [`connect_url`]`(base_url, agent_id)` for a public agent ([`DEFAULT_BASE_URL`]); for a
//!   private agent, [`signed_url_request`]`(DEFAULT_SIGNED_URL_ENDPOINT, agent_id)` is
//!   fetched with the [`api_key_header`] and [`parse_signed_url`] reads the `wss://` URL
//!   out of the reply (signed URLs expire after 15 minutes, so fetch one per call).
//! - [`initiation`]: the first message, `conversation_initiation_client_data`, carrying
//!   the prompt, the greeting (`first_message`) and the voice as overrides (§4.2). The
//!   agent's security settings must allow each override.
//! - [`write_command`]: caller audio as `user_audio_chunk`, [`ProviderCommand::Say`] as a
//!   `user_message`, nothing for truncate/cancel (ElevenLabs cuts its own output).
//! - [`ElevenLabsDecoder::handle_text`]: server frames to events; afterwards drain
//!   [`ElevenLabsDecoder::poll_reply`] and send each (pongs for pings, §4.5).
//! - [`tool_result`] answers a `client_tool_call`; [`seed_history`] replays earlier turns.
//!
//! Audio formats are set in the agent's configuration, not per message (§4.4), so
//! [`provider_format`] says what the agent must be configured with, and the decoder
//! refuses (a fatal error instead of `Connected`) when `conversation_initiation_metadata`
//! reports something else, rather than playing noise. Tools are also configured on the
//! agent (as client tools); [`ElevenLabsSetup::tools`] is kept for [`tool_names`] checks.
//!
//! Agent turns get made-up item ids (`el_turn_1`, …): a turn opens with its first audio or
//! `agent_response` and closes at the caller's transcript or an interruption (two agent
//! replies with no caller turn between, e.g. around a tool call, share one id).
//! `agent_response_correction` (the text cut back after an interruption) is not replayed:
//! the session already marks an interrupted turn's transcript as truncated. `vad_score`
//! is ignored.
//!
//! Usage: ElevenLabs bills per connected minute and reports no counts over the socket, so
//! the decoder counts agent audio per turn into `audio_output_ms` under the catalogue's
//! model name [`MODEL`], emitted when a turn closes and by [`ElevenLabsDecoder::finish`];
//! the minute charge comes from the call's duration.

use std::collections::VecDeque;

use crate::core::session::{ProviderCommand, ProviderEvent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{Role, Usage};
use vocalized_shared::plan::ToolSpec;

/// The public-agent conversation endpoint (§4.1).
pub const DEFAULT_BASE_URL: &str = "wss://api.elevenlabs.io/v1/convai/conversation";
/// Where a private agent's signed URL comes from (§4.1).
pub const DEFAULT_SIGNED_URL_ENDPOINT: &str =
    "https://api.elevenlabs.io/v1/convai/conversation/get-signed-url";
/// The model name of ElevenLabs Agents in the pricing catalogue.
pub const MODEL: &str = "convai";

/// What the adapter needs from the call plan.
#[derive(Clone, Debug)]
pub struct ElevenLabsSetup {
    /// The ElevenLabs agent id (`agent_…`).
    pub agent_id: String,
    /// Sent as the prompt override; empty keeps the agent's own prompt.
    pub instructions: String,
    pub settings: CallSettings,
    /// Client tools the agent was configured with (ElevenLabs takes no tool list per
    /// conversation).
    pub tools: Vec<ToolSpec>,
    /// Caller leg format: µ-law for Twilio, PCM otherwise.
    pub format: AudioFormat,
}

/// The header carrying the API key, for the signed-URL request (and the upgrade of a
/// private agent where the driver connects directly): `("xi-api-key", key)`.
pub fn api_key_header(api_key: &str) -> (&'static str, String) {
    ("xi-api-key", api_key.to_owned())
}

/// The WebSocket URL of a public agent: `base_url?agent_id=…`.
pub fn connect_url(base_url: &str, agent_id: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}agent_id={}", query_escape(agent_id))
}

/// The HTTPS URL that returns a private agent's signed WebSocket URL (GET it with
/// [`api_key_header`]).
pub fn signed_url_request(endpoint: &str, agent_id: &str) -> String {
    connect_url(endpoint, agent_id)
}

/// The `signed_url` of a get-signed-url reply, if the body is one.
pub fn parse_signed_url(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("signed_url")?.as_str().map(str::to_owned)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `(input, output)` formats the agent must be configured with for a caller format:
/// `ulaw_8000` both ways for phone callers (zero transcoding, §4.4), otherwise
/// `pcm_16000`, the rate ElevenLabs' ASR and SDK use natively.
pub fn provider_format(caller: AudioFormat) -> (AudioFormat, AudioFormat) {
    match caller {
        AudioFormat::Mulaw8k => (AudioFormat::Mulaw8k, AudioFormat::Mulaw8k),
        _ => {
            let pcm = AudioFormat::Pcm16 {
                sample_rate_hz: 16_000,
            };
            (pcm, pcm)
        }
    }
}

/// ElevenLabs' name for a format (`ulaw_8000`, `pcm_16000`, …), if it has one.
pub fn format_name(format: AudioFormat) -> Option<String> {
    match format {
        AudioFormat::Mulaw8k => Some("ulaw_8000".into()),
        AudioFormat::Pcm16 { sample_rate_hz } => Some(format!("pcm_{sample_rate_hz}")),
        AudioFormat::Alaw8k | AudioFormat::Opus48k => None,
    }
}

/// The format an ElevenLabs name stands for (§4.4's TTS and ASR enums).
pub fn parse_format_name(name: &str) -> Option<AudioFormat> {
    if name == "ulaw_8000" {
        return Some(AudioFormat::Mulaw8k);
    }
    let rate: u32 = name.strip_prefix("pcm_")?.parse().ok()?;
    [8_000, 16_000, 22_050, 24_000, 44_100, 48_000]
        .contains(&rate)
        .then_some(AudioFormat::Pcm16 {
            sample_rate_hz: rate,
        })
}

/// The client tools the agent is expected to call (plus `end_call`, which the agent must
/// define as a client tool for the gateway to hang up).
pub fn tool_names(setup: &ElevenLabsSetup) -> Vec<&str> {
    setup
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .chain(std::iter::once("end_call"))
        .collect()
}

/// The first message, `conversation_initiation_client_data` (§4.2). Overrides only what
/// the plan says: the prompt if there are instructions, the greeting as `first_message`
/// if there is one, and the voice only when the agent's voice is an ElevenLabs one (other
/// providers' voice ids mean nothing here).
pub fn initiation(setup: &ElevenLabsSetup) -> String {
    let s = &setup.settings;
    let mut agent = serde_json::Map::new();
    if !setup.instructions.trim().is_empty() {
        agent.insert("prompt".into(), json!({ "prompt": setup.instructions }));
    }
    let greeting = s.call_greeting.trim();
    if !greeting.is_empty() {
        agent.insert("first_message".into(), json!(greeting));
    }
    let mut config = serde_json::Map::new();
    config.insert("agent".into(), Value::Object(agent));
    if s.voice_provider == "elevenlabs" && !s.voice_id.trim().is_empty() {
        config.insert("tts".into(), json!({ "voice_id": s.voice_id }));
    }
    json!({
        "type": "conversation_initiation_client_data",
        "conversation_config_override": config,
        "custom_llm_extra_body": {},
        "dynamic_variables": {},
    })
    .to_string()
}

/// Writes the client message for `cmd` into `out` (cleared first). Audio reuses the
/// buffer, so a steady stream of chunks allocates nothing. `false` when there is nothing
/// to send: `Truncate` and `CancelResponse` (ElevenLabs stops its own output when the
/// caller speaks, §8) and `Close` (the driver closes the socket).
///
/// `Say` becomes a `user_message`: ElevenLabs has no "say this" message, and
/// `contextual_update` never makes the agent speak, so the text is framed as an
/// instruction the agent answers by saying it.
pub fn write_command(cmd: &ProviderCommand<'_>, out: &mut String) -> bool {
    out.clear();
    match *cmd {
        ProviderCommand::Audio(bytes) => {
            // No `type` field on audio chunks (§4.2).
            out.push_str(r#"{"user_audio_chunk":""#);
            BASE64.encode_string(bytes, out);
            out.push_str(r#""}"#);
        }
        ProviderCommand::Say { text } => {
            let text = format!("(Say exactly this to the caller, then wait: {text})");
            out.push_str(&json!({ "type": "user_message", "text": text }).to_string());
        }
        ProviderCommand::Truncate { .. } | ProviderCommand::CancelResponse => return false,
        ProviderCommand::Close => return false,
    }
    true
}

/// The answer to a `ping` (§4.5): a `pong` with the same `event_id`.
pub fn pong(event_id: u64) -> String {
    format!(r#"{{"type":"pong","event_id":{event_id}}}"#)
}

/// Resets the agent's inactivity timeout without saying anything.
pub fn user_activity() -> String {
    r#"{"type":"user_activity"}"#.to_owned()
}

/// A client tool's result (§4.2). Strings are sent as they are, anything else as JSON.
pub fn tool_result(call_id: &str, output: &Value, is_error: bool) -> String {
    let result = match output {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    json!({ "type": "client_tool_result", "tool_call_id": call_id, "result": result,
            "is_error": is_error })
    .to_string()
}

/// Earlier turns for a fresh session (failover): one `contextual_update` with the
/// conversation so far, which informs the agent without making it speak. `None` when
/// there is nothing to replay.
pub fn seed_history(turns: &[(Role, String)]) -> Option<String> {
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
    if lines.is_empty() {
        return None;
    }
    let text = format!(
        "The call so far, before a reconnection (do not repeat the greeting):\n{}",
        lines.join("\n")
    );
    Some(json!({ "type": "contextual_update", "text": text }).to_string())
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    ConversationInitiationMetadata {
        conversation_initiation_metadata_event: Metadata,
    },
    Audio {
        #[serde(borrow)]
        audio_event: AudioEvent<'a>,
    },
    AgentResponse {
        agent_response_event: AgentResponse,
    },
    UserTranscript {
        user_transcription_event: UserTranscript,
    },
    Interruption {
        interruption_event: EventId,
    },
    Ping {
        ping_event: EventId,
    },
    ClientToolCall {
        client_tool_call: ToolCall,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    agent_output_audio_format: Option<String>,
    #[serde(default)]
    user_input_audio_format: Option<String>,
}

#[derive(Deserialize)]
struct AudioEvent<'a> {
    #[serde(borrow)]
    audio_base_64: &'a str,
    event_id: u64,
}

#[derive(Deserialize)]
struct AgentResponse {
    agent_response: String,
}

#[derive(Deserialize)]
struct UserTranscript {
    user_transcript: String,
}

#[derive(Deserialize)]
struct EventId {
    event_id: u64,
}

#[derive(Deserialize)]
struct ToolCall {
    tool_name: String,
    tool_call_id: String,
    #[serde(default)]
    parameters: Value,
}

/// Turns server frames into provider events and queues the replies the protocol asks
/// for. Keeps a reusable audio buffer so decoding a chunk allocates nothing once grown.
pub struct ElevenLabsDecoder {
    expected: (AudioFormat, AudioFormat),
    audio: Vec<u8>,
    replies: VecDeque<String>,
    /// Audio with an `event_id` at or below this was interrupted and is dropped (§4.5).
    last_interrupt_id: Option<u64>,
    turns: u64,
    /// The made-up id of the agent turn in progress, if one is open.
    turn: Option<String>,
    turn_audio_bytes: u64,
    /// `conversation_id` from the metadata, once connected.
    pub conversation_id: Option<String>,
    /// Server frames that were not JSON or not a known shape; counted, never fatal.
    pub malformed: u64,
    /// Audio chunks dropped because they belonged to an interrupted turn.
    pub dropped_audio: u64,
}

impl ElevenLabsDecoder {
    /// A decoder for a call whose caller speaks `caller`; the agent must use
    /// [`provider_format`]`(caller)`.
    pub fn new(caller: AudioFormat) -> Self {
        Self {
            expected: provider_format(caller),
            audio: Vec::with_capacity(16 * 1024),
            replies: VecDeque::new(),
            last_interrupt_id: None,
            turns: 0,
            turn: None,
            turn_audio_bytes: 0,
            conversation_id: None,
            malformed: 0,
            dropped_audio: 0,
        }
    }

    /// The next message the protocol requires the driver to send (pongs), if any.
    pub fn poll_reply(&mut self) -> Option<String> {
        self.replies.pop_front()
    }

    /// Feeds one text frame; `emit` receives the provider events it means, in order.
    pub fn handle_text(&mut self, text: &str, mut emit: impl FnMut(ProviderEvent<'_>)) {
        let message: ServerMessage<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "unparseable ElevenLabs message skipped");
                return;
            }
        };
        match message {
            ServerMessage::ConversationInitiationMetadata {
                conversation_initiation_metadata_event: m,
            } => self.on_metadata(m, &mut emit),
            ServerMessage::Audio { audio_event } => self.on_audio(audio_event, &mut emit),
            ServerMessage::AgentResponse {
                agent_response_event,
            } => {
                let item_id = self.open_turn().to_owned();
                emit(ProviderEvent::Transcript {
                    role: Role::Assistant,
                    text: agent_response_event.agent_response.trim(),
                    is_final: true,
                    item_id: Some(&item_id),
                    confidence: None,
                });
            }
            ServerMessage::UserTranscript {
                user_transcription_event,
            } => {
                self.close_turn(&mut emit);
                emit(ProviderEvent::Transcript {
                    role: Role::User,
                    text: user_transcription_event.user_transcript.trim(),
                    is_final: true,
                    item_id: None,
                    confidence: None,
                });
            }
            ServerMessage::Interruption { interruption_event } => {
                let id = interruption_event.event_id;
                self.last_interrupt_id = Some(self.last_interrupt_id.map_or(id, |l| l.max(id)));
                self.close_turn(&mut emit);
                emit(ProviderEvent::Interrupted);
            }
            ServerMessage::Ping { ping_event } => {
                self.replies.push_back(pong(ping_event.event_id));
            }
            ServerMessage::ClientToolCall {
                client_tool_call: c,
            } => {
                let arguments = match &c.parameters {
                    Value::Null => "{}".to_owned(),
                    p => p.to_string(),
                };
                emit(ProviderEvent::ToolCall {
                    call_id: &c.tool_call_id,
                    name: &c.tool_name,
                    arguments: &arguments,
                });
            }
            ServerMessage::Other => {}
        }
    }

    /// The call is over: reports the usage of the turn still open.
    pub fn finish(&mut self, mut emit: impl FnMut(ProviderEvent<'_>)) {
        self.close_turn(&mut emit);
    }

    fn on_metadata(&mut self, m: Metadata, emit: &mut impl FnMut(ProviderEvent<'_>)) {
        self.conversation_id = m.conversation_id;
        let (want_in, want_out) = self.expected;
        let mismatch = |got: &Option<String>, want: AudioFormat| match got {
            Some(name) if parse_format_name(name) != Some(want) => Some(name.clone()),
            _ => None,
        };
        let bad_in = mismatch(&m.user_input_audio_format, want_in);
        let bad_out = mismatch(&m.agent_output_audio_format, want_out);
        if bad_in.is_none() && bad_out.is_none() {
            return emit(ProviderEvent::Connected);
        }
        let message = format!(
            "the agent is configured for input {} and output {}; this call needs {} both ways",
            m.user_input_audio_format.as_deref().unwrap_or("?"),
            m.agent_output_audio_format.as_deref().unwrap_or("?"),
            format_name(want_in).unwrap_or_default(),
        );
        emit(ProviderEvent::Error {
            fatal: true,
            code: "audio_format_mismatch",
            message: &message,
        });
    }

    fn on_audio(&mut self, a: AudioEvent<'_>, emit: &mut impl FnMut(ProviderEvent<'_>)) {
        if self
            .last_interrupt_id
            .is_some_and(|last| a.event_id <= last)
        {
            self.dropped_audio += 1;
            return;
        }
        self.audio.clear();
        if BASE64.decode_vec(a.audio_base_64, &mut self.audio).is_err() {
            self.malformed += 1;
            return;
        }
        self.open_turn();
        self.turn_audio_bytes += self.audio.len() as u64;
        let item_id = self.turn.as_deref().unwrap_or_default();
        emit(ProviderEvent::AudioDelta {
            item_id,
            audio: &self.audio,
        });
    }

    fn open_turn(&mut self) -> &str {
        if self.turn.is_none() {
            self.turns += 1;
            self.turn = Some(format!("el_turn_{}", self.turns));
        }
        self.turn.as_deref().unwrap_or_default()
    }

    fn close_turn(&mut self, emit: &mut impl FnMut(ProviderEvent<'_>)) {
        if self.turn.take().is_none() {
            return;
        }
        let bytes = std::mem::take(&mut self.turn_audio_bytes);
        let per_ms = self.expected.1.bytes_per_ms().unwrap_or(1).max(1);
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

    fn setup() -> ElevenLabsSetup {
        let settings = CallSettings {
            voice_provider: "elevenlabs".into(),
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            call_greeting: " Hi there! ".into(),
            ..CallSettings::default()
        };
        ElevenLabsSetup {
            agent_id: "agent_123".into(),
            instructions: "Be brief.".into(),
            settings,
            tools: vec![ToolSpec {
                name: "lookup_order".into(),
                description: "Look up".into(),
                parameters: json!({ "type": "object", "properties": {} }),
            }],
            format: AudioFormat::Mulaw8k,
        }
    }

    #[test]
    fn urls_and_key_header() {
        assert_eq!(
            connect_url(DEFAULT_BASE_URL, "agent_1"),
            "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=agent_1"
        );
        assert_eq!(
            connect_url("ws://127.0.0.1:9/x?source=v", "a b&c"),
            "ws://127.0.0.1:9/x?source=v&agent_id=a%20b%26c"
        );
        assert_eq!(
            signed_url_request(DEFAULT_SIGNED_URL_ENDPOINT, "agent_1"),
            "https://api.elevenlabs.io/v1/convai/conversation/get-signed-url?agent_id=agent_1"
        );
        assert_eq!(
            parse_signed_url(r#"{"signed_url":"wss://x/y?conversation_signature=s"}"#).as_deref(),
            Some("wss://x/y?conversation_signature=s")
        );
        assert_eq!(parse_signed_url("nope"), None);
        assert_eq!(parse_signed_url(r#"{"detail":"bad"}"#), None);
        assert_eq!(api_key_header("k1"), ("xi-api-key", "k1".to_owned()));
    }

    #[test]
    fn formats_pass_ulaw_through_and_use_pcm16k_otherwise() {
        assert_eq!(
            provider_format(AudioFormat::Mulaw8k),
            (AudioFormat::Mulaw8k, AudioFormat::Mulaw8k)
        );
        let pcm = AudioFormat::Pcm16 {
            sample_rate_hz: 16_000,
        };
        assert_eq!(provider_format(AudioFormat::Opus48k), (pcm, pcm));
        assert_eq!(provider_format(AudioFormat::Alaw8k), (pcm, pcm));
        assert_eq!(format_name(pcm).as_deref(), Some("pcm_16000"));
        assert_eq!(
            format_name(AudioFormat::Mulaw8k).as_deref(),
            Some("ulaw_8000")
        );
        assert_eq!(format_name(AudioFormat::Alaw8k), None);
        assert_eq!(parse_format_name("ulaw_8000"), Some(AudioFormat::Mulaw8k));
        assert_eq!(
            parse_format_name("pcm_22050"),
            Some(AudioFormat::Pcm16 {
                sample_rate_hz: 22_050
            })
        );
        assert_eq!(parse_format_name("pcm_12345"), None);
        assert_eq!(parse_format_name("mp3_44100"), None);
    }

    #[test]
    fn initiation_overrides_prompt_greeting_and_elevenlabs_voice() {
        let v: Value = serde_json::from_str(&initiation(&setup())).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "conversation_initiation_client_data",
                "conversation_config_override": {
                    "agent": { "prompt": { "prompt": "Be brief." }, "first_message": "Hi there!" },
                    "tts": { "voice_id": "21m00Tcm4TlvDq8ikWAM" },
                },
                "custom_llm_extra_body": {},
                "dynamic_variables": {},
            })
        );
        let mut plain = setup();
        plain.settings = CallSettings::default();
        plain.settings.call_greeting = "  ".into();
        plain.instructions = String::new();
        let v: Value = serde_json::from_str(&initiation(&plain)).unwrap();
        assert_eq!(v["conversation_config_override"], json!({ "agent": {} }));
        assert_eq!(tool_names(&setup()), vec!["lookup_order", "end_call"]);
    }

    #[test]
    fn commands_become_client_messages() {
        let mut out = String::new();
        assert!(write_command(
            &ProviderCommand::Audio(&[0xFF, 0xFF]),
            &mut out
        ));
        assert_eq!(out, r#"{"user_audio_chunk":"//8="}"#);
        assert!(write_command(
            &ProviderCommand::Say {
                text: "Are you still there?"
            },
            &mut out
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["type"], "user_message");
        assert!(v["text"].as_str().unwrap().contains("Are you still there?"));
        for cmd in [
            ProviderCommand::Truncate {
                item_id: "el_turn_1",
                audio_end_ms: 10,
            },
            ProviderCommand::CancelResponse,
            ProviderCommand::Close,
        ] {
            assert!(!write_command(&cmd, &mut out), "{cmd:?}");
            assert!(out.is_empty());
        }
        assert_eq!(pong(9), r#"{"type":"pong","event_id":9}"#);
        let v: Value =
            serde_json::from_str(&tool_result("t1", &json!({"ok": true}), false)).unwrap();
        assert_eq!(
            v,
            json!({"type":"client_tool_result","tool_call_id":"t1","result":"{\"ok\":true}","is_error":false})
        );
        let v: Value = serde_json::from_str(&tool_result("t2", &json!("done"), true)).unwrap();
        assert_eq!(v["result"], "done");
        assert_eq!(v["is_error"], true);
        assert_eq!(user_activity(), r#"{"type":"user_activity"}"#);
    }

    #[test]
    fn history_is_one_contextual_update() {
        assert_eq!(seed_history(&[(Role::System, "x".into())]), None);
        let v: Value = serde_json::from_str(
            &seed_history(&[
                (Role::User, "where is my order".into()),
                (Role::Assistant, "It shipped.".into()),
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v["type"], "contextual_update");
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("Caller: where is my order\nAgent: It shipped."),
            "{text}"
        );
    }

    fn events_of(d: &mut ElevenLabsDecoder, frames: &[&str]) -> Vec<String> {
        let mut seen = Vec::new();
        for f in frames {
            d.handle_text(f, |e| seen.push(format!("{e:?}")));
        }
        seen
    }

    const METADATA: &str = r#"{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{"conversation_id":"conv_1","agent_output_audio_format":"ulaw_8000","user_input_audio_format":"ulaw_8000"}}"#;

    #[test]
    fn server_messages_map_to_provider_events() {
        let mut d = ElevenLabsDecoder::new(AudioFormat::Mulaw8k);
        let seen = events_of(
            &mut d,
            &[
                METADATA,
                r#"{"type":"agent_response","agent_response_event":{"agent_response":" Hi! "}}"#,
                r#"{"type":"audio","audio_event":{"audio_base_64":"//8=","event_id":1}}"#,
                r#"{"type":"audio","audio_event":{"audio_base_64":"//8=","event_id":1}}"#,
                r#"{"type":"vad_score","vad_score_event":{"vad_score":0.93}}"#,
                r#"{"type":"user_transcript","user_transcription_event":{"user_transcript":"where is my order"}}"#,
                r#"{"type":"client_tool_call","client_tool_call":{"tool_name":"lookup_order","tool_call_id":"tc_1","parameters":{"id":"42"}}}"#,
                r#"{"type":"audio","audio_event":{"audio_base_64":"AAA=","event_id":2}}"#,
            ],
        );
        assert_eq!(d.conversation_id.as_deref(), Some("conv_1"));
        assert_eq!(seen[0], "Connected");
        assert_eq!(
            seen[1],
            r#"Transcript { role: Assistant, text: "Hi!", is_final: true, item_id: Some("el_turn_1"), confidence: None }"#
        );
        assert_eq!(
            seen[2],
            r#"AudioDelta { item_id: "el_turn_1", audio: [255, 255] }"#
        );
        assert_eq!(seen[3], seen[2]);
        // The caller's turn closes the agent's: 4 µ-law bytes are 0.5 ms, rounded down.
        assert!(seen[4].contains("audio_output_ms: 0"), "{}", seen[4]);
        assert!(seen[4].starts_with(r#"Usage { model: "convai""#));
        assert!(seen[5].contains(r#"role: User, text: "where is my order", is_final: true"#));
        assert_eq!(
            seen[6],
            r#"ToolCall { call_id: "tc_1", name: "lookup_order", arguments: "{\"id\":\"42\"}" }"#
        );
        assert_eq!(
            seen[7],
            r#"AudioDelta { item_id: "el_turn_2", audio: [0, 0] }"#
        );
        assert_eq!(seen.len(), 8);
        assert_eq!(d.malformed, 0);
    }

    #[test]
    fn interruption_drops_audio_at_or_below_its_event_id() {
        let mut d = ElevenLabsDecoder::new(AudioFormat::Mulaw8k);
        let chunk = |id: u64| {
            format!(
                r#"{{"type":"audio","audio_event":{{"audio_base_64":"{}","event_id":{id}}}}}"#,
                BASE64.encode([0xFFu8; 800])
            )
        };
        let frames = [
            chunk(7),
            r#"{"type":"interruption","interruption_event":{"event_id":7}}"#.to_owned(),
            chunk(7),
            chunk(6),
            chunk(8),
        ];
        let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
        let seen = events_of(&mut d, &refs);
        assert!(seen[0].starts_with(r#"AudioDelta { item_id: "el_turn_1""#));
        // 800 µ-law bytes = 100 ms, reported when the turn is cut.
        assert!(seen[1].contains("audio_output_ms: 100"), "{}", seen[1]);
        assert_eq!(seen[2], "Interrupted");
        assert!(seen[3].starts_with(r#"AudioDelta { item_id: "el_turn_2""#));
        assert_eq!(seen.len(), 4);
        assert_eq!(d.dropped_audio, 2);
        let mut end = Vec::new();
        d.finish(|e| end.push(format!("{e:?}")));
        assert!(end[0].contains("audio_output_ms: 100"));
        d.finish(|e| end.push(format!("{e:?}")));
        assert_eq!(end.len(), 1, "a closed turn is reported once");
    }

    #[test]
    fn pings_queue_pongs_in_order() {
        let mut d = ElevenLabsDecoder::new(AudioFormat::Mulaw8k);
        let seen = events_of(
            &mut d,
            &[
                r#"{"type":"ping","ping_event":{"event_id":3,"ping_ms":45}}"#,
                r#"{"type":"ping","ping_event":{"event_id":4}}"#,
            ],
        );
        assert!(seen.is_empty());
        assert_eq!(
            d.poll_reply().as_deref(),
            Some(r#"{"type":"pong","event_id":3}"#)
        );
        assert_eq!(
            d.poll_reply().as_deref(),
            Some(r#"{"type":"pong","event_id":4}"#)
        );
        assert_eq!(d.poll_reply(), None);
    }

    #[test]
    fn a_format_mismatch_is_fatal_not_connected() {
        let mut d = ElevenLabsDecoder::new(AudioFormat::Opus48k);
        let seen = events_of(&mut d, &[METADATA]);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with(r#"Error { fatal: true, code: "audio_format_mismatch""#));
        assert!(seen[0].contains("pcm_16000"), "{}", seen[0]);
        // Metadata without formats is taken on trust.
        let mut d = ElevenLabsDecoder::new(AudioFormat::Opus48k);
        let seen = events_of(
            &mut d,
            &[
                r#"{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{"conversation_id":"c"}}"#,
            ],
        );
        assert_eq!(seen, vec!["Connected"]);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = ElevenLabsDecoder::new(AudioFormat::Mulaw8k);
        let seen = events_of(
            &mut d,
            &[
                "not json",
                "{}",
                r#"{"type":"audio","audio_event":{"audio_base_64":"@@@","event_id":1}}"#,
                r#"{"type":"audio","audio_event":{"audio_base_64":"//8="}}"#,
                r#"{"type":"ping","ping_event":{}}"#,
                r#"{"type":"interruption"}"#,
                r#"{"type":"client_tool_call","client_tool_call":{"tool_name":"x"}}"#,
                r#"{"type":42}"#,
            ],
        );
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(d.malformed, 8);
        assert_eq!(d.poll_reply(), None);
    }
}
