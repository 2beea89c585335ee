//! Streaming sample-rate conversion between 8, 16, 24 and 48 kHz (protocols.md §6.5).
//!
//! Twilio speaks 8 kHz, Gemini wants 16 kHz in and sends 24 kHz out, OpenAI PCM is 24 kHz
//! and WebRTC Opus is 48 kHz, so a call may resample in both directions. All these ratios
//! are fixed, which is what rubato's `Fft` resampler is for: a constant output size per
//! block and 7–15× cheaper than its sinc resamplers (reference/crates.md).
//!
//! `rubato::Fft` consumes fixed blocks, while callers hand us whatever a socket delivered
//! (Twilio promises no chunk size, providers split anywhere). `StreamResampler` buffers
//! input up to one block, runs rubato on each full block and appends the output, so the
//! result does not depend on how the input was chunked.
//!
//! **Block size: 10 ms** at the input rate (80 samples at 8 kHz … 480 at 48 kHz), one FFT
//! block per rubato call (`FixedSync::Both`, one sub-chunk). Rubato's delay is half the
//! output block, so this adds 5 ms of delay per hop; a 20 ms frame flows through as two
//! blocks with nothing left waiting. Larger blocks would move the anti-alias cutoff a bit
//! closer to Nyquist (rubato's BlackmanHarris2 window: ~83% of the lower Nyquist at 80
//! points, ~91% at 160) at twice the delay; 83% of 4 kHz is still at the top of the
//! telephone band, so latency wins.
//!
//! Samples cross into rubato as `f32` at their `i16` scale (the transform is linear, so no
//! normalisation is needed) and come back rounded and saturated.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

/// The rates the gateway converts between.
pub const SUPPORTED_RATES_HZ: [u32; 4] = [8000, 16000, 24000, 48000];

/// The block rubato transforms at a time, in milliseconds of input.
const BLOCK_MS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error(
        "unsupported resampling {from_hz} Hz -> {to_hz} Hz (supported: 8000, 16000, 24000, 48000)"
    )]
    UnsupportedRate { from_hz: u32, to_hz: u32 },
    #[error("rubato refused the resampler: {0}")]
    Rubato(#[from] rubato::ResamplerConstructionError),
}

/// A stateful streaming resampler: one per call per direction.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when `from_hz == to_hz`: a plain copy.
    engine: Option<Engine>,
}

struct Engine {
    fft: Fft<f32>,
    /// Input waiting for a full block; capacity `block_in`, never reallocated.
    pending: Vec<f32>,
    block_in: usize,
    /// One block of rubato output.
    block_out: Vec<f32>,
    /// Blocks rubato rejected (an internal size mismatch; never seen, but emitted as
    /// silence rather than panicking so the stream keeps its timing).
    failed_blocks: u64,
}

impl StreamResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if !SUPPORTED_RATES_HZ.contains(&from_hz) || !SUPPORTED_RATES_HZ.contains(&to_hz) {
            return Err(ResampleError::UnsupportedRate { from_hz, to_hz });
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                engine: None,
            });
        }
        let block_in = (from_hz * BLOCK_MS / 1000) as usize;
        let fft = Fft::<f32>::new_custom(
            from_hz as usize,
            to_hz as usize,
            block_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )?;
        let block_out = vec![0.0; fft.output_frames_max()];
        debug_assert_eq!(fft.input_frames_next(), block_in);
        debug_assert_eq!(block_out.len(), (to_hz * BLOCK_MS / 1000) as usize);
        Ok(Self {
            from_hz,
            to_hz,
            engine: Some(Engine {
                fft,
                pending: Vec::with_capacity(block_in),
                block_in,
                block_out,
                failed_blocks: 0,
            }),
        })
    }

    /// Resamples `input` (any length, including 0) and appends every output sample that
    /// is ready. Input short of a full block waits for the next call.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(engine) = &mut self.engine else {
            out.extend_from_slice(input);
            return;
        };
        let mut rest = input;
        while !rest.is_empty() {
            let take = (engine.block_in - engine.pending.len()).min(rest.len());
            engine
                .pending
                .extend(rest[..take].iter().map(|&s| s as f32));
            rest = &rest[take..];
            if engine.pending.len() == engine.block_in {
                engine.run_block(out);
            }
        }
    }

    /// Output-rate samples of delay the resampler adds: an impulse at input sample 0
    /// peaks at output sample `delay_samples()`. Buffering a partial block adds waiting
    /// time on top, but no extra offset in the output stream.
    pub fn delay_samples(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.fft.output_delay())
    }

    /// Drops buffered input and filter state (e.g. on barge-in), so stale audio never
    /// leaks into the next utterance.
    pub fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.pending.clear();
            engine.fft.reset();
        }
    }

    /// Input samples buffered, waiting for a full block.
    pub fn pending_samples(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.pending.len())
    }

    /// Blocks rubato refused (emitted as silence). Expected to stay 0.
    pub fn failed_blocks(&self) -> u64 {
        self.engine.as_ref().map_or(0, |e| e.failed_blocks)
    }

    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }
}

