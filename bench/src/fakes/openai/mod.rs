//! A fake OpenAI Realtime server speaking the GA WebSocket protocol (protocols.md §2).
//!
//! - `session.rs`: one session as a sans-IO state machine (events in, events out).
//! - `vad.rs`: the energy VAD standing in for server VAD, on the input-audio clock.
//! - `events.rs`: server event builders in the exact GA shapes.
//! - `server.rs`: the tokio driver: [`FakeOpenAi`] binds 127.0.0.1:0, upgrades any path,
//!   and records every session in a [`SessionRecord`].

mod events;
mod server;
mod session;
pub mod vad;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use server::FakeOpenAi;
pub use session::{Output, Session};
pub use vad::VadConfig;

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer the upgrade with this HTTP status instead of 101.
    RefuseHandshake(u16),
    /// Accept the upgrade, then never send anything (client events are still recorded).
    Stall,
    /// After `responses` responses have completed (0: right after `session.created`), send
    /// a `server_error` event; if `fatal`, then close the socket with code 1011.
    ErrorAfter { responses: u32, fatal: bool },
    /// Run `responses` responses normally, then cut the TCP connection (no close frame)
    /// halfway through the next one's audio.
    DropAfter { responses: u32 },
    /// Run `responses` responses normally, then, halfway through the next one's audio,
    /// send the start of a frame and never the rest: the socket stays open, nothing more
    /// is read or written (a wedged server).
    StallMidFrame { responses: u32 },
    /// Behave, but send garbage before every event: a frame that is not JSON, a binary
    /// frame, an event of an unknown type, and an audio delta that is not base64.
    Garbage,
}

/// The token counts reported in every `response.done` (protocols.md §2.4 shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_text_tokens: u64,
    pub input_audio_tokens: u64,
    /// Subset of `input_text_tokens`.
    pub cached_text_tokens: u64,
    /// Subset of `input_audio_tokens`.
    pub cached_audio_tokens: u64,
    pub output_text_tokens: u64,
    pub output_audio_tokens: u64,
}

impl Default for Usage {
    /// The numbers of the example in protocols.md §2.4.
    fn default() -> Self {
        Self {
            input_text_tokens: 420,
            input_audio_tokens: 900,
            cached_text_tokens: 400,
            cached_audio_tokens: 240,
            output_text_tokens: 40,
            output_audio_tokens: 160,
        }
    }
}

/// Everything a test can tune about the fake.
#[derive(Debug, Clone)]
pub struct OpenAiBehaviour {
    /// Transcripts of the caller's turns, in order (cycled).
    pub caller_lines: Vec<String>,
    /// Transcripts of the agent's replies, in order (cycled). Reply 1 is often a greeting
    /// asked for with `response.create`.
    pub agent_lines: Vec<String>,
    /// The µ-law 8 kHz audio of every reply. Use [`OpenAiBehaviour::with_agent_audio_ms`]
    /// to change its length.
    pub agent_audio: Arc<[u8]>,
    /// Bytes per `response.output_audio.delta` (800 = 100 ms).
    pub delta_bytes: usize,
    /// Delay between a response starting and its first delta.
    pub response_delay_ms: u64,
    /// Up to this much more delay before the first delta, drawn uniformly per response
    /// (0: none). Real replies start at any moment; a bench whose replies all start in
    /// step with the caller's 20 ms clock would meet the gateway's 20 ms playout ticks at
    /// one fixed phase and measure that phase, not the gateway.
    pub response_jitter_ms: u64,
    /// Delay between deltas; 0 sends the whole reply at once (the real API also sends
    /// faster than real time).
    pub delta_interval_ms: u64,
    pub vad: VadConfig,
    pub usage: Usage,
    pub failure: Option<Failure>,
}

impl Default for OpenAiBehaviour {
    fn default() -> Self {
        Self {
            caller_lines: vec!["Hello, I would like to check my order.".into()],
            agent_lines: vec!["Sure, what is your order number?".into()],
            agent_audio: crate::audio::agent_reply_ms(1500).into(),
            delta_bytes: 800,
            response_delay_ms: 0,
            response_jitter_ms: 0,
            delta_interval_ms: 0,
            vad: VadConfig::default(),
            usage: Usage::default(),
            failure: None,
        }
    }
}

impl OpenAiBehaviour {
    /// The default reply audio cut or looped to `ms`.
    pub fn with_agent_audio_ms(mut self, ms: u32) -> Self {
        self.agent_audio = crate::audio::agent_reply_ms(ms).into();
        self
    }

    pub fn with_failure(mut self, failure: Failure) -> Self {
        self.failure = Some(failure);
        self
    }
}

/// A `conversation.item.truncate` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub item_id: String,
    pub content_index: u64,
    pub audio_end_ms: u64,
}

/// What one WebSocket session saw and did.
#[derive(Debug, Clone, Default)]
pub struct SessionRecord {
    /// The `Authorization` header of the upgrade request.
    pub authorization: Option<String>,
    /// Request path and query string, e.g. `/v1/realtime` and `model=gpt-realtime`.
    pub path: String,
    pub query: Option<String>,
    /// The `model` query parameter.
    pub model: Option<String>,
    /// Every other header of the upgrade, lowercased names (e.g. to spot `openai-beta`).
    pub headers: BTreeMap<String, String>,
    /// Client events by type, in order, except `input_audio_buffer.append` (counted only).
    pub events: Vec<String>,
    /// Client events counted by type, appends included.
    pub event_counts: BTreeMap<String, u64>,
    /// Every `session.update`'s `session` payload.
    pub session_updates: Vec<Value>,
    pub truncates: Vec<Truncate>,
    /// Every `conversation.item.create`'s `item`.
    pub item_creates: Vec<Value>,
    /// Every `response.create`'s `response` (or null).
    pub response_creates: Vec<Value>,
    /// Decoded bytes received through `input_audio_buffer.append`.
    pub audio_bytes_in: u64,
    /// Agent audio bytes sent in deltas.
    pub audio_bytes_out: u64,
    pub speech_started: u32,
    pub responses_started: u32,
    pub responses_completed: u32,
    pub responses_cancelled: u32,
    /// `error` events sent because of bad client input.
    pub errors_sent: u32,
    /// The socket is gone (either side closed it).
    pub closed: bool,
}

impl SessionRecord {
    /// How many client events of `kind` arrived.
    pub fn count(&self, kind: &str) -> u64 {
        self.event_counts.get(kind).copied().unwrap_or(0)
    }
}
