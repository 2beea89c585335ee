//! Audio formats spoken by callers and providers (reference: protocols.md §6).

use serde::{Deserialize, Serialize};

/// The encoding and rate of one leg of a call. Always mono.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum AudioFormat {
    /// G.711 µ-law, 8 kHz (Twilio Media Streams, OpenAI `audio/pcmu`).
    Mulaw8k,
    /// G.711 A-law, 8 kHz (OpenAI `audio/pcma`).
    Alaw8k,
    /// Signed 16-bit little-endian PCM at the given rate.
    Pcm16 { sample_rate_hz: u32 },
    /// Opus at 48 kHz, 20 ms frames (WebRTC).
    Opus48k,
}

impl AudioFormat {
    /// The sample rate of the decoded signal.
    pub fn sample_rate_hz(self) -> u32 {
        match self {
            AudioFormat::Mulaw8k | AudioFormat::Alaw8k => 8_000,
            AudioFormat::Pcm16 { sample_rate_hz } => sample_rate_hz,
            AudioFormat::Opus48k => 48_000,
        }
    }

    /// Encoded bytes per millisecond, for formats with a constant bit rate.
    /// `None` for Opus, whose packets vary in size.
    pub fn bytes_per_ms(self) -> Option<u32> {
        match self {
            AudioFormat::Mulaw8k | AudioFormat::Alaw8k => Some(8),
            AudioFormat::Pcm16 { sample_rate_hz } => Some(sample_rate_hz / 1000 * 2),
            AudioFormat::Opus48k => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_arithmetic_matches_the_reference_table() {
        assert_eq!(AudioFormat::Mulaw8k.bytes_per_ms(), Some(8));
        assert_eq!(
            AudioFormat::Pcm16 {
                sample_rate_hz: 24_000
            }
            .bytes_per_ms(),
            Some(48)
        );
        assert_eq!(
            AudioFormat::Pcm16 {
                sample_rate_hz: 16_000
            }
            .bytes_per_ms(),
            Some(32)
        );
        assert_eq!(AudioFormat::Opus48k.bytes_per_ms(), None);
        assert_eq!(AudioFormat::Opus48k.sample_rate_hz(), 48_000);
    }
}
