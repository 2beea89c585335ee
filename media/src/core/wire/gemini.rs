//! Google Gemini Live (`BidiGenerateContent` over WebSocket, protocols.md §3) as a sans-IO
//! adapter: it builds the client messages and turns server messages into the session's
//! provider-neutral [`ProviderEvent`]s. Sockets, reconnects and clocks stay in the driver.
//!
//! # API
//! - [`connect_url`]`(base_url, api_key)`: the WebSocket URL, the key in `?key=` (§3.1);
//!   [`DEFAULT_BASE_URL`] is Google's endpoint.
//! - [`provider_format`]`()`: `(input, output)` = PCM16 16 kHz in, PCM16 24 kHz out (§3.3,
//!   §3.4), the pair `io::provider::formats` returns.
//! - [`setup_message`]`(&`[`GeminiSetup`]`)`: the one `setup` message (§3.2). Send it
//!   first and **nothing else until [`ProviderEvent::Connected`]** (`setupComplete`).
//! - [`greeting`], [`write_command`], [`tool_response`], [`seed_history`]: what to send after.
//! - [`GeminiDecoder`]: `handle_text` / `handle_binary` for server frames, `handle_close`
//!   for the close frame; [`GeminiDecoder::take_go_away`] and
//!   [`GeminiDecoder::latest_resume_handle`] tell the driver when and how to reconnect.
//!
//! # Choices
//! - **Item ids.** Gemini names no turns, so the decoder makes one up per model turn
//!   (`gemini_turn_N`, N unique in the process, so ids never repeat across a reconnect). A
//!   new id starts with the first audio or output transcription after `turnComplete` or
//!   `interrupted`.
//! - **Transcripts.** Gemini sends transcription in pieces. Each piece is emitted at once
//!   as a partial [`ProviderEvent::Transcript`] (so caller speech counts for the silence
//!   clock), and the pieces are joined as sent and trimmed into one final transcript per
//!   side and turn: the caller's at `inputTranscription.finished`, `turnComplete` or
//!   `interrupted` (input transcription lags, so it is not cut when the model starts
//!   talking); the agent's at `turnComplete` or `interrupted`, with the turn's item id. On
//!   `interrupted` the [`ProviderEvent::Interrupted`] goes out first: barge-in latency
//!   matters more than transcript order.
//! - **Usage.** `usageMetadata` is per turn, not a running total (a live probe reported in
//!   pydantic/pydantic-ai#7269), so each one is emitted as a [`ProviderEvent::Usage`].
//!   Modality details split audio from text; without details, prompt tokens count as
//!   audio input and response tokens as audio output (a voice session). Tool-use prompt
//!   tokens are text input; thinking tokens are text output.
//! - **Barge-in.** Gemini cuts its own output (`interrupted`, §3.6, §8): `Truncate` and
//!   `CancelResponse` write nothing ([`write_command`] returns `false` for them as for
//!   `Close`; only `Close` should close the socket).
//! - **Tools.** Parameters are JSON Schema; Gemini wants its OpenAPI-subset `Schema`
//!   (upper-case types, no `additionalProperties`), so [`gemini_schema`] converts them. A
//!   function without arguments gets no `parameters` at all, since Gemini rejects an
//!   `OBJECT` with empty `properties`. `end_call` is always declared.
//! - **Closes.** Gemini reports most failures as a close frame: code 1000 is a plain
//!   [`ProviderEvent::Closed`]; any other code is first an [`ProviderEvent::Error`] with
//!   code `close_<code>`, fatal for 1007/1008 (the request or key is wrong, resuming will
//!   not help) and not fatal otherwise (a reconnect with the resume handle may work).
//!
//! # Unverified
//! - Newer models (reported for `gemini-3.1-flash-live-preview`) may refuse `clientContent`
//!   unless the setup has `historyConfig.initialHistoryInClientContent`, which would touch
//!   the greeting, `Say` and [`seed_history`]; `realtimeInput.text` is the alternative.
//!   Reports disagree, so the setup leaves `historyConfig` out until a real key settles it.
//! - `goAway.timeLeft`'s exact form (§3.4): both the Duration string and an object parse.

