//! PCM16 LE mono helpers for Gemini's rates: callers send 16 kHz, the agent speaks 24 kHz
//! (protocols.md §3.3, §3.4). The test audio of [`crate::audio`] is µ-law 8 kHz; these
//! turn it into what Gemini sees, by linear interpolation (test material, not hi-fi).

use vocalized_media::core::g711::ulaw_to_pcm;

/// Samples as little-endian bytes.
pub fn to_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Little-endian bytes as samples; an odd last byte is dropped.
pub fn from_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// `samples` at `factor` times the rate, interpolating between neighbours.
pub fn upsample(samples: &[i16], factor: usize) -> Vec<i16> {
    let factor = factor.max(1);
    let mut out = Vec::with_capacity(samples.len() * factor);
    for (i, &a) in samples.iter().enumerate() {
        let b = samples.get(i + 1).copied().unwrap_or(a);
        for k in 0..factor {
            let t = k as f32 / factor as f32;
            out.push((f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as i16);
        }
    }
    out
}

/// µ-law 8 kHz test audio as the PCM16 16 kHz bytes a gateway sends Gemini.
pub fn pcm16k_from_ulaw(ulaw: &[u8]) -> Vec<u8> {
    let mut pcm = Vec::with_capacity(ulaw.len());
    ulaw_to_pcm(ulaw, &mut pcm);
    to_bytes(&upsample(&pcm, 2))
}

/// µ-law 8 kHz test audio as PCM16 24 kHz bytes.
pub fn pcm24k_from_ulaw(ulaw: &[u8]) -> Vec<u8> {
    let mut pcm = Vec::with_capacity(ulaw.len());
    ulaw_to_pcm(ulaw, &mut pcm);
    to_bytes(&upsample(&pcm, 3))
}

/// The agent reply clip ([`crate::audio::agent_reply`]) at 24 kHz, cut or looped to `ms`.
pub fn agent_reply_24k(ms: u32) -> Vec<u8> {
    let clip = pcm24k_from_ulaw(&crate::audio::agent_reply());
    let len = ms as usize * 48;
    if clip.is_empty() {
        return vec![0; len];
    }
    clip.iter().copied().cycle().take(len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_lengths() {
        // 100 ms of 8 kHz µ-law: 800 bytes → 1,600 samples at 16 kHz → 3,200 bytes.
        assert_eq!(pcm16k_from_ulaw(&crate::audio::silence(100)).len(), 3200);
        assert_eq!(pcm24k_from_ulaw(&crate::audio::silence(100)).len(), 4800);
        assert_eq!(agent_reply_24k(1500).len(), 72_000);
        assert_eq!(from_bytes(&to_bytes(&[1, -2, 300])), [1, -2, 300]);
        assert_eq!(upsample(&[0, 300], 3), [0, 100, 200, 300, 300, 300]);
    }

    #[test]
    fn the_agent_reply_is_not_silence() {
        let samples = from_bytes(&agent_reply_24k(500));
        assert!(samples.iter().any(|s| s.unsigned_abs() > 1000));
    }
}
