//! OpenAI Realtime, GA protocol (protocols.md §2), as a sans-IO adapter: it builds the
//! client events (`session.update`, audio appends, truncates) and turns server events into
//! the session's provider-neutral [`ProviderEvent`]s. The beta shape is gone server-side,
//! so only GA event names are matched.
//!
//! Twilio calls use `audio/pcmu` both ways: Twilio's µ-law bytes pass straight through
//! (zero transcoding). WebRTC calls use `audio/pcm` at 24 kHz, the only PCM rate.

use crate::core::session::{ProviderCommand, ProviderEvent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{Role, Usage};
use vocalized_shared::plan::ToolSpec;

/// The transcription model used when the agent has transcription on.
pub const TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// OpenAI's own voices; anything else falls back to `alloy` rather than failing the call.
const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

/// Error codes after which the session cannot go on.
const FATAL_CODES: &[&str] = &[
    "session_expired",
    "beta_api_shape_disabled",
    "invalid_api_key",
    "insufficient_quota",
];

/// What the adapter needs from the call plan.
#[derive(Clone, Debug)]
pub struct OpenAiSetup {
    pub model: String,
    pub instructions: String,
    pub settings: CallSettings,
    pub tools: Vec<ToolSpec>,
    /// Caller leg format: µ-law for Twilio, PCM 24 kHz otherwise.
    pub format: AudioFormat,
}

/// The WebSocket URL for `model` at `base_url` (`wss://api.openai.com/v1/realtime` or a
/// regional, Azure or test endpoint). The model is a tenant's setting and the request
/// carries the platform's key, so it is percent-encoded: it cannot add query parameters
/// or a fragment.
pub fn connect_url(base_url: &str, model: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}model={}", query_escape(model))
}

/// Percent-encodes every byte but RFC 3986's unreserved characters (as ElevenLabs'
/// `agent_id`).
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

/// The provider format OpenAI should speak for a caller format: pass-through where it can.
pub fn provider_format(caller: AudioFormat) -> AudioFormat {
    match caller {
        AudioFormat::Mulaw8k | AudioFormat::Alaw8k => caller,
        _ => AudioFormat::Pcm16 {
            sample_rate_hz: 24_000,
        },
    }
}

fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Mulaw8k => json!({ "type": "audio/pcmu" }),
        AudioFormat::Alaw8k => json!({ "type": "audio/pcma" }),
        _ => json!({ "type": "audio/pcm", "rate": 24000 }),
    }
}

/// `session.update` (GA shape, §2.2) built from the agent.
pub fn session_update(setup: &OpenAiSetup) -> String {
    let s = &setup.settings;
    let format = format_json(provider_format(setup.format));
    let voice = if VOICES.contains(&s.voice_id.as_str()) {
        s.voice_id.as_str()
    } else {
        "alloy"
    };
    let transcription = if s.transcription_enabled {
        json!({ "model": TRANSCRIPTION_MODEL })
    } else {
        Value::Null
    };
    let tools: Vec<Value> = setup
        .tools
        .iter()
        .map(|t| {
            json!({ "type": "function", "name": t.name, "description": t.description,
                    "parameters": t.parameters })
        })
        .chain(std::iter::once(json!({
            "type": "function", "name": "end_call",
            "description": "Hang up once the caller is done or asks to end the call.",
            "parameters": { "type": "object", "properties": {} },
        })))
        .collect();
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": setup.model,
            "instructions": setup.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": format,
                    "transcription": transcription,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": s.vad_threshold,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": true,
                        "interrupt_response": s.interruption_enabled,
                    },
                },
                "output": { "format": format, "voice": voice, "speed": s.voice_settings.speed },
            },
            "tools": tools,
            "tool_choice": "auto",
        }
    })
    .to_string()
}

/// The agent speaks first: a response that says the greeting.
pub fn greeting(settings: &CallSettings) -> Option<String> {
    let text = settings.call_greeting.trim();
    (!text.is_empty()).then(|| say(text))
}

fn say(text: &str) -> String {
    json!({
        "type": "response.create",
        "response": { "instructions": format!("Say exactly this to the caller, then wait: {text}") },
    })
    .to_string()
}

