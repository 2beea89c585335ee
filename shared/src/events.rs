//! Call events: what the media plane tells the control plane about a call.
//!
//! Each carries a per-call sequence number that increases monotonically, so the control
//! plane can apply events idempotently (at-least-once delivery) and in order.

use serde::{Deserialize, Serialize};

/// Who spoke a transcript turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    System,
}

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum EndReason {
    /// The caller hung up (Twilio `stop`, WebRTC hang-up).
    CallerHangup,
    /// The caller said an end-call phrase, or the agent used its end_call tool.
    EndCallPhrase,
    AgentEndedCall,
    MaxDuration,
    SilenceTimeout,
    UsageLimit,
    /// A browser caller's connection never came up (ICE or DTLS failed, or it timed out).
    NotConnected,
    /// The provider failed and nothing could take over.
    ProviderError {
        code: String,
    },
}

/// Token and audio counts a provider reported, to be priced by the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_text_tokens: u64,
    pub input_audio_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_text_tokens: u64,
    pub output_audio_tokens: u64,
    /// Seconds of audio billed by duration (e.g. transcription, per-second providers), in ms.
    pub audio_input_ms: u64,
    pub audio_output_ms: u64,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CallEventKind {
    Answered,
    ProviderConnected {
        provider: String,
    },
    /// The first agent audio reached the caller leg; `ttfa_ms` counts from answer.
    ProviderAudioStarted {
        ttfa_ms: u64,
    },
    BargeIn {
        item_id: String,
        heard_ms: u64,
    },
    Dtmf {
        digit: String,
    },
    Transcript {
        role: Role,
        text: String,
        start_ms: u64,
        end_ms: u64,
        confidence: Option<f64>,
        /// The caller barged in: the agent's turn was cut off at `end_ms`, so the caller
        /// heard only part of `text` (providers report the full generated text).
        #[serde(default, skip_serializing_if = "is_false")]
        truncated: bool,
    },
    ToolCall {
        name: String,
        arguments: String,
    },
    Usage {
        provider: String,
        model: String,
        usage: Usage,
    },
    Failover {
        from: String,
        to: String,
        reason: String,
    },
    Warning {
        code: String,
        message: String,
    },
    Error {
        code: String,
        message: String,
    },
    Ended(EndReason),
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One event of one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// 1, 2, 3, ... within the call.
    pub seq: u64,
    /// Milliseconds since the call was answered.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: CallEventKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_flatten_their_kind_and_omit_an_untruncated_flag() {
        let event = CallEvent {
            seq: 3,
            at_ms: 1200,
            kind: CallEventKind::Transcript {
                role: Role::Assistant,
                text: "Hello".into(),
                start_ms: 100,
                end_ms: 900,
                confidence: None,
                truncated: false,
            },
        };
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["type"], "transcript");
        assert_eq!(v["seq"], 3);
        assert!(v.get("truncated").is_none());
        let back: CallEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);

        let ended = serde_json::to_value(CallEvent {
            seq: 4,
            at_ms: 2000,
            kind: CallEventKind::Ended(EndReason::SilenceTimeout),
        })
        .unwrap();
        assert_eq!(ended["type"], "ended");
        assert_eq!(ended["reason"], "silence_timeout");
    }
}
