//! Test audio, all µ-law 8 kHz mono (Twilio's format, protocols.md §1.4: 8 bytes per ms).
//!
//! The preferred material is real synthetic speech checked in under `tests/fixtures/`
//! (made by `tests/fixtures/make.sh` with espeak-ng + sox). Every loader falls back to a
//! generated tone-burst pattern when a file is missing, so no test depends on the files
//! being present at run time.

use std::path::PathBuf;

use vocalized_media::core::g711::{pcm_to_ulaw, ulaw_to_pcm};

/// µ-law digital silence (0x00 would be full-scale negative, protocols.md §1.9).
pub const ULAW_SILENCE: u8 = 0xFF;
/// µ-law bytes per millisecond at 8 kHz.
pub const BYTES_PER_MS: usize = 8;
/// One Twilio media frame: 20 ms.
pub const FRAME_BYTES: usize = 160;

/// `ms` of µ-law silence.
pub fn silence(ms: u32) -> Vec<u8> {
    vec![ULAW_SILENCE; ms as usize * BYTES_PER_MS]
}

/// A sine at `freq_hz` whose peak is `level_dbfs` (0 = i16 full scale), `ms` long, µ-law.
/// 5 ms raised-cosine edges keep it from clicking, like a real syllable onset.
pub fn tone(freq_hz: f32, level_dbfs: f32, ms: u32) -> Vec<u8> {
    let n = ms as usize * BYTES_PER_MS;
    let peak = 32767.0 * 10f32.powf(level_dbfs / 20.0);
    let ramp = (5 * BYTES_PER_MS).min(n / 2).max(1);
    let pcm: Vec<i16> = (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = if edge < ramp {
                0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
            } else {
                1.0
            };
            let phase = 2.0 * std::f32::consts::PI * freq_hz * i as f32 / 8000.0;
            (peak * gain * phase.sin()).round() as i16
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    pcm_to_ulaw(&pcm, &mut out);
    out
}

/// A speech-like pattern of `total_ms`: 180 ms "syllables" at -20 dBFS separated by 60 ms
/// gaps (short enough that no VAD with a sane hangover ends the turn inside it), ending
/// on a syllable boundary. The pitch alternates so that the audio is not one pure tone.
pub fn tone_bursts(total_ms: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(total_ms as usize * BYTES_PER_MS);
    let pitches = [220.0, 330.0, 262.0, 294.0];
    let mut i = 0;
    while out.len() + 180 * BYTES_PER_MS <= total_ms as usize * BYTES_PER_MS {
        out.extend(tone(pitches[i % pitches.len()], -20.0, 180));
        i += 1;
        let gap = (60 * BYTES_PER_MS).min(total_ms as usize * BYTES_PER_MS - out.len());
        out.extend(std::iter::repeat_n(ULAW_SILENCE, gap));
    }
    out.resize(total_ms as usize * BYTES_PER_MS, ULAW_SILENCE);
    out
}

/// `tests/fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

/// A raw µ-law fixture by file name, or `None` if it is missing or empty.
pub fn load_fixture(name: &str) -> Option<Vec<u8>> {
    std::fs::read(fixtures_dir().join(name))
        .ok()
        .filter(|bytes| !bytes.is_empty())
}

/// A caller saying one short sentence: about 2 s of speech then 1 s of silence
/// (`caller_hello.ulaw`, or 2 s of tone bursts + 1 s of silence).
pub fn caller_hello() -> Vec<u8> {
    load_fixture("caller_hello.ulaw").unwrap_or_else(|| {
        let mut audio = tone_bursts(2000);
        audio.extend(silence(1000));
        audio
    })
}

/// An agent reply of about 1.5 s (`agent_reply.ulaw`, or 1.5 s of tone bursts).
pub fn agent_reply() -> Vec<u8> {
    load_fixture("agent_reply.ulaw").unwrap_or_else(|| tone_bursts(1500))
}

/// The agent reply looped or cut to exactly `ms` of 8 kHz µ-law: what every fake
/// provider plays back, at the length a test asks for.
pub fn agent_reply_ms(ms: u32) -> Vec<u8> {
    let clip = agent_reply();
    if clip.is_empty() {
        return silence(ms);
    }
    clip.iter()
        .copied()
        .cycle()
        .take(ms as usize * BYTES_PER_MS)
        .collect()
}

/// RMS of µ-law audio in dBFS relative to i16 full scale (-inf dB is clamped to -120).
pub fn rms_dbfs(ulaw: &[u8]) -> f32 {
    if ulaw.is_empty() {
        return -120.0;
    }
    let mut pcm = Vec::with_capacity(ulaw.len());
    ulaw_to_pcm(ulaw, &mut pcm);
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt();
    if rms < 1e-3 {
        -120.0
    } else {
        (20.0 * (rms / 32767.0).log10()) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_level_is_what_was_asked() {
        // A sine's RMS is its peak / sqrt(2), i.e. 3 dB below the peak level.
        let level = rms_dbfs(&tone(440.0, -20.0, 200));
        assert!((level - -23.0).abs() < 0.5, "{level}");
        assert_eq!(tone(440.0, -20.0, 200).len(), 1600);
    }

    #[test]
    fn silence_is_ff_and_measures_as_silence() {
        assert!(silence(20).iter().all(|&b| b == 0xFF));
        assert_eq!(rms_dbfs(&silence(20)), -120.0);
    }

    #[test]
    fn tone_bursts_fill_exactly_and_alternate_sound_and_gap() {
        let audio = tone_bursts(2000);
        assert_eq!(audio.len(), 16_000);
        // First syllable loud, the gap after it silent.
        assert!(rms_dbfs(&audio[..180 * 8]) > -30.0);
        assert_eq!(rms_dbfs(&audio[185 * 8..235 * 8]), -120.0);
    }

    #[test]
    fn fallbacks_have_the_documented_shape() {
        // Whatever the source (fixture or generated), the caller speaks then goes quiet.
        let caller = caller_hello();
        assert!(caller.len() >= 2500 * 8, "{}", caller.len());
        assert!(rms_dbfs(&caller[..1000 * 8]) > -40.0);
        assert!(rms_dbfs(&caller[caller.len() - 500 * 8..]) < -50.0);
        assert!(agent_reply().len() >= 1000 * 8);
    }
}
