//! The fake's stand-in for OpenAI's server VAD: an energy detector on a sample clock.
//!
//! Sans-IO: it sees only decoded PCM and counts time in samples of received audio, which
//! is also the clock OpenAI uses for `audio_start_ms`/`audio_end_ms` (ms of input audio
//! since the session began), so results do not depend on how fast audio was sent.

/// What the detector noticed, stamped on the input-audio clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began. `audio_start_ms` includes the prefix padding (protocols.md §2.4).
    SpeechStarted { audio_start_ms: u64 },
    /// Speech ended. Like the real server, `audio_end_ms` is when the silence was judged
    /// long enough, so it includes the silence duration.
    SpeechStopped { audio_end_ms: u64 },
}

/// Tuning for [`EnergyVad`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Frame RMS at or above this (dBFS, i16 full scale) counts as speech. The default,
    /// -40 dBFS, sits ~15 dB under a -20 dBFS tone or normalised espeak-ng speech and far
    /// above µ-law silence (0xFF decodes to exactly 0).
    pub threshold_dbfs: f32,
    /// Loud audio needed before speech is declared.
    pub start_ms: u32,
    /// Quiet audio needed before speech is declared over.
    pub stop_ms: u32,
    /// Subtracted from the onset for `audio_start_ms`, like `prefix_padding_ms`.
    pub prefix_padding_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold_dbfs: -40.0,
            start_ms: 60,
            stop_ms: 500,
            prefix_padding_ms: 300,
        }
    }
}

/// Energy VAD over 20 ms frames at any sample rate.
#[derive(Debug)]
pub struct EnergyVad {
    config: VadConfig,
    sample_rate_hz: u32,
    frame: Vec<i16>,
    /// Samples fully processed (whole frames) plus those waiting in `frame`.
    samples_seen: u64,
    threshold_rms: f64,
    speaking: bool,
    loud_ms: u32,
    quiet_ms: u32,
    /// Onset of the current loud run, in ms of input audio.
    run_start_ms: u64,
}

impl EnergyVad {
    pub fn new(config: VadConfig, sample_rate_hz: u32) -> Self {
        Self {
            threshold_rms: 32767.0 * 10f64.powf(f64::from(config.threshold_dbfs) / 20.0),
            config,
            sample_rate_hz: sample_rate_hz.max(1),
            frame: Vec::with_capacity(sample_rate_hz as usize / 50),
            samples_seen: 0,
            speaking: false,
            loud_ms: 0,
            quiet_ms: 0,
            run_start_ms: 0,
        }
    }

    /// Changes the sample rate (a `session.update` changed the input format). The clock
    /// keeps its milliseconds; a partial frame in the old rate is dropped.
    pub fn set_sample_rate(&mut self, sample_rate_hz: u32) {
        let now_ms = self.now_ms();
        self.sample_rate_hz = sample_rate_hz.max(1);
        self.frame.clear();
        self.samples_seen = now_ms * u64::from(self.sample_rate_hz) / 1000;
    }

