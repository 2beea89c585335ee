//! The provider side of a call, provider-neutral (ARCHITECTURE.md §4).
//!
//! Each provider adapter (OpenAI Realtime, Gemini Live, ElevenLabs, Deepgram) translates
//! its wire events into [`ProviderEvent`] and turns [`ProviderCommand`] into its own
//! messages; the session never sees provider JSON. Both borrow their payloads so an
//! adapter can hand over a decoded audio delta without copying it, and the session can
//! hand out its buffers without allocating.
//!
//! Barge-in signals differ per provider (protocols.md §8): OpenAI and Deepgram report the
//! caller starting to speak ([`ProviderEvent::SpeechStarted`]), Gemini and ElevenLabs
//! report that they stopped talking ([`ProviderEvent::Interrupted`]). The session treats
//! both the same way.

use vocalized_shared::events::{Role, Usage};

/// Something the provider did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProviderEvent<'a> {
    /// The provider session is set up and ready for audio.
    Connected,
    /// Agent audio in the provider's output format. `item_id` names the agent turn
    /// (OpenAI `item_id`; adapters without one make one up per response).
    AudioDelta { item_id: &'a str, audio: &'a [u8] },
    /// The provider's VAD heard the caller start speaking.
    SpeechStarted,
    /// The provider stopped its own output because the caller spoke.
    Interrupted,
    /// A transcript of either side. Only final ones are recorded; partial ones still
    /// count as caller speech.
    Transcript {
        role: Role,
        text: &'a str,
        is_final: bool,
        /// The agent turn an assistant transcript belongs to, when the provider says.
        item_id: Option<&'a str>,
        confidence: Option<f64>,
    },
    /// The agent wants a tool run. `end_call` ends the call.
    ToolCall {
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    /// Counts to bill, as the provider reported them.
    Usage { model: &'a str, usage: &'a Usage },
    /// An error event; `fatal` when the provider session cannot go on.
    Error {
        fatal: bool,
        code: &'a str,
        message: &'a str,
    },
    /// The provider connection closed.
    Closed,
}

/// Something the provider adapter must send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderCommand<'a> {
    /// Caller audio in the provider's input format.
    Audio(&'a [u8]),
    /// Cut the agent turn to what the caller heard (OpenAI `conversation.item.truncate`;
    /// adapters for providers that cut their own output may ignore it).
    Truncate { item_id: &'a str, audio_end_ms: u64 },
    /// Stop the response in progress (only sent when the provider does not cancel on
    /// its own speech detection; see `SessionConfig::cancel_response_on_barge_in`).
    CancelResponse,
    /// Make the agent say this (limits' prompts such as "Are you still there?").
    Say { text: &'a str },
    /// Close the provider session; the call is over.
    Close,
}