use crate::core::session::{ProviderCommand, ProviderEvent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{Role, Usage};
use vocalized_shared::plan::ToolSpec;

/// Google's endpoint (§3.1). Operators may point at another; tests point at a fake.
pub const DEFAULT_BASE_URL: &str = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
/// Caller audio Gemini accepts: PCM16 LE mono 16 kHz (§3.3).
pub const INPUT_SAMPLE_RATE_HZ: u32 = 16_000;
/// Agent audio Gemini sends: PCM16 LE mono 24 kHz (§3.4).
pub const OUTPUT_SAMPLE_RATE_HZ: u32 = 24_000;
const INPUT_MIME: &str = "audio/pcm;rate=16000";
/// Gemini's prebuilt voices (names change, §3.2); anything else falls back to
/// [`DEFAULT_VOICE`] rather than failing the call.
const VOICES: &[&str] = &[
    "Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr",
];
pub const DEFAULT_VOICE: &str = "Aoede";
/// Context window compression (§3.5): without it audio sessions stop at 15 minutes.
const COMPRESSION_TRIGGER_TOKENS: u64 = 25_600;
const COMPRESSION_TARGET_TOKENS: u64 = 12_800;
/// Speech needed before Gemini commits to a start of speech, and silence before an end.
const VAD_PREFIX_PADDING_MS: u32 = 100;
const VAD_SILENCE_DURATION_MS: u32 = 500;

/// What the adapter needs from the call plan.
#[derive(Clone, Debug)]
pub struct GeminiSetup {
    /// `gemini-…` or `models/gemini-…`.
    pub model: String,
    pub instructions: String,
    pub settings: CallSettings,
    pub tools: Vec<ToolSpec>,
    /// The latest resumable handle of the previous connection, when reconnecting after
    /// `goAway` (§3.5); `None` for a new session.
    pub resume_handle: Option<String>,
}

/// The WebSocket URL at `base_url` ([`DEFAULT_BASE_URL`], a proxy or a test fake) with
/// the API key as the `key` query parameter.
pub fn connect_url(base_url: &str, api_key: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    let mut url = format!("{base_url}{sep}key=");
    for byte in api_key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// `(caller audio in, agent audio out)`: Gemini's formats are fixed, whatever the caller.
pub fn provider_format() -> (AudioFormat, AudioFormat) {
    (
        AudioFormat::Pcm16 {
            sample_rate_hz: INPUT_SAMPLE_RATE_HZ,
        },
        AudioFormat::Pcm16 {
            sample_rate_hz: OUTPUT_SAMPLE_RATE_HZ,
        },
    )
}

fn voice_name(voice_id: &str) -> &'static str {
    VOICES
        .iter()
        .find(|v| v.eq_ignore_ascii_case(voice_id.trim()))
        .copied()
        .unwrap_or(DEFAULT_VOICE)
}

/// The `setup` message (§3.2) built from the agent.
pub fn setup_message(setup: &GeminiSetup) -> String {
    let s = &setup.settings;
    let model = if setup.model.starts_with("models/") {
        setup.model.clone()
    } else {
        format!("models/{}", setup.model)
    };
    // A higher threshold asks for more evidence of speech: Gemini's low start
    // sensitivity. The session's default, 0.5, keeps Gemini's eager default.
    let start_sensitivity = if s.vad_threshold > 0.5 {
        "START_SENSITIVITY_LOW"
    } else {
        "START_SENSITIVITY_HIGH"
    };
    let activity_handling = if s.interruption_enabled {
        "START_OF_ACTIVITY_INTERRUPTS"
    } else {
        "NO_INTERRUPTION"
    };
    let declarations: Vec<Value> = setup
        .tools
        .iter()
        .filter(|t| t.name != "end_call")
        .map(|t| function_declaration(&t.name, &t.description, &t.parameters))
        .chain(std::iter::once(function_declaration(
            "end_call",
            "Hang up once the caller is done or asks to end the call.",
            &Value::Null,
        )))
        .collect();
    let mut body = json!({
        "model": model,
        "generationConfig": {
            "responseModalities": ["AUDIO"],
            "speechConfig": {
                "voiceConfig": { "prebuiltVoiceConfig": { "voiceName": voice_name(&s.voice_id) } },
            },
        },
        "tools": [{ "functionDeclarations": declarations }],
        "realtimeInputConfig": {
            "automaticActivityDetection": {
                "disabled": false,
                "startOfSpeechSensitivity": start_sensitivity,
                "endOfSpeechSensitivity": "END_SENSITIVITY_LOW",
                "prefixPaddingMs": VAD_PREFIX_PADDING_MS,
                "silenceDurationMs": VAD_SILENCE_DURATION_MS,
            },
            "activityHandling": activity_handling,
            "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY",
        },
        "contextWindowCompression": {
            "triggerTokens": COMPRESSION_TRIGGER_TOKENS,
            "slidingWindow": { "targetTokens": COMPRESSION_TARGET_TOKENS },
        },
        "sessionResumption": match &setup.resume_handle {
            Some(handle) => json!({ "handle": handle }),
            None => json!({}),
        },
    });
    if !setup.instructions.trim().is_empty() {
        body["systemInstruction"] = json!({ "parts": [{ "text": setup.instructions }] });
    }
    if s.transcription_enabled {
        body["inputAudioTranscription"] = json!({});
        body["outputAudioTranscription"] = json!({});
    }
    json!({ "setup": body }).to_string()
}

fn function_declaration(name: &str, description: &str, parameters: &Value) -> Value {
    let mut declaration = json!({ "name": name, "description": description });
    let schema = gemini_schema(parameters);
    let takes_arguments = schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty())
        || schema.get("type").is_some_and(|t| t != "OBJECT");
    if takes_arguments {
        declaration["parameters"] = schema;
    }
    declaration
}