/// Writes the client event for `cmd` into `out` (cleared first). Audio appends reuse the
/// buffer, so a steady stream of them allocates nothing. `false` for `Close`, which has no
/// event (the driver closes the socket).
pub fn write_command(cmd: &ProviderCommand<'_>, out: &mut String) -> bool {
    out.clear();
    match *cmd {
        ProviderCommand::Audio(bytes) => {
            out.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
            BASE64.encode_string(bytes, out);
            out.push_str(r#""}"#);
        }
        ProviderCommand::Truncate {
            item_id,
            audio_end_ms,
        } => {
            out.push_str(
                &json!({ "type": "conversation.item.truncate", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": audio_end_ms })
                .to_string(),
            );
        }
        ProviderCommand::CancelResponse => out.push_str(r#"{"type":"response.cancel"}"#),
        ProviderCommand::Say { text } => out.push_str(&say(text)),
        ProviderCommand::Close => return false,
    }
    true
}

/// A function call's result, so the model can go on (tools run by the gateway).
pub fn tool_result(call_id: &str, output: &Value) -> [String; 2] {
    [
        json!({ "type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call_id, "output": output.to_string() } })
        .to_string(),
        json!({ "type": "response.create" }).to_string(),
    ]
}

/// Earlier turns for a fresh session (failover, session rollover): replayed as text items
/// so the new session knows the conversation so far.
pub fn seed_history(turns: &[(Role, String)]) -> Vec<String> {
    turns
        .iter()
        .filter(|(role, text)| *role != Role::System && !text.trim().is_empty())
        .map(|(role, text)| {
            let (role, kind) = match role {
                Role::User => ("user", "input_text"),
                _ => ("assistant", "output_text"),
            };
            json!({ "type": "conversation.item.create", "item": {
                "type": "message", "role": role, "content": [{ "type": kind, "text": text }] } })
            .to_string()
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerEvent<'a> {
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "response.output_audio.delta")]
    AudioDelta {
        #[serde(borrow)]
        item_id: &'a str,
        #[serde(borrow)]
        delta: &'a str,
    },
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted,
    #[serde(rename = "conversation.item.input_audio_transcription.delta")]
    CallerTranscriptDelta { delta: String },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    CallerTranscript {
        transcript: String,
        #[serde(default)]
        usage: Option<TranscriptionUsage>,
    },
    #[serde(rename = "response.output_audio_transcript.delta")]
    AgentTranscriptDelta { item_id: String, delta: String },
    #[serde(rename = "response.output_audio_transcript.done")]
    AgentTranscript { item_id: String, transcript: String },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseBody },
    #[serde(rename = "error")]
    Error { error: ErrorBody },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum TranscriptionUsage {
    Tokens {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        input_token_details: Option<TokenDetails>,
    },
    Duration {
        seconds: f64,
    },
}

#[derive(Deserialize, Default)]
struct TokenDetails {
    #[serde(default)]
    text_tokens: u64,
    #[serde(default)]
    audio_tokens: u64,
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ResponseBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_details: Option<Value>,
    #[serde(default)]
    usage: Option<ResponseUsage>,
}

#[derive(Deserialize)]
struct ResponseUsage {
    #[serde(default)]
    input_token_details: TokenDetails,
    #[serde(default)]
    output_token_details: TokenDetails,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: String,
}

/// Turns server frames into provider events. Keeps a reusable audio buffer so decoding a
/// delta allocates nothing once it has grown.
pub struct OpenAiDecoder {
    model: String,
    audio: Vec<u8>,
    /// Server frames that were not JSON or not a known shape; counted, never fatal.
    pub malformed: u64,
}

impl OpenAiDecoder {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            audio: Vec::with_capacity(16 * 1024),
            malformed: 0,
        }
    }

    /// Feeds one text frame; `emit` receives the provider events it means, in order.
    pub fn handle_text(&mut self, text: &str, mut emit: impl FnMut(ProviderEvent<'_>)) {
        let event: ServerEvent<'_> = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "unparseable OpenAI event skipped");
                return;
            }
        };
        match event {
            ServerEvent::SessionUpdated => emit(ProviderEvent::Connected),
            ServerEvent::AudioDelta { item_id, delta } => {
                self.audio.clear();
                if BASE64.decode_vec(delta, &mut self.audio).is_err() {
                    self.malformed += 1;
                    return;
                }
                emit(ProviderEvent::AudioDelta {
                    item_id,
                    audio: &self.audio,
                });
            }
            ServerEvent::SpeechStarted => emit(ProviderEvent::SpeechStarted),
            ServerEvent::CallerTranscriptDelta { delta } => emit(ProviderEvent::Transcript {
                role: Role::User,
                text: &delta,
                is_final: false,
                item_id: None,
                confidence: None,
            }),
            ServerEvent::CallerTranscript { transcript, usage } => {
                emit(ProviderEvent::Transcript {
                    role: Role::User,
                    text: transcript.trim(),
                    is_final: true,
                    item_id: None,
                    confidence: None,
                });
                if let Some(usage) = usage {
                    let usage = match usage {
                        TranscriptionUsage::Tokens {
                            input_tokens,
                            output_tokens,
                            input_token_details,
                        } => {
                            let d = input_token_details.unwrap_or_default();
                            let audio = if d.audio_tokens + d.text_tokens > 0 {
                                d.audio_tokens
                            } else {
                                input_tokens
                            };
                            Usage {
                                input_audio_tokens: audio,
                                input_text_tokens: d.text_tokens,
                                output_text_tokens: output_tokens,
                                ..Usage::default()
                            }
                        }
                        TranscriptionUsage::Duration { seconds } => Usage {
                            audio_input_ms: (seconds.max(0.0) * 1000.0).round() as u64,
                            ..Usage::default()
                        },
                    };
                    emit(ProviderEvent::Usage {
                        model: TRANSCRIPTION_MODEL,
                        usage: &usage,
                    });
                }
            }
            ServerEvent::AgentTranscriptDelta { item_id, delta } => {
                emit(ProviderEvent::Transcript {
                    role: Role::Assistant,
                    text: &delta,
                    is_final: false,
                    item_id: Some(&item_id),
                    confidence: None,
                })
            }
            ServerEvent::AgentTranscript {
                item_id,
                transcript,
            } => emit(ProviderEvent::Transcript {
                role: Role::Assistant,
                text: transcript.trim(),
                is_final: true,
                item_id: Some(&item_id),
                confidence: None,
            }),
            ServerEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => emit(ProviderEvent::ToolCall {
                call_id: &call_id,
                name: &name,
                arguments: &arguments,
            }),
            ServerEvent::ResponseDone { response } => {
                if let Some(u) = response.usage {
                    let i = u.input_token_details;
                    let o = u.output_token_details;
                    let usage = Usage {
                        input_text_tokens: i.text_tokens,
                        input_audio_tokens: i.audio_tokens,
                        cached_input_tokens: i.cached_tokens,
                        output_text_tokens: o.text_tokens,
                        output_audio_tokens: o.audio_tokens,
                        ..Usage::default()
                    };
                    emit(ProviderEvent::Usage {
                        model: &self.model,
                        usage: &usage,
                    });
                }
                if response.status.as_deref() == Some("failed") {
                    let detail = response.status_details.unwrap_or(Value::Null);
                    let code = detail["error"]["code"]
                        .as_str()
                        .unwrap_or("response_failed");
                    emit(ProviderEvent::Error {
                        fatal: false,
                        code,
                        message: detail["error"]["message"]
                            .as_str()
                            .unwrap_or("the response failed"),
                    });
                }
            }
            ServerEvent::Error { error } => {
                let code = error.code.or(error.kind).unwrap_or_else(|| "error".into());
                emit(ProviderEvent::Error {
                    fatal: FATAL_CODES.contains(&code.as_str()),
                    code: &code,
                    message: &error.message,
                });
            }
            ServerEvent::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> OpenAiSetup {
        OpenAiSetup {
            model: "gpt-realtime".into(),
            instructions: "Be brief.".into(),
            settings: CallSettings::default(),
            tools: vec![ToolSpec {
                name: "book".into(),
                description: "Book".into(),
                parameters: json!({ "type": "object", "properties": {} }),
            }],
            format: AudioFormat::Mulaw8k,
        }
    }

    #[test]
    fn session_update_is_the_ga_shape_with_pcmu_both_ways() {
        let v: Value = serde_json::from_str(&session_update(&setup())).unwrap();
        assert_eq!(v["type"], "session.update");
        let s = &v["session"];
        assert_eq!(s["type"], "realtime");
        assert_eq!(s["audio"]["input"]["format"]["type"], "audio/pcmu");
        assert_eq!(s["audio"]["output"]["format"]["type"], "audio/pcmu");
        assert_eq!(s["audio"]["output"]["voice"], "alloy");
        assert_eq!(s["audio"]["input"]["turn_detection"]["threshold"], 0.5);
        assert_eq!(
            s["audio"]["input"]["transcription"]["model"],
            TRANSCRIPTION_MODEL
        );
        assert_eq!(s["tools"][0]["name"], "book");
        assert_eq!(s["tools"][1]["name"], "end_call");
        assert!(s.get("modalities").is_none(), "no beta fields");
        let mut no_transcripts = setup();
        no_transcripts.settings.transcription_enabled = false;
        no_transcripts.format = AudioFormat::Pcm16 {
            sample_rate_hz: 48_000,
        };
        let v: Value = serde_json::from_str(&session_update(&no_transcripts)).unwrap();
        assert!(v["session"]["audio"]["input"]["transcription"].is_null());
        assert_eq!(
            v["session"]["audio"]["input"]["format"],
            json!({"type":"audio/pcm","rate":24000})
        );
    }

    #[test]
    fn commands_become_client_events() {
        let mut out = String::new();
        assert!(write_command(
            &ProviderCommand::Audio(&[0xFF, 0xFF]),
            &mut out
        ));
        assert_eq!(
            out,
            r#"{"type":"input_audio_buffer.append","audio":"//8="}"#
        );
        write_command(
            &ProviderCommand::Truncate {
                item_id: "item_1",
                audio_end_ms: 1234,
            },
            &mut out,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1234})
        );
        assert!(!write_command(&ProviderCommand::Close, &mut out));
        assert_eq!(
            connect_url("wss://api.openai.com/v1/realtime", "gpt-realtime"),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
    }

    #[test]
    fn the_model_cannot_add_query_parameters_or_a_fragment() {
        assert_eq!(
            connect_url("wss://api.openai.com/v1/realtime", "a&b=c#d"),
            "wss://api.openai.com/v1/realtime?model=a%26b%3Dc%23d"
        );
        assert_eq!(
            connect_url(
                "wss://eu.example/realtime?api-version=1",
                "gpt-realtime-2025-08-28"
            ),
            "wss://eu.example/realtime?api-version=1&model=gpt-realtime-2025-08-28"
        );
        assert_eq!(
            connect_url("ws://fake", "x y/%é"),
            "ws://fake?model=x%20y%2F%25%C3%A9"
        );
    }

    fn events_of(frames: &[&str]) -> Vec<String> {
        let mut d = OpenAiDecoder::new("gpt-realtime");
        let mut seen = Vec::new();
        for f in frames {
            d.handle_text(f, |e| seen.push(format!("{e:?}")));
        }
        seen
    }

    #[test]
    fn server_events_map_to_provider_events() {
        let seen = events_of(&[
            r#"{"type":"session.created","session":{}}"#,
            r#"{"type":"session.updated","session":{}}"#,
            r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"item_1","output_index":0,"content_index":0,"delta":"//8="}"#,
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":100,"item_id":"item_2"}"#,
            r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_2","content_index":0,"transcript":" Hi there ","usage":{"type":"duration","seconds":1.5}}"#,
            r#"{"type":"response.output_audio_transcript.done","item_id":"item_1","transcript":"Hello!"}"#,
            r#"{"type":"response.function_call_arguments.done","call_id":"c1","name":"end_call","arguments":"{}","item_id":"i","response_id":"r","output_index":0}"#,
            r#"{"type":"response.done","response":{"id":"r","status":"completed","status_details":null,"output":[],"usage":{"total_tokens":1520,"input_tokens":1320,"output_tokens":200,"input_token_details":{"text_tokens":420,"audio_tokens":900,"image_tokens":0,"cached_tokens":640},"output_token_details":{"text_tokens":40,"audio_tokens":160}}}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"invalid_value","message":"nope"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"session_expired","message":"60 minutes"}}"#,
            r#"{"type":"rate_limits.updated","rate_limits":[]}"#,
        ]);
        assert_eq!(seen[0], "Connected");
        assert_eq!(
            seen[1],
            r#"AudioDelta { item_id: "item_1", audio: [255, 255] }"#
        );
        assert_eq!(seen[2], "SpeechStarted");
        assert!(
            seen[3].contains(r#"role: User, text: "Hi there", is_final: true"#),
            "{}",
            seen[3]
        );
        assert!(seen[4].contains("audio_input_ms: 1500"), "{}", seen[4]);
        assert!(seen[5].contains(
            r#"role: Assistant, text: "Hello!", is_final: true, item_id: Some("item_1")"#
        ));
        assert!(seen[6].starts_with(r#"ToolCall { call_id: "c1", name: "end_call""#));
        assert!(seen[7].contains("input_text_tokens: 420, input_audio_tokens: 900, cached_input_tokens: 640, output_text_tokens: 40, output_audio_tokens: 160"), "{}", seen[7]);
        assert!(seen[8].starts_with("Error { fatal: false"));
        assert!(seen[9].starts_with("Error { fatal: true"));
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = OpenAiDecoder::new("m");
        let mut n = 0;
        for f in [
            "not json",
            "{}",
            r#"{"type":"response.output_audio.delta","item_id":"i","delta":"@@@"}"#,
            r#"{"type":42}"#,
        ] {
            d.handle_text(f, |_| n += 1);
        }
        assert_eq!(n, 0);
        assert_eq!(d.malformed, 4);
    }
}