impl Engine {
    fn run_block(&mut self, out: &mut Vec<i16>) {
        let frames_in = self.pending.len();
        let frames_out = self.block_out.len();
        let result = SequentialSlice::new(&self.pending[..], 1, frames_in)
            .ok()
            .zip(SequentialSlice::new_mut(&mut self.block_out[..], 1, frames_out).ok())
            .and_then(|(input, mut output)| {
                self.fft.process_into_buffer(&input, &mut output, None).ok()
            });
        self.pending.clear();
        match result {
            Some((_, produced)) => {
                out.extend(self.block_out[..produced].iter().map(|&x| round_to_i16(x)))
            }
            None => {
                self.failed_blocks += 1;
                out.resize(out.len() + frames_out, 0);
            }
        }
    }
}

/// Round half away from zero and saturate. `as` saturates (and maps NaN to 0), and the
/// add-and-truncate avoids a libm `round` call on baseline x86-64.
#[inline]
fn round_to_i16(x: f32) -> i16 {
    (if x >= 0.0 { x + 0.5 } else { x - 0.5 }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f64::consts::PI;

    fn all_pairs() -> impl Iterator<Item = (u32, u32)> {
        SUPPORTED_RATES_HZ
            .into_iter()
            .flat_map(|a| SUPPORTED_RATES_HZ.into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
    }

    /// A linear sine sweep, amplitude 12 000, `seconds` long, as a function of time.
    fn sweep_at(t: f64, f0: f64, f1: f64, seconds: f64) -> f64 {
        let k = (f1 - f0) / seconds;
        12000.0 * (2.0 * PI * (f0 * t + 0.5 * k * t * t)).sin()
    }

    fn sweep(rate_hz: u32, f0: f64, f1: f64, seconds: f64) -> Vec<i16> {
        let n = (rate_hz as f64 * seconds) as usize;
        (0..n)
            .map(|i| sweep_at(i as f64 / rate_hz as f64, f0, f1, seconds).round() as i16)
            .collect()
    }

    fn snr_db(reference: &[f64], actual: &[f64]) -> f64 {
        let signal: f64 = reference.iter().map(|x| x * x).sum();
        let noise: f64 = reference
            .iter()
            .zip(actual)
            .map(|(r, a)| (r - a).powi(2))
            .sum();
        10.0 * (signal / noise.max(1e-12)).log10()
    }

    fn resample_in_chunks(from: u32, to: u32, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut r = StreamResampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            r.process(piece, &mut out);
        }
        out
    }

    #[test]
    fn rejects_unsupported_rates() {
        assert!(matches!(
            StreamResampler::new(44100, 48000),
            Err(ResampleError::UnsupportedRate {
                from_hz: 44100,
                to_hz: 48000
            })
        ));
        assert!(StreamResampler::new(8000, 0).is_err());
    }

    #[test]
    fn same_rate_is_a_copy() {
        let mut r = StreamResampler::new(24000, 24000).unwrap();
        let mut out = vec![1];
        r.process(&[5, -6, 7], &mut out);
        assert_eq!(out, [1, 5, -6, 7]);
        assert_eq!(r.delay_samples(), 0);
    }

    #[test]
    fn twenty_ms_frames_come_out_as_twenty_ms_frames() {
        for (from, to) in all_pairs() {
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            r.process(&vec![100; (from / 50) as usize], &mut out);
            assert_eq!(out.len(), (to / 50) as usize, "{from}->{to}");
            assert_eq!(r.pending_samples(), 0);
            assert_eq!(
                r.delay_samples(),
                (to / 200) as usize,
                "5 ms at the output rate"
            );
        }
    }

    #[test]
    fn partial_blocks_wait_and_reset_drops_them() {
        let mut r = StreamResampler::new(8000, 24000).unwrap();
        let mut out = Vec::new();
        r.process(&[1000; 50], &mut out);
        assert!(out.is_empty());
        assert_eq!(r.pending_samples(), 50);
        r.process(&[1000; 30], &mut out);
        assert_eq!(out.len(), 240);
        r.process(&[1000; 10], &mut out);
        r.reset();
        assert_eq!(r.pending_samples(), 0);
        // After reset the filter state is silent: silence in gives exact silence out.
        let mut after = Vec::new();
        r.process(&[0; 80], &mut after);
        assert!(after.iter().all(|&s| s == 0), "{after:?}");
    }

    /// The sweep resampled in 20 ms chunks matches the same sweep resampled in one piece,
    /// and both match the ideal sweep at the output rate once shifted by `delay_samples`.
    #[test]
    fn sweep_in_chunks_matches_one_piece_and_ideal_for_every_pair() {
        let seconds = 1.0;
        for (from, to) in all_pairs() {
            let top = 0.7 * (from.min(to) as f64 / 2.0);
            let input = sweep(from, 100.0, top, seconds);
            let whole = resample_in_chunks(from, to, &input, input.len());
            let chunked = resample_in_chunks(from, to, &input, (from / 50) as usize);
            assert_eq!(whole.len(), chunked.len());
            let whole_f: Vec<f64> = whole.iter().map(|&s| s as f64).collect();
            let chunked_f: Vec<f64> = chunked.iter().map(|&s| s as f64).collect();
            let consistency = snr_db(&whole_f, &chunked_f);
            assert!(
                consistency >= 60.0,
                "{from}->{to}: chunked vs whole {consistency:.1} dB"
            );

            let delay = StreamResampler::new(from, to).unwrap().delay_samples();
            // Skip the filter's start-up and the last 20 ms. Measured here: 87–89 dB for
            // every pair, close to the i16 quantisation floor.
            let start = delay + (to / 50) as usize;
            let end = whole.len() - (to / 50) as usize;
            let ideal: Vec<f64> = (start..end)
                .map(|i| sweep_at((i - delay) as f64 / to as f64, 100.0, top, seconds))
                .collect();
            let accuracy = snr_db(&ideal, &whole_f[start..end]);
            assert!(accuracy >= 70.0, "{from}->{to}: vs ideal {accuracy:.1} dB");
        }
    }

    /// Frequency from zero crossings, level from RMS.
    fn frequency_and_rms(samples: &[i16], rate_hz: u32) -> (f64, f64) {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let seconds = samples.len() as f64 / rate_hz as f64;
        let rms = (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64)
            .sqrt();
        (crossings as f64 / 2.0 / seconds, rms)
    }

    #[test]
    fn tone_keeps_frequency_and_level() {
        for (from, to) in all_pairs() {
            for tone_hz in [440.0, 1000.0, 3000.0] {
                let input: Vec<i16> = (0..from)
                    .map(|i| (10000.0 * (2.0 * PI * tone_hz * i as f64 / from as f64).sin()) as i16)
                    .collect();
                let out = resample_in_chunks(from, to, &input, 160);
                let settled = &out[(to / 20) as usize..out.len() - (to / 20) as usize];
                let (freq, rms) = frequency_and_rms(settled, to);
                assert!(
                    (freq - tone_hz).abs() < 2.0,
                    "{from}->{to} {tone_hz} Hz: got {freq:.1} Hz"
                );
                let level_db = 20.0 * (rms / (10000.0 / 2f64.sqrt())).log10();
                assert!(
                    level_db.abs() < 0.5,
                    "{from}->{to} {tone_hz} Hz: level {level_db:.2} dB"
                );
            }
        }
    }

    #[test]
    fn downsampling_removes_content_above_the_new_nyquist() {
        // A 6 kHz tone cannot exist at 8 kHz; it must not alias down to 2 kHz.
        let input: Vec<i16> = (0..24000)
            .map(|i| (10000.0 * (2.0 * PI * 6000.0 * i as f64 / 24000.0).sin()) as i16)
            .collect();
        let out = resample_in_chunks(24000, 8000, &input, 480);
        let (_, rms) = frequency_and_rms(&out[400..out.len() - 400], 8000);
        assert!(rms < 10000.0 / 2f64.sqrt() / 1000.0, "alias rms {rms:.1}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Output never depends on how the input was split.
        #[test]
        fn arbitrary_chunking_matches_one_piece(
            pair in 0usize..12,
            cuts in proptest::collection::vec(0usize..700, 0..20),
            samples in proptest::collection::vec(any::<i16>(), 0..4000),
        ) {
            let (from, to) = all_pairs().nth(pair).unwrap();
            let whole = resample_in_chunks(from, to, &samples, samples.len().max(1));
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut chunked = Vec::new();
            let mut rest = &samples[..];
            for cut in cuts {
                let cut = cut.min(rest.len());
                r.process(&rest[..cut], &mut chunked);
                rest = &rest[cut..];
            }
            r.process(rest, &mut chunked);
            prop_assert_eq!(whole, chunked);
        }
    }
}
