//! Protocol-faithful stand-ins for the outside world. Each speaks the real wire format
//! byte for byte (protocols.md), records what the gateway did, and can be told to fail.
//!
//! - [`elevenlabs`]: ElevenLabs Agents (protocols.md §4): pings, interruptions, client tools.
//! - [`deepgram`]: Deepgram Voice Agent (protocols.md §5): Welcome/Settings, binary audio.

pub mod deepgram;
pub mod elevenlabs;
pub mod gemini;
pub mod openai;
pub mod twilio;

/// WebSocket settings for every fake's server side: a 4 KiB read buffer, as the gateway
/// uses. tungstenite zeroes all of its default 128 KiB on every read, which made the
/// fakes spend CPU per 20 ms frame that the gateway they share two cores with needs.
pub(crate) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

/// A random lowercase hex string of `len` characters, for ids such as `item_…` and `CA…`.
/// Not cryptographic: ids only need to be unique within a test run.
pub(crate) fn random_hex(len: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // splitmix64: cheap and well mixed, so consecutive counters give unrelated ids.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push_str(&format!("{z:016x}"));
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_have_the_length_asked_and_differ() {
        let a = super::random_hex(32);
        let b = super::random_hex(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