/// Gemini's `Schema` from a JSON Schema: types upper-cased (`"object"` → `"OBJECT"`,
/// `["string","null"]` → `STRING` + `nullable`), and only the keys `Schema` knows kept.
pub fn gemini_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return json!({ "type": "OBJECT" });
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "type" => match value {
                Value::String(t) => {
                    out.insert("type".into(), json!(t.to_ascii_uppercase()));
                }
                Value::Array(types) => {
                    let mut named = types.iter().filter_map(Value::as_str);
                    if let Some(t) = named.clone().find(|t| *t != "null") {
                        out.insert("type".into(), json!(t.to_ascii_uppercase()));
                    }
                    if named.any(|t| t == "null") {
                        out.insert("nullable".into(), json!(true));
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Some(properties) = value.as_object() {
                    let converted: Map<String, Value> = properties
                        .iter()
                        .map(|(name, s)| (name.clone(), gemini_schema(s)))
                        .collect();
                    out.insert(key.clone(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert(key.clone(), gemini_schema(value));
            }
            "anyOf" => {
                if let Some(options) = value.as_array() {
                    out.insert(key.clone(), options.iter().map(gemini_schema).collect());
                }
            }
            "description" | "format" | "nullable" | "enum" | "required" | "title" | "minItems"
            | "maxItems" | "minimum" | "maximum" | "minLength" | "maxLength" | "pattern"
            | "minProperties" | "maxProperties" | "propertyOrdering" | "example" | "default" => {
                out.insert(key.clone(), value.clone());
            }
            // `additionalProperties`, `$schema`, `$ref`, … : not in Gemini's Schema.
            _ => {}
        }
    }
    Value::Object(out)
}

/// A `clientContent` user turn asking the model to speak, answered at once.
fn say(text: &str) -> String {
    json!({ "clientContent": {
        "turns": [{ "role": "user", "parts": [{
            "text": format!("Say exactly this to the caller, then wait: {text}") }] }],
        "turnComplete": true,
    } })
    .to_string()
}

/// The agent speaks first. Send it after `setupComplete`.
pub fn greeting(settings: &CallSettings) -> Option<String> {
    let text = settings.call_greeting.trim();
    (!text.is_empty()).then(|| say(text))
}

/// Writes the client message for `cmd` into `out` (cleared first); `false` when there is
/// nothing to send, with `out` empty: `Close` (the driver closes the socket), and
/// `Truncate` and `CancelResponse`, since Gemini cuts its own output on barge-in (§3.6).
/// So `false` does not mean "close": the driver closes only for `Close`. Audio reuses
/// the buffer, so a steady stream of it allocates nothing.
pub fn write_command(cmd: &ProviderCommand<'_>, out: &mut String) -> bool {
    out.clear();
    match *cmd {
        ProviderCommand::Audio(bytes) => {
            out.push_str(r#"{"realtimeInput":{"audio":{"mimeType":""#);
            out.push_str(INPUT_MIME);
            out.push_str(r#"","data":""#);
            BASE64.encode_string(bytes, out);
            out.push_str(r#""}}}"#);
            true
        }
        ProviderCommand::Say { text } => {
            out.push_str(&say(text));
            true
        }
        ProviderCommand::Truncate { .. }
        | ProviderCommand::CancelResponse
        | ProviderCommand::Close => false,
    }
}

/// A function call's result (§3.3). `response` must be a JSON object: an object `output`
/// goes as it is, anything else is wrapped as `{"result": output}`.
pub fn tool_response(call_id: &str, name: &str, output: &Value) -> String {
    let response = if output.is_object() {
        output.clone()
    } else {
        json!({ "result": output })
    };
    json!({ "toolResponse": { "functionResponses": [
        { "id": call_id, "name": name, "response": response } ] } })
    .to_string()
}

/// Earlier turns for a fresh session (failover to Gemini): one `clientContent` with the
/// conversation as `user`/`model` text turns and `turnComplete: false`, so the model
/// waits for the caller instead of answering the history. `None` when there is nothing.
pub fn seed_history(turns: &[(Role, String)]) -> Option<String> {
    let turns: Vec<Value> = turns
        .iter()
        .filter(|(role, text)| *role != Role::System && !text.trim().is_empty())
        .map(|(role, text)| {
            let role = if *role == Role::User { "user" } else { "model" };
            json!({ "role": role, "parts": [{ "text": text }] })
        })
        .collect();
    (!turns.is_empty())
        .then(|| json!({ "clientContent": { "turns": turns, "turnComplete": false } }).to_string())
}

/// One server message. Gemini may set several fields in one message (e.g. `serverContent`
/// with `usageMetadata`), so this is a struct of options, not a tagged enum.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage<'a> {
    #[serde(default)]
    setup_complete: Option<SetupComplete>,
    #[serde(default, borrow)]
    server_content: Option<ServerContent<'a>>,
    #[serde(default)]
    tool_call: Option<ToolCallMessage>,
    #[serde(default)]
    tool_call_cancellation: Option<Value>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    go_away: Option<GoAway>,
    #[serde(default)]
    session_resumption_update: Option<ResumptionUpdate>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

impl ServerMessage<'_> {
    fn is_empty(&self) -> bool {
        self.setup_complete.is_none()
            && self.server_content.is_none()
            && self.tool_call.is_none()
            && self.tool_call_cancellation.is_none()
            && self.usage_metadata.is_none()
            && self.go_away.is_none()
            && self.session_resumption_update.is_none()
            && self.error.is_none()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetupComplete {
    #[serde(default)]
    session_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerContent<'a> {
    #[serde(default, borrow)]
    model_turn: Option<ModelTurn<'a>>,
    #[serde(default)]
    turn_complete: bool,
    #[serde(default)]
    interrupted: bool,
    #[serde(default)]
    input_transcription: Option<Transcription>,
    #[serde(default)]
    output_transcription: Option<Transcription>,
}

#[derive(Deserialize)]
struct ModelTurn<'a> {
    #[serde(default, borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    #[serde(default, borrow)]
    inline_data: Option<InlineData<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData<'a> {
    #[serde(default, borrow)]
    mime_type: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Transcription {
    #[serde(default)]
    text: String,
    #[serde(default)]
    finished: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolCallMessage {
    #[serde(default)]
    function_calls: Vec<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: String,
    name: String,
    #[serde(default)]
    args: Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    response_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    prompt_tokens_details: Vec<ModalityCount>,
    #[serde(default)]
    response_tokens_details: Vec<ModalityCount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    #[serde(default)]
    modality: String,
    #[serde(default)]
    token_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoAway {
    #[serde(default)]
    time_left: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResumptionUpdate {
    #[serde(default)]
    new_handle: Option<String>,
    #[serde(default)]
    resumable: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: String,
}

/// Google RPC statuses after which the same request will fail again.
const FATAL_STATUSES: &[&str] = &[
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
];

/// `"9s"`, `"1.5s"` (protobuf Duration JSON) or `{"seconds":9,"nanos":0}`.
fn parse_duration(value: &Value) -> Option<Duration> {
    match value {
        Value::String(s) => {
            let seconds: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
            // `try_`: a value past `Duration`'s range ("1e20s") must not panic.
            Duration::try_from_secs_f64(seconds).ok()
        }
        Value::Object(o) => {
            let seconds = o.get("seconds").map_or(Some(0), |s| {
                s.as_u64()
                    .or_else(|| s.as_str().and_then(|s| s.parse().ok()))
            })?;
            let nanos = o.get("nanos").map_or(Some(0), Value::as_u64)?;
            Duration::from_secs(seconds).checked_add(Duration::from_nanos(nanos.min(999_999_999)))
        }
        _ => None,
    }
}

fn usage_of(m: &UsageMetadata) -> Usage {
    let mut usage = Usage {
        cached_input_tokens: m.cached_content_token_count,
        input_text_tokens: m.tool_use_prompt_token_count,
        output_text_tokens: m.thoughts_token_count,
        ..Usage::default()
    };
    if m.prompt_tokens_details.is_empty() {
        usage.input_audio_tokens = m.prompt_token_count;
    }
    for d in &m.prompt_tokens_details {
        match d.modality.as_str() {
            "AUDIO" => {
                usage.input_audio_tokens = usage.input_audio_tokens.saturating_add(d.token_count)
            }
            // Text, and images or video should a caller ever send them.
            _ => usage.input_text_tokens = usage.input_text_tokens.saturating_add(d.token_count),
        }
    }
    if m.response_tokens_details.is_empty() {
        usage.output_audio_tokens = m.response_token_count;
    }
    for d in &m.response_tokens_details {
        match d.modality.as_str() {
            "AUDIO" => {
                usage.output_audio_tokens = usage.output_audio_tokens.saturating_add(d.token_count)
            }
            _ => usage.output_text_tokens = usage.output_text_tokens.saturating_add(d.token_count),
        }
    }
    usage
}

/// Process-wide, so made-up item ids never repeat across reconnects or calls.
static TURNS: AtomicU64 = AtomicU64::new(0);

/// Turns server frames into provider events, and keeps what the driver needs to
/// reconnect. Keeps a reusable audio buffer so decoding a chunk allocates nothing once it
/// has grown.
pub struct GeminiDecoder {
    /// The model name for [`ProviderEvent::Usage`], without `models/`.
    model: String,
    audio: Vec<u8>,
    /// The current model turn's made-up id; `None` between turns.
    item_id: Option<String>,
    caller_text: String,
    agent_text: String,
    session_id: Option<String>,
    resume_handle: Option<String>,
    go_away: Option<Duration>,
    go_away_pending: bool,
    /// Server frames that were not JSON or not a known shape; counted, never fatal.
    pub malformed: u64,
}

impl GeminiDecoder {
    pub fn new(model: impl Into<String>) -> Self {
        let model = model.into();
        let model = model.strip_prefix("models/").unwrap_or(&model).to_owned();
        Self {
            model,
            audio: Vec::with_capacity(16 * 1024),
            item_id: None,
            caller_text: String::new(),
            agent_text: String::new(),
            session_id: None,
            resume_handle: None,
            go_away: None,
            go_away_pending: false,
            malformed: 0,
        }
    }

    /// The `sessionId` from `setupComplete`, when the server sent one.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The newest handle received with `resumable: true` (§3.5): put it in
    /// [`GeminiSetup::resume_handle`] to reconnect. Handles sent while the model was
    /// generating or calling a tool are not resumable and never replace it.
    pub fn latest_resume_handle(&self) -> Option<&str> {
        self.resume_handle.as_deref()
    }

    /// The time left announced by the last `goAway` (zero when its form was not
    /// understood): the connection will end, reconnect with the resume handle.
    pub fn go_away(&self) -> Option<Duration> {
        self.go_away
    }

    /// Like [`Self::go_away`], but `Some` only once per `goAway`: for a driver that checks
    /// after every frame.
    pub fn take_go_away(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.go_away_pending)
            .then_some(self.go_away)
            .flatten()
    }

    /// Feeds one binary frame: Gemini may send its JSON that way (§3.4).
    pub fn handle_binary(&mut self, bytes: &[u8], emit: impl FnMut(ProviderEvent<'_>)) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.handle_text(text, emit),
            Err(_) => {
                self.malformed += 1;
                tracing::debug!(len = bytes.len(), "non-UTF-8 Gemini frame skipped");
            }
        }
    }

    /// Feeds one text frame; `emit` receives the provider events it means, in order.
    pub fn handle_text(&mut self, text: &str, mut emit: impl FnMut(ProviderEvent<'_>)) {
        // serde would also read a struct from a JSON array; Gemini only sends objects.
        if !text.trim_start().starts_with('{') {
            self.malformed += 1;
            tracing::debug!("non-object Gemini message skipped");
            return;
        }
        let message: ServerMessage<'_> = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "unparseable Gemini message skipped");
                return;
            }
        };
        if message.is_empty() {
            // An object with only fields we do not know is the protocol growing, not
            // garbage; an empty one says nothing at all.
            let empty =
                serde_json::from_str::<Map<String, Value>>(text).is_ok_and(|m| m.is_empty());
            self.malformed += u64::from(empty);
            return;
        }
        if let Some(setup) = message.setup_complete {
            self.session_id = setup.session_id.or(self.session_id.take());
            emit(ProviderEvent::Connected);
        }
        if let Some(content) = message.server_content {
            self.handle_content(content, &mut emit);
        }
        if let Some(call) = message.tool_call {
            for f in call.function_calls {
                let arguments = match f.args {
                    Value::Null => "{}".to_owned(),
                    args => args.to_string(),
                };
                emit(ProviderEvent::ToolCall {
                    call_id: &f.id,
                    name: &f.name,
                    arguments: &arguments,
                });
            }
        }
        // `toolCallCancellation` needs nothing: tools here are quick, and a late
        // response for a cancelled id is ignored by the server.
        if let Some(metadata) = message.usage_metadata {
            let usage = usage_of(&metadata);
            if usage != Usage::default() {
                emit(ProviderEvent::Usage {
                    model: &self.model,
                    usage: &usage,
                });
            }
        }
        if let Some(go_away) = message.go_away {
            self.go_away = Some(
                go_away
                    .time_left
                    .as_ref()
                    .and_then(parse_duration)
                    .unwrap_or_default(),
            );
            self.go_away_pending = true;
        }
        if let Some(update) = message.session_resumption_update
            && update.resumable
            && let Some(handle) = update.new_handle.filter(|h| !h.is_empty())
        {
            self.resume_handle = Some(handle);
        }
        if let Some(error) = message.error {
            let code = match (&error.status, &error.code) {
                (Some(status), _) => status.clone(),
                (None, Some(code)) => code.to_string(),
                (None, None) => "error".to_owned(),
            };
            emit(ProviderEvent::Error {
                fatal: FATAL_STATUSES.contains(&code.as_str()),
                code: &code,
                message: &error.message,
            });
        }
    }

    /// The socket closed with this close frame (`None`: no frame, the connection broke).
    pub fn handle_close(
        &mut self,
        code: Option<u16>,
        reason: &str,
        mut emit: impl FnMut(ProviderEvent<'_>),
    ) {
        if code != Some(1000) {
            let name = code.map_or_else(|| "connection_lost".to_owned(), |c| format!("close_{c}"));
            emit(ProviderEvent::Error {
                fatal: matches!(code, Some(1007 | 1008)),
                code: &name,
                message: reason,
            });
        }
        emit(ProviderEvent::Closed);
    }

    fn handle_content(
        &mut self,
        content: ServerContent<'_>,
        emit: &mut impl FnMut(ProviderEvent<'_>),
    ) {
        if let Some(t) = content.input_transcription {
            if !t.text.is_empty() {
                self.caller_text.push_str(&t.text);
                emit(ProviderEvent::Transcript {
                    role: Role::User,
                    text: &t.text,
                    is_final: false,
                    item_id: None,
                    confidence: None,
                });
            }
            if t.finished {
                self.flush_caller(emit);
            }
        }
        if let Some(turn) = content.model_turn {
            for part in turn.parts {
                let Some(data) = part.inline_data else {
                    continue; // text or thought parts: the transcription carries the words
                };
                if !data.mime_type.starts_with("audio/pcm") {
                    continue;
                }
                self.audio.clear();
                if BASE64
                    .decode_vec(data.data.as_bytes(), &mut self.audio)
                    .is_err()
                {
                    self.malformed += 1;
                    continue;
                }
                let item_id = self.item_id.get_or_insert_with(next_item_id);
                emit(ProviderEvent::AudioDelta {
                    item_id: item_id.as_str(),
                    audio: &self.audio,
                });
            }
        }
        if let Some(t) = content.output_transcription
            && !t.text.is_empty()
        {
            self.agent_text.push_str(&t.text);
            let item_id = self.item_id.get_or_insert_with(next_item_id);
            emit(ProviderEvent::Transcript {
                role: Role::Assistant,
                text: &t.text,
                is_final: false,
                item_id: Some(item_id.as_str()),
                confidence: None,
            });
        }
        if content.interrupted {
            emit(ProviderEvent::Interrupted);
        }
        if content.interrupted || content.turn_complete {
            self.flush_caller(emit);
            let text = self.agent_text.trim();
            if !text.is_empty() {
                emit(ProviderEvent::Transcript {
                    role: Role::Assistant,
                    text,
                    is_final: true,
                    item_id: self.item_id.as_deref(),
                    confidence: None,
                });
            }
            self.agent_text.clear();
            self.item_id = None;
        }
    }

    fn flush_caller(&mut self, emit: &mut impl FnMut(ProviderEvent<'_>)) {
        let text = self.caller_text.trim();
        if !text.is_empty() {
            emit(ProviderEvent::Transcript {
                role: Role::User,
                text,
                is_final: true,
                item_id: None,
                confidence: None,
            });
        }
        self.caller_text.clear();
    }
}

fn next_item_id() -> String {
    format!("gemini_turn_{}", TURNS.fetch_add(1, Ordering::Relaxed) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> GeminiSetup {
        GeminiSetup {
            model: "gemini-live-2.5-flash-preview".into(),
            instructions: "Be brief.".into(),
            settings: CallSettings::default(),
            tools: vec![ToolSpec {
                name: "lookup_order".into(),
                description: "Find an order".into(),
                parameters: json!({
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "id": { "type": "string", "description": "Order id" },
                        "items": { "type": "array", "items": { "type": "integer" } },
                        "note": { "type": ["string", "null"] },
                    },
                    "required": ["id"],
                }),
            }],
            resume_handle: None,
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn setup_has_the_field_names_of_protocols_3_2() {
        let v = parse(&setup_message(&setup()));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["setup"], "exactly one top-level key");
        let s = &v["setup"];
        assert_eq!(s["model"], "models/gemini-live-2.5-flash-preview");
        assert_eq!(
            s["generationConfig"]["responseModalities"],
            json!(["AUDIO"])
        );
        // The default voice id is OpenAI's `alloy`: not a Gemini voice.
        assert_eq!(
            s["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            DEFAULT_VOICE
        );
        assert_eq!(
            s["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}]})
        );
        let vad = &s["realtimeInputConfig"]["automaticActivityDetection"];
        assert_eq!(vad["disabled"], false);
        assert_eq!(vad["startOfSpeechSensitivity"], "START_SENSITIVITY_HIGH");
        assert_eq!(vad["endOfSpeechSensitivity"], "END_SENSITIVITY_LOW");
        assert_eq!(vad["prefixPaddingMs"], VAD_PREFIX_PADDING_MS);
        assert_eq!(vad["silenceDurationMs"], VAD_SILENCE_DURATION_MS);
        assert_eq!(
            s["realtimeInputConfig"]["activityHandling"],
            "START_OF_ACTIVITY_INTERRUPTS"
        );
        assert_eq!(
            s["realtimeInputConfig"]["turnCoverage"],
            "TURN_INCLUDES_ONLY_ACTIVITY"
        );
        assert_eq!(s["inputAudioTranscription"], json!({}));
        assert_eq!(s["outputAudioTranscription"], json!({}));
        assert_eq!(s["sessionResumption"], json!({}));
        assert_eq!(
            s["contextWindowCompression"],
            json!({"triggerTokens": 25600, "slidingWindow": {"targetTokens": 12800}})
        );

        let declarations = &s["tools"][0]["functionDeclarations"];
        assert_eq!(
            declarations[0],
            json!({
                "name": "lookup_order",
                "description": "Find an order",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "id": { "type": "STRING", "description": "Order id" },
                        "items": { "type": "ARRAY", "items": { "type": "INTEGER" } },
                        "note": { "type": "STRING", "nullable": true },
                    },
                    "required": ["id"],
                },
            })
        );
        assert_eq!(declarations[1]["name"], "end_call");
        assert!(
            declarations[1].get("parameters").is_none(),
            "no empty OBJECT schema"
        );
        assert_eq!(declarations.as_array().unwrap().len(), 2);
    }

    #[test]
    fn setup_follows_the_agent_settings() {
        let mut agent = setup();
        agent.model = "models/gemini-2.5-flash-native-audio".into();
        agent.instructions = "  ".into();
        agent.settings.voice_id = "kore".into();
        agent.settings.vad_threshold = 0.8;
        agent.settings.interruption_enabled = false;
        agent.settings.transcription_enabled = false;
        agent.resume_handle = Some("CiQabc".into());
        // A tool of the same name as the built-in one is not declared twice.
        agent.tools.push(ToolSpec {
            name: "end_call".into(),
            description: "dup".into(),
            parameters: json!({"type": "object", "properties": {}}),
        });
        let s = parse(&setup_message(&agent))["setup"].clone();
        assert_eq!(s["model"], "models/gemini-2.5-flash-native-audio");
        assert!(s.get("systemInstruction").is_none());
        assert_eq!(
            s["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"],
            "Kore"
        );
        assert_eq!(
            s["realtimeInputConfig"]["automaticActivityDetection"]["startOfSpeechSensitivity"],
            "START_SENSITIVITY_LOW"
        );
        assert_eq!(
            s["realtimeInputConfig"]["activityHandling"],
            "NO_INTERRUPTION"
        );
        assert!(s.get("inputAudioTranscription").is_none());
        assert!(s.get("outputAudioTranscription").is_none());
        assert_eq!(s["sessionResumption"], json!({"handle": "CiQabc"}));
        let names: Vec<&str> = s["tools"][0]["functionDeclarations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["lookup_order", "end_call"]);
    }

    #[test]
    fn url_and_formats() {
        assert_eq!(
            connect_url(DEFAULT_BASE_URL, "AIza-key_1"),
            format!("{DEFAULT_BASE_URL}?key=AIza-key_1")
        );
        assert_eq!(
            connect_url("ws://127.0.0.1:9/ws?alt=json", "a b&c"),
            "ws://127.0.0.1:9/ws?alt=json&key=a%20b%26c"
        );
        assert_eq!(
            provider_format(),
            (
                AudioFormat::Pcm16 {
                    sample_rate_hz: 16_000
                },
                AudioFormat::Pcm16 {
                    sample_rate_hz: 24_000
                }
            )
        );
    }

    #[test]
    fn commands_become_client_messages() {
        let mut out = String::from("stale");
        assert!(write_command(
            &ProviderCommand::Audio(&[0xFF, 0xFF]),
            &mut out
        ));
        assert_eq!(
            out,
            r#"{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"//8="}}}"#
        );
        assert!(write_command(
            &ProviderCommand::Say {
                text: "Still there?"
            },
            &mut out
        ));
        let v = parse(&out);
        assert_eq!(v["clientContent"]["turnComplete"], true);
        assert_eq!(v["clientContent"]["turns"][0]["role"], "user");
        assert!(
            v["clientContent"]["turns"][0]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .ends_with("Still there?")
        );
        for silent in [
            ProviderCommand::Truncate {
                item_id: "gemini_turn_1",
                audio_end_ms: 300,
            },
            ProviderCommand::CancelResponse,
            ProviderCommand::Close,
        ] {
            out.push_str("stale");
            assert!(
                !write_command(&silent, &mut out),
                "{silent:?} sends nothing"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn greeting_tool_response_and_history() {
        let mut settings = CallSettings::default();
        let greet = parse(&greeting(&settings).unwrap());
        assert!(
            greet["clientContent"]["turns"][0]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("How can I help you today?")
        );
        settings.call_greeting = " ".into();
        assert!(greeting(&settings).is_none());

        assert_eq!(
            parse(&tool_response(
                "fc_1",
                "lookup_order",
                &json!({"status": "shipped"})
            )),
            json!({"toolResponse": {"functionResponses": [
                {"id": "fc_1", "name": "lookup_order", "response": {"status": "shipped"}}]}})
        );
        assert_eq!(
            parse(&tool_response("fc_2", "f", &json!("done")))["toolResponse"]["functionResponses"]
                [0]["response"],
            json!({"result": "done"})
        );

        let history = seed_history(&[
            (Role::System, "hidden".into()),
            (Role::User, "Where is my order?".into()),
            (Role::Assistant, "It shipped.".into()),
            (Role::User, "  ".into()),
        ])
        .unwrap();
        assert_eq!(
            parse(&history),
            json!({"clientContent": {"turns": [
                {"role": "user", "parts": [{"text": "Where is my order?"}]},
                {"role": "model", "parts": [{"text": "It shipped."}]}],
                "turnComplete": false}})
        );
        assert!(seed_history(&[(Role::System, "x".into())]).is_none());
    }

    fn events_of(d: &mut GeminiDecoder, frames: &[&str]) -> Vec<String> {
        let mut seen = Vec::new();
        for f in frames {
            d.handle_text(f, |e| seen.push(format!("{e:?}")));
        }
        seen
    }

    /// The item id inside a `{:?}` of an event.
    fn item_of(event: &str) -> String {
        let start = event.find("gemini_turn_").unwrap();
        let end = start + event[start..].find('"').unwrap();
        event[start..end].to_owned()
    }

    #[test]
    fn a_turn_maps_to_provider_events() {
        let mut d = GeminiDecoder::new("models/gemini-live-2.5-flash-preview");
        let seen = events_of(
            &mut d,
            &[
                r#"{"setupComplete":{"sessionId":"s-1"}}"#,
                r#"{"serverContent":{"inputTranscription":{"text":"where is"}}}"#,
                r#"{"serverContent":{"inputTranscription":{"text":" my order"}}}"#,
                r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQI="}},{"text":"thinking"}]}}}"#,
                r#"{"serverContent":{"outputTranscription":{"text":"It has"}}}"#,
                r#"{"serverContent":{"outputTranscription":{"text":" shipped. "}}}"#,
                r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AwQ="}}]}}}"#,
                r#"{"serverContent":{"generationComplete":true}}"#,
                r#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":1830,"responseTokenCount":210,"totalTokenCount":2040,"promptTokensDetails":[{"modality":"AUDIO","tokenCount":1500},{"modality":"TEXT","tokenCount":330}],"responseTokensDetails":[{"modality":"AUDIO","tokenCount":210}]}}"#,
            ],
        );
        assert_eq!(d.session_id(), Some("s-1"));
        assert_eq!(seen[0], "Connected");
        assert!(seen[1].contains(r#"role: User, text: "where is", is_final: false"#));
        assert!(seen[2].contains(r#"text: " my order", is_final: false"#));
        assert!(seen[3].starts_with("AudioDelta"), "{}", seen[3]);
        assert!(seen[3].ends_with("audio: [1, 2] }"), "{}", seen[3]);
        let turn = item_of(&seen[3]);
        assert!(seen[4].contains(r#"role: Assistant, text: "It has", is_final: false"#));
        assert_eq!(item_of(&seen[4]), turn);
        assert!(seen[6].starts_with("AudioDelta") && seen[6].ends_with("[3, 4] }"));
        assert_eq!(item_of(&seen[6]), turn);
        // turnComplete: both finals, the caller's first, then the usage.
        assert!(
            seen[7].contains(r#"role: User, text: "where is my order", is_final: true"#),
            "{}",
            seen[7]
        );
        assert!(
            seen[8].contains(r#"role: Assistant, text: "It has shipped.", is_final: true"#),
            "{}",
            seen[8]
        );
        assert_eq!(item_of(&seen[8]), turn);
        assert!(seen[9].starts_with(r#"Usage { model: "gemini-live-2.5-flash-preview""#));
        assert!(
            seen[9].contains("input_text_tokens: 330, input_audio_tokens: 1500, cached_input_tokens: 0, output_text_tokens: 0, output_audio_tokens: 210"),
            "{}",
            seen[9]
        );
        assert_eq!(seen.len(), 10);
        assert_eq!(d.malformed, 0);

        // The next turn gets a new id.
        let next = events_of(
            &mut d,
            &[
                r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQI="}}]}}}"#,
            ],
        );
        assert_ne!(item_of(&next[0]), turn);
    }

    #[test]
    fn interrupted_stops_the_turn_first_then_flushes_its_text() {
        let mut d = GeminiDecoder::new("m");
        let seen = events_of(
            &mut d,
            &[
                r#"{"serverContent":{"outputTranscription":{"text":"Let me"}}}"#,
                r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQI="}}]}}}"#,
                r#"{"serverContent":{"interrupted":true}}"#,
                r#"{"serverContent":{"inputTranscription":{"text":"wait","finished":true}}}"#,
                r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AQI="}}]}}}"#,
            ],
        );
        let first = item_of(&seen[0]);
        assert_eq!(item_of(&seen[1]), first);
        assert_eq!(seen[2], "Interrupted");
        assert!(
            seen[3].contains(r#"text: "Let me", is_final: true"#),
            "{}",
            seen[3]
        );
        assert_eq!(item_of(&seen[3]), first);
        assert!(seen[4].contains(r#"text: "wait", is_final: false"#));
        // `finished` closes the caller's transcript at once.
        assert!(seen[5].contains(r#"role: User, text: "wait", is_final: true"#));
        assert_ne!(item_of(&seen[6]), first, "a new turn after interrupted");
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn tool_calls_errors_and_binary_frames() {
        let mut d = GeminiDecoder::new("m");
        let mut seen = Vec::new();
        d.handle_binary(
            br#"{"toolCall":{"functionCalls":[{"id":"fc_1","name":"lookup_order","args":{"id":"42"}},{"id":"fc_2","name":"end_call"}]}}"#,
            |e| seen.push(format!("{e:?}")),
        );
        d.handle_text(
            r#"{"error":{"code":400,"message":"bad model","status":"INVALID_ARGUMENT"}}"#,
            |e| seen.push(format!("{e:?}")),
        );
        d.handle_text(r#"{"error":{"code":503,"message":"busy"}}"#, |e| {
            seen.push(format!("{e:?}"))
        });
        d.handle_text(r#"{"toolCallCancellation":{"ids":["fc_1"]}}"#, |e| {
            seen.push(format!("{e:?}"))
        });
        assert_eq!(
            seen,
            [
                r#"ToolCall { call_id: "fc_1", name: "lookup_order", arguments: "{\"id\":\"42\"}" }"#,
                r#"ToolCall { call_id: "fc_2", name: "end_call", arguments: "{}" }"#,
                r#"Error { fatal: true, code: "INVALID_ARGUMENT", message: "bad model" }"#,
                r#"Error { fatal: false, code: "503", message: "busy" }"#,
            ]
        );
        assert_eq!(d.malformed, 0);
    }

    #[test]
    fn closes_say_whether_resuming_can_help() {
        let mut d = GeminiDecoder::new("m");
        let mut seen = Vec::new();
        d.handle_close(Some(1000), "", |e| seen.push(format!("{e:?}")));
        d.handle_close(Some(1011), "Deadline expired", |e| {
            seen.push(format!("{e:?}"))
        });
        d.handle_close(Some(1008), "API key not valid", |e| {
            seen.push(format!("{e:?}"))
        });
        d.handle_close(None, "", |e| seen.push(format!("{e:?}")));
        assert_eq!(
            seen,
            [
                "Closed",
                r#"Error { fatal: false, code: "close_1011", message: "Deadline expired" }"#,
                "Closed",
                r#"Error { fatal: true, code: "close_1008", message: "API key not valid" }"#,
                "Closed",
                r#"Error { fatal: false, code: "connection_lost", message: "" }"#,
                "Closed",
            ]
        );
    }

    #[test]
    fn go_away_and_resumption_handles_are_kept_for_the_driver() {
        let mut d = GeminiDecoder::new("m");
        let seen = events_of(
            &mut d,
            &[
                r#"{"sessionResumptionUpdate":{"newHandle":"h1","resumable":true}}"#,
                // Mid-generation: not resumable, must not replace h1.
                r#"{"sessionResumptionUpdate":{"newHandle":"","resumable":false}}"#,
                r#"{"sessionResumptionUpdate":{"newHandle":"h-bad","resumable":false}}"#,
                r#"{"sessionResumptionUpdate":{}}"#,
            ],
        );
        assert!(seen.is_empty());
        assert_eq!(d.latest_resume_handle(), Some("h1"));
        assert_eq!(d.go_away(), None);
        assert_eq!(d.take_go_away(), None);

        events_of(&mut d, &[r#"{"goAway":{"timeLeft":"9.5s"}}"#]);
        assert_eq!(d.go_away(), Some(Duration::from_millis(9500)));
        assert_eq!(d.take_go_away(), Some(Duration::from_millis(9500)));
        assert_eq!(d.take_go_away(), None, "once per goAway");
        assert_eq!(d.go_away(), Some(Duration::from_millis(9500)));

        events_of(
            &mut d,
            &[r#"{"goAway":{"timeLeft":{"seconds":3,"nanos":0}}}"#],
        );
        assert_eq!(d.take_go_away(), Some(Duration::from_secs(3)));
        events_of(&mut d, &[r#"{"goAway":{}}"#]);
        assert_eq!(d.take_go_away(), Some(Duration::ZERO));
        events_of(
            &mut d,
            &[r#"{"sessionResumptionUpdate":{"newHandle":"h2","resumable":true}}"#],
        );
        assert_eq!(d.latest_resume_handle(), Some("h2"));
    }

    #[test]
    fn usage_without_details_counts_as_audio() {
        let mut d = GeminiDecoder::new("m");
        let seen = events_of(
            &mut d,
            &[
                r#"{"usageMetadata":{"promptTokenCount":100,"responseTokenCount":20,"cachedContentTokenCount":30,"toolUsePromptTokenCount":7,"thoughtsTokenCount":5}}"#,
                r#"{"usageMetadata":{}}"#,
            ],
        );
        assert_eq!(seen.len(), 1, "an all-zero usage is not reported");
        assert!(
            seen[0].contains("input_text_tokens: 7, input_audio_tokens: 100, cached_input_tokens: 30, output_text_tokens: 5, output_audio_tokens: 20"),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = GeminiDecoder::new("m");
        let mut n = 0;
        for f in [
            "not json",
            "{}",
            "[]",
            "null",
            r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"@@@"}}]}}}"#,
            r#"{"serverContent":{"turnComplete":"yes"}}"#,
            r#"{"toolCall":{"functionCalls":[{"id":"x"}]}}"#,
            r#"{"usageMetadata":{"promptTokenCount":-1}}"#,
        ] {
            d.handle_text(f, |_| n += 1);
        }
        d.handle_binary(&[0xFF, 0xFE, 0x00], |_| n += 1);
        assert_eq!(n, 0);
        assert_eq!(d.malformed, 9);
        // Unknown fields are the protocol growing, not garbage.
        d.handle_text(r#"{"voiceActivity":{"type":"ACTIVITY_START"}}"#, |_| n += 1);
        d.handle_text(
            r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}}}"#,
            |_| n += 1,
        );
        assert_eq!(n, 0);
        assert_eq!(d.malformed, 9);
    }
}
