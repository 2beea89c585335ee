//! What the session hands back through `poll_output`.
//!
//! Outputs borrow the session's buffers (audio, the current mark name), so draining a
//! frame's outputs allocates nothing. Internally the queue holds [`Pending`] entries
//! that point into those buffers by range; the buffers are cleared once the queue has
//! been drained, which is why a borrowed output is valid until the next `poll_output`.

use super::marks::ItemKey;
use super::provider::ProviderCommand;
use crate::core::wire::twilio;
use std::borrow::Cow;
use std::ops::Range;
use vocalized_shared::events::CallEvent;

/// One thing for the driver to do.
#[derive(Debug, PartialEq)]
pub enum Output<'a> {
    /// Send to the caller leg.
    Caller(CallerOutput<'a>),
    /// Send to the provider.
    Provider(ProviderCommand<'a>),
    /// Hand to the control plane (through the driver's bounded event channel).
    Event(CallEvent),
}

/// Something for the caller leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerOutput<'a> {
    /// A Twilio message: write it with [`twilio::Outbound::write_json`] and send it as a
    /// text frame.
    Twilio(twilio::Outbound<'a>),
    /// Agent audio for a WebRTC caller: PCM16 at 48 kHz for the pacer and Opus encoder.
    WebAudio(&'a [i16]),
    /// Barge-in on a WebRTC caller: flush the pacer's queued audio.
    WebFlush,
    /// The call is over: close the caller leg (for Twilio, closing the WebSocket hangs up
    /// since nothing follows `<Connect>`).
    Hangup,
}

/// A queued output, owning nothing per frame: audio is a range into a session buffer.
#[derive(Debug)]
pub(crate) enum Pending {
    /// Nothing is lent out.
    Idle,
    /// Agent audio: a range of `caller_bytes` (Twilio) or `caller_samples` (WebRTC).
    CallerAudio(Range<usize>),
    CallerMark {
        seq: u64,
        item: ItemKey,
    },
    CallerClear,
    CallerHangup,
    /// Caller audio: a range of `provider_bytes`.
    ProviderAudio(Range<usize>),
    Truncate {
        item_id: String,
        audio_end_ms: u64,
    },
    CancelResponse,
    Say(Cow<'static, str>),
    ProviderClose,
    Event(CallEvent),
}

impl Pending {
    /// Agent audio on its way to the caller: dropped on barge-in.
    pub fn is_agent_audio(&self) -> bool {
        matches!(self, Pending::CallerAudio(_) | Pending::CallerMark { .. })
    }
}
