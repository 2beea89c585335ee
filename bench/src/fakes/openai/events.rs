//! Server events in the exact GA shapes of protocols.md §2.4. Builders only: the session
//! decides when to send what.

use serde_json::{Value, json};

use super::Usage;
use crate::fakes::random_hex;

pub fn event_id() -> String {
    format!("event_{}", random_hex(22))
}

/// The default configuration a fresh GA session reports in `session.created`.
pub fn default_session(model: &str) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": format!("sess_{}", random_hex(22)),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "prompt": null,
        "expires_at": 0,
        "include": null,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": {
                    "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                    "silence_duration_ms": 200, "idle_timeout_ms": null,
                    "create_response": true, "interrupt_response": true
                }
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0
            }
        }
    })
}

pub fn session_created(session: &Value) -> Value {
    json!({"type": "session.created", "event_id": event_id(), "session": session})
}

pub fn session_updated(session: &Value) -> Value {
    json!({"type": "session.updated", "event_id": event_id(), "session": session})
}

/// The `error` event (most errors are recoverable; the session stays open).
pub fn error(
    kind: &str,
    code: &str,
    message: &str,
    param: Option<&str>,
    client_event_id: Option<&str>,
) -> Value {
    json!({
        "type": "error",
        "event_id": event_id(),
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        }
    })
}

pub fn speech_started(audio_start_ms: u64, item_id: &str) -> Value {
    json!({"type": "input_audio_buffer.speech_started", "event_id": event_id(),
           "audio_start_ms": audio_start_ms, "item_id": item_id})
}

pub fn speech_stopped(audio_end_ms: u64, item_id: &str) -> Value {
    json!({"type": "input_audio_buffer.speech_stopped", "event_id": event_id(),
           "audio_end_ms": audio_end_ms, "item_id": item_id})
}

pub fn committed(item_id: &str, previous_item_id: Option<&str>) -> Value {
    json!({"type": "input_audio_buffer.committed", "event_id": event_id(),
           "previous_item_id": previous_item_id, "item_id": item_id})
}

pub fn cleared() -> Value {
    json!({"type": "input_audio_buffer.cleared", "event_id": event_id()})
}

pub fn transcription_completed(item_id: &str, transcript: &str, seconds: f64) -> Value {
    json!({"type": "conversation.item.input_audio_transcription.completed",
           "event_id": event_id(), "item_id": item_id, "content_index": 0,
           "transcript": transcript, "logprobs": null,
           "usage": {"type": "duration", "seconds": seconds}})
}

pub fn item_added(item: &Value, previous_item_id: Option<&str>) -> Value {
    json!({"type": "conversation.item.added", "event_id": event_id(),
           "previous_item_id": previous_item_id, "item": item})
}

pub fn item_done(item: &Value, previous_item_id: Option<&str>) -> Value {
    json!({"type": "conversation.item.done", "event_id": event_id(),
           "previous_item_id": previous_item_id, "item": item})
}

pub fn item_truncated(item_id: &str, content_index: u64, audio_end_ms: u64) -> Value {
    json!({"type": "conversation.item.truncated", "event_id": event_id(),
           "item_id": item_id, "content_index": content_index, "audio_end_ms": audio_end_ms})
}

/// The assistant message item of a response, as it appears in `output_item.*` and
/// `response.done.output`.
pub fn assistant_item(item_id: &str, status: &str, transcript: Option<&str>) -> Value {
    let content = match transcript {
        Some(t) => json!([{"type": "output_audio", "transcript": t}]),
        None => json!([]),
    };
    json!({"id": item_id, "object": "realtime.item", "type": "message", "status": status,
           "role": "assistant", "content": content})
}

pub fn response_object(
    response_id: &str,
    status: &str,
    reason: Option<&str>,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let status_details = match (status, reason) {
        ("cancelled", Some(reason)) => json!({"type": "cancelled", "reason": reason}),
        (_, Some(reason)) => json!({"type": status, "reason": reason}),
        _ => Value::Null,
    };
    json!({
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_fake",
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
        "usage": usage.map(usage_json),
        "metadata": null,
    })
}

/// `response.usage` exactly as GA reports it: cached tokens are a subset of input tokens.
pub fn usage_json(u: &Usage) -> Value {
    let input = u.input_text_tokens + u.input_audio_tokens;
    let output = u.output_text_tokens + u.output_audio_tokens;
    json!({
        "total_tokens": input + output,
        "input_tokens": input,
        "output_tokens": output,
        "input_token_details": {
            "text_tokens": u.input_text_tokens,
            "audio_tokens": u.input_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": u.cached_text_tokens + u.cached_audio_tokens,
            "cached_tokens_details": {
                "text_tokens": u.cached_text_tokens,
                "audio_tokens": u.cached_audio_tokens,
                "image_tokens": 0
            }
        },
        "output_token_details": {
            "text_tokens": u.output_text_tokens,
            "audio_tokens": u.output_audio_tokens
        }
    })
}

pub fn response_created(response: &Value) -> Value {
    json!({"type": "response.created", "event_id": event_id(), "response": response})
}

pub fn response_done(response: &Value) -> Value {
    json!({"type": "response.done", "event_id": event_id(), "response": response})
}

pub fn rate_limits_updated() -> Value {
    json!({"type": "rate_limits.updated", "event_id": event_id(), "rate_limits": [
        {"name": "requests", "limit": 1000, "remaining": 999, "reset_seconds": 60},
        {"name": "tokens", "limit": 50000, "remaining": 47000, "reset_seconds": 3.6}
    ]})
}

pub fn output_item_added(response_id: &str, item: &Value) -> Value {
    json!({"type": "response.output_item.added", "event_id": event_id(),
           "response_id": response_id, "output_index": 0, "item": item})
}

pub fn output_item_done(response_id: &str, item: &Value) -> Value {
    json!({"type": "response.output_item.done", "event_id": event_id(),
           "response_id": response_id, "output_index": 0, "item": item})
}

pub fn content_part(kind: &str, response_id: &str, item_id: &str, transcript: &str) -> Value {
    json!({"type": kind, "event_id": event_id(), "response_id": response_id,
           "item_id": item_id, "output_index": 0, "content_index": 0,
           "part": {"type": "audio", "transcript": transcript}})
}

pub fn audio_delta(response_id: &str, item_id: &str, b64: &str) -> Value {
    json!({"type": "response.output_audio.delta", "event_id": event_id(),
           "response_id": response_id, "item_id": item_id,
           "output_index": 0, "content_index": 0, "delta": b64})
}

pub fn audio_done(response_id: &str, item_id: &str) -> Value {
    json!({"type": "response.output_audio.done", "event_id": event_id(),
           "response_id": response_id, "item_id": item_id,
           "output_index": 0, "content_index": 0})
}

pub fn transcript_delta(response_id: &str, item_id: &str, delta: &str) -> Value {
    json!({"type": "response.output_audio_transcript.delta", "event_id": event_id(),
           "response_id": response_id, "item_id": item_id,
           "output_index": 0, "content_index": 0, "delta": delta})
}

pub fn transcript_done(response_id: &str, item_id: &str, transcript: &str) -> Value {
    json!({"type": "response.output_audio_transcript.done", "event_id": event_id(),
           "response_id": response_id, "item_id": item_id,
           "output_index": 0, "content_index": 0, "transcript": transcript})
}
