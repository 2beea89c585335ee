//! One direction of audio through the session: caller -> provider or provider -> caller.
//!
//! When both ends speak the same format the bytes pass through untouched (Twilio µ-law
//! to OpenAI `audio/pcmu`, the common case). Otherwise: decode to PCM16 -> resample ->
//! encode. Every stage writes into buffers the leg owns and reuses, so a frame in steady
//! state allocates nothing (STYLE.md §7; proven by tests/session_no_alloc.rs).
//!
//! Opus is not a leg format: the WebRTC driver decodes and encodes it next to the socket
//! (it is packet-oriented and its frames are paced there), and hands the session PCM16
//! at 48 kHz.

use crate::core::{g711, pcm, resample::StreamResampler};
use vocalized_shared::audio::AudioFormat;

/// Why a leg could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error("the call session does not carry {0:?} audio (decode Opus in the driver)")]
    UnsupportedFormat(AudioFormat),
    #[error("no resampler from {from_hz} Hz to {to_hz} Hz: {message}")]
    Resampler {
        from_hz: u32,
        to_hz: u32,
        message: String,
    },
}

pub(crate) struct Leg {
    from: AudioFormat,
    to: AudioFormat,
    resampler: Option<StreamResampler>,
    decoded: Vec<i16>,
    resampled: Vec<i16>,
}

fn check(format: AudioFormat) -> Result<AudioFormat, LegError> {
    match format {
        AudioFormat::Mulaw8k | AudioFormat::Alaw8k => Ok(format),
        AudioFormat::Pcm16 { sample_rate_hz }
            if sample_rate_hz >= 1000 && sample_rate_hz % 1000 == 0 =>
        {
            Ok(format)
        }
        _ => Err(LegError::UnsupportedFormat(format)),
    }
}

impl Leg {
    pub fn new(from: AudioFormat, to: AudioFormat) -> Result<Self, LegError> {
        let (from, to) = (check(from)?, check(to)?);
        let (from_hz, to_hz) = (from.sample_rate_hz(), to.sample_rate_hz());
        let resampler = if from_hz == to_hz {
            None
        } else {
            Some(
                StreamResampler::new(from_hz, to_hz).map_err(|e| LegError::Resampler {
                    from_hz,
                    to_hz,
                    message: format!("{e:?}"),
                })?,
            )
        };
        // A second of audio: frames are 20 ms, provider deltas rarely over 500 ms.
        let capacity = to_hz.max(from_hz) as usize;
        Ok(Self {
            from,
            to,
            resampler,
            decoded: Vec::with_capacity(capacity),
            resampled: Vec::with_capacity(capacity),
        })
    }

    pub fn is_passthrough(&self) -> bool {
        self.from == self.to
    }

    pub fn input_format(&self) -> AudioFormat {
        self.from
    }

    /// Decodes encoded input into the leg's sample buffer. Returns `false` when PCM16
    /// input had an odd trailing byte (dropped).
    pub fn decode(&mut self, input: &[u8]) -> bool {
        self.decoded.clear();
        match self.from {
            AudioFormat::Mulaw8k => g711::ulaw_to_pcm(input, &mut self.decoded),
            AudioFormat::Alaw8k => g711::alaw_to_pcm(input, &mut self.decoded),
            AudioFormat::Pcm16 { .. } => return pcm::le_bytes_to_samples(input, &mut self.decoded),
            AudioFormat::Opus48k => {}
        }
        true
    }

    /// Loads already-decoded input (WebRTC PCM) into the leg's sample buffer.
    pub fn load_samples(&mut self, input: &[i16]) {
        self.decoded.clear();
        self.decoded.extend_from_slice(input);
    }

    /// The samples of the last `decode`/`load_samples`, at the input rate.
    pub fn decoded(&self) -> &[i16] {
        &self.decoded
    }

    /// The decoded samples at the output rate (resampling when the rates differ).
    fn output_samples(&mut self) -> &[i16] {
        match &mut self.resampler {
            None => &self.decoded,
            Some(resampler) => {
                self.resampled.clear();
                resampler.process(&self.decoded, &mut self.resampled);
                &self.resampled
            }
        }
    }

    /// Appends the decoded input, converted to the output format, to `out`.
    pub fn encode_bytes(&mut self, out: &mut Vec<u8>) {
        let to = self.to;
        let samples = self.output_samples();
        match to {
            AudioFormat::Mulaw8k => g711::pcm_to_ulaw(samples, out),
            AudioFormat::Alaw8k => g711::pcm_to_alaw(samples, out),
            AudioFormat::Pcm16 { .. } => pcm::samples_to_le_bytes(samples, out),
            AudioFormat::Opus48k => {}
        }
    }

    /// Appends the decoded input, at the output rate, to `out` (WebRTC caller leg).
    pub fn encode_samples(&mut self, out: &mut Vec<i16>) {
        let samples = self.output_samples();
        out.extend_from_slice(samples);
    }

    /// Bytes in pass-through, copied as they are. PCM16 with an odd length loses its
    /// trailing byte (and returns `false`) so the far end never sees a split sample.
    pub fn pass_bytes(&self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let whole = match self.from {
            AudioFormat::Pcm16 { .. } => input.len() & !1,
            _ => input.len(),
        };
        out.extend_from_slice(&input[..whole]);
        whole == input.len()
    }

    /// Drops resampler history (after a barge-in the next audio is unrelated).
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_and_odd_rates_are_refused() {
        assert!(matches!(
            Leg::new(AudioFormat::Opus48k, AudioFormat::Mulaw8k),
            Err(LegError::UnsupportedFormat(AudioFormat::Opus48k))
        ));
        assert!(
            Leg::new(
                AudioFormat::Mulaw8k,
                AudioFormat::Pcm16 {
                    sample_rate_hz: 22_050
                }
            )
            .is_err()
        );
    }

    #[test]
    fn passthrough_copies_and_trims_odd_pcm() {
        let pcm = AudioFormat::Pcm16 {
            sample_rate_hz: 24_000,
        };
        let leg = Leg::new(pcm, pcm).unwrap();
        assert!(leg.is_passthrough());
        let mut out = Vec::new();
        assert!(!leg.pass_bytes(&[1, 2, 3], &mut out));
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn mulaw_to_alaw_same_rate_transcodes_without_resampling() {
        let mut leg = Leg::new(AudioFormat::Mulaw8k, AudioFormat::Alaw8k).unwrap();
        assert!(leg.decode(&[0xFF; 160]));
        assert_eq!(leg.decoded(), &[0i16; 160][..]);
        let mut out = Vec::new();
        leg.encode_bytes(&mut out);
        assert_eq!(out.len(), 160);
        assert!(out.iter().all(|&b| b == g711::alaw_encode(0)));
    }
}