    /// Ms of input audio received so far.
    pub fn now_ms(&self) -> u64 {
        self.samples_seen * 1000 / u64::from(self.sample_rate_hz)
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Feeds decoded samples of any length; pushes any resulting events onto `out`.
    pub fn process(&mut self, samples: &[i16], out: &mut Vec<VadEvent>) {
        let frame_len = (self.sample_rate_hz / 50).max(1) as usize;
        for &sample in samples {
            self.frame.push(sample);
            self.samples_seen += 1;
            if self.frame.len() == frame_len {
                self.end_of_frame(out);
                self.frame.clear();
            }
        }
    }

    fn end_of_frame(&mut self, out: &mut Vec<VadEvent>) {
        const FRAME_MS: u32 = 20;
        let sum: f64 = self.frame.iter().map(|&s| f64::from(s).powi(2)).sum();
        let rms = (sum / self.frame.len() as f64).sqrt();
        let frame_start_ms = self.now_ms().saturating_sub(u64::from(FRAME_MS));
        if rms >= self.threshold_rms {
            if self.loud_ms == 0 {
                self.run_start_ms = frame_start_ms;
            }
            self.loud_ms += FRAME_MS;
            self.quiet_ms = 0;
            if !self.speaking && self.loud_ms >= self.config.start_ms {
                self.speaking = true;
                out.push(VadEvent::SpeechStarted {
                    audio_start_ms: self
                        .run_start_ms
                        .saturating_sub(u64::from(self.config.prefix_padding_ms)),
                });
            }
        } else {
            self.loud_ms = 0;
            self.quiet_ms += FRAME_MS;
            if self.speaking && self.quiet_ms >= self.config.stop_ms {
                self.speaking = false;
                out.push(VadEvent::SpeechStopped {
                    audio_end_ms: self.now_ms(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{silence, tone};
    use vocalized_media::core::g711::ulaw_to_pcm;

    fn pcm(ulaw: &[u8]) -> Vec<i16> {
        let mut out = Vec::new();
        ulaw_to_pcm(ulaw, &mut out);
        out
    }

    fn run(vad: &mut EnergyVad, ulaw: &[u8], chunk: usize) -> Vec<VadEvent> {
        let mut events = Vec::new();
        for piece in pcm(ulaw).chunks(chunk) {
            vad.process(piece, &mut events);
        }
        events
    }

    #[test]
    fn speech_then_silence_gives_start_and_stop_on_the_audio_clock() {
        let mut audio = silence(1000);
        audio.extend(tone(300.0, -20.0, 800));
        audio.extend(silence(1000));
        let mut vad = EnergyVad::new(VadConfig::default(), 8000);
        let events = run(&mut vad, &audio, 160);
        assert_eq!(
            events,
            vec![
                // Onset at 1000 ms, minus 300 ms of prefix padding.
                VadEvent::SpeechStarted {
                    audio_start_ms: 700
                },
                // Last loud frame ends at 1800 ms; 500 ms of quiet later it is over.
                VadEvent::SpeechStopped { audio_end_ms: 2300 },
            ]
        );
        assert_eq!(vad.now_ms(), 2800);
    }

    #[test]
    fn chunk_size_does_not_change_the_result() {
        let mut audio = silence(500);
        audio.extend(tone(300.0, -20.0, 600));
        audio.extend(silence(700));
        let reference = run(&mut EnergyVad::new(VadConfig::default(), 8000), &audio, 160);
        for chunk in [1, 7, 100, 333, 4000] {
            let got = run(
                &mut EnergyVad::new(VadConfig::default(), 8000),
                &audio,
                chunk,
            );
            assert_eq!(got, reference, "chunk {chunk}");
        }
    }

    #[test]
    fn a_click_shorter_than_the_start_time_is_not_speech() {
        let mut audio = silence(200);
        audio.extend(tone(300.0, -20.0, 40));
        audio.extend(silence(1000));
        assert!(run(&mut EnergyVad::new(VadConfig::default(), 8000), &audio, 160).is_empty());
    }

    #[test]
    fn short_pauses_do_not_end_the_turn_and_quiet_audio_is_ignored() {
        let mut audio = tone(300.0, -20.0, 300);
        audio.extend(silence(300));
        audio.extend(tone(300.0, -20.0, 300));
        let events = run(&mut EnergyVad::new(VadConfig::default(), 8000), &audio, 160);
        assert_eq!(events.len(), 1, "{events:?}");

        let quiet = tone(300.0, -55.0, 1000);
        assert!(run(&mut EnergyVad::new(VadConfig::default(), 8000), &quiet, 160).is_empty());
    }

    #[test]
    fn clock_follows_the_sample_rate() {
        let mut vad = EnergyVad::new(VadConfig::default(), 24_000);
        vad.process(&vec![0; 24_000], &mut Vec::new());
        assert_eq!(vad.now_ms(), 1000);
        vad.set_sample_rate(8000);
        vad.process(&vec![0; 800], &mut Vec::new());
        assert_eq!(vad.now_ms(), 1100);
    }
}
