//! A fake Gemini Live server speaking `BidiGenerateContent` over WebSocket
//! (protocols.md §3), written from the protocol notes, not from the gateway's adapter.
//!
//! - `session.rs`: one session as a sans-IO state machine (client frames and the time in,
//!   server messages out, `poll_timeout` for paced audio and scripted failures).
//! - `messages.rs`: server message builders in the exact §3.4 shapes, and the checks the
//!   real server makes on `setup` (unknown fields and bad enums close the socket, 1007).
//! - `pcm.rs`: PCM16 helpers: the caller's 16 kHz input, the agent's 24 kHz output.
//! - `server.rs`: the tokio driver: [`FakeGemini`] binds 127.0.0.1:0, upgrades any path,
//!   and records every session in a [`SessionRecord`].
//!
//! The caller's speech is found by the OpenAI fake's energy VAD ([`VadConfig`]) on the
//! input-audio clock, tuned by the setup's `silenceDurationMs` and `prefixPaddingMs`.

mod messages;
pub mod pcm;
mod server;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

pub use super::openai::VadConfig;
pub use server::{FakeGemini, GeminiHandle};
pub use session::{Output, Session};

/// The path of Google's endpoint (protocols.md §3.1); the fake accepts any path.
pub const PATH: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer the upgrade with this HTTP status instead of 101.
    RefuseHandshake(u16),
    /// Send `setupComplete`, then close at once with this code (1011: internal error).
    CloseAfterSetup { code: u16 },
    /// Cut the TCP connection (no close frame) this long after `setupComplete`.
    DieAfterMs(u64),
    /// Send `goAway` with `time_left_ms` this long after `setupComplete`, then close with
    /// 1000 once the time is up, as a connection reaching its ~10-minute limit (§3.5).
    GoAwayAfterMs { after_ms: u64, time_left_ms: u64 },
}

/// The token counts reported in every `usageMetadata` (protocols.md §3.4 example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_audio_tokens: u64,
    pub prompt_text_tokens: u64,
    pub response_audio_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            prompt_audio_tokens: 1500,
            prompt_text_tokens: 330,
            response_audio_tokens: 210,
        }
    }
}

/// A function call the model makes instead of its `reply`-th reply (1-based). The reply
/// is spoken once the client sends the matching `toolResponse`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedToolCall {
    pub reply: u32,
    pub name: String,
    pub args: Value,
}

/// Everything a test can tune about the fake.
#[derive(Debug, Clone)]
pub struct GeminiBehaviour {
    /// Input transcriptions of the caller's turns, in order (cycled).
    pub caller_lines: Vec<String>,
    /// Output transcriptions of the agent's replies, in order (cycled).
    pub agent_lines: Vec<String>,
    /// PCM16 LE 24 kHz audio of every reply; see [`GeminiBehaviour::with_agent_audio_ms`].
    pub agent_audio: Arc<[u8]>,
    /// Milliseconds of audio per `modelTurn` message.
    pub chunk_ms: u32,
    /// Delay between the caller's turn ending and the first audio.
    pub response_delay_ms: u64,
    /// Delay between audio messages; 0 sends a reply at once (Gemini, too, sends faster
    /// than real time).
    pub chunk_interval_ms: u64,
    /// Delay between `setup` and `setupComplete`.
    pub setup_delay_ms: u64,
    /// When set, a different `key` closes the session with 1008 after the upgrade.
    pub api_key: Option<String>,
    /// Send every server message as a binary frame of UTF-8 JSON (§3.4: it happens).
    pub binary_frames: bool,
    pub vad: VadConfig,
    pub usage: Usage,
    pub tool_call: Option<ScriptedToolCall>,
    pub failure: Option<Failure>,
}

impl Default for GeminiBehaviour {
    fn default() -> Self {
        Self {
            caller_lines: vec!["Hello, I would like to check my order.".into()],
            agent_lines: vec!["Sure, what is your order number?".into()],
            agent_audio: pcm::agent_reply_24k(1500).into(),
            chunk_ms: 40,
            response_delay_ms: 0,
            chunk_interval_ms: 0,
            setup_delay_ms: 0,
            api_key: None,
            binary_frames: false,
            vad: VadConfig::default(),
            usage: Usage::default(),
            tool_call: None,
            failure: None,
        }
    }
}

impl GeminiBehaviour {
    /// The default reply audio cut or looped to `ms`.
    pub fn with_agent_audio_ms(mut self, ms: u32) -> Self {
        self.agent_audio = pcm::agent_reply_24k(ms).into();
        self
    }

    pub fn with_failure(mut self, failure: Failure) -> Self {
        self.failure = Some(failure);
        self
    }
}

/// What one WebSocket session saw and did.
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    /// Request path and query string of the upgrade.
    pub path: String,
    pub query: Option<String>,
    /// The `key` query parameter (§3.1).
    pub key: Option<String>,
    /// The `x-goog-api-key` header (the SDK's way, §3.1).
    pub api_key_header: Option<String>,
    /// Every header of the upgrade, lowercased names.
    pub headers: BTreeMap<String, String>,
    /// The `setup` payload, as sent.
    pub setup: Option<Value>,
    /// `sessionResumption.handle` of the setup, when it resumed a session.
    pub resumed_from: Option<String>,
    /// Client messages by kind (`setup`, `clientContent`, `realtimeInput.text`,
    /// `realtimeInput.audioStreamEnd`, `toolResponse`, …) in order, audio left out.
    pub messages: Vec<String>,
    /// Client messages counted by kind, audio (`realtimeInput.audio`) included.
    pub counts: BTreeMap<String, u64>,
    /// Decoded bytes of `realtimeInput.audio`.
    pub audio_bytes_in: u64,
    /// Each `realtimeInput.audio` as it arrived: when, and `audio_bytes_in` after it
    /// (the bench times caller frames by position with these).
    pub audio_in: Vec<(Instant, u64)>,
    /// Every distinct audio `mimeType` received.
    pub audio_mime_types: Vec<String>,
    /// Every `clientContent` turn (`{"role", "parts"}`), in order.
    pub client_turns: Vec<Value>,
    /// `clientContent` messages with `turnComplete: true`.
    pub client_turn_completes: u32,
    /// Every `realtimeInput.text`.
    pub texts: Vec<String>,
    /// Every function response of every `toolResponse`.
    pub tool_responses: Vec<Value>,
    /// Client messages sent before `setupComplete` (the protocol forbids them).
    pub early_messages: u32,
    pub speech_started: u32,
    pub turns_started: u32,
    pub turns_completed: u32,
    pub interruptions: u32,
    /// Agent audio bytes sent.
    pub audio_bytes_out: u64,
    /// When each agent audio chunk was sent.
    pub audio_out: Vec<Instant>,
    pub go_away_sent: bool,
    /// Resumable handles handed out, in order.
    pub handles_issued: Vec<String>,
    /// The close code the fake sent, and why.
    pub close_sent: Option<(u16, String)>,
    /// The socket is gone (either side closed it).
    pub closed: bool,
}

impl SessionRecord {
    /// How many client messages of `kind` arrived.
    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }
}
