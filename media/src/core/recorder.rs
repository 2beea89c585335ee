//! Stereo call recording: caller on the left, agent on the right, one timeline.
//!
//! The two sides arrive on different clocks: the caller's audio streams in real time,
//! while agent audio arrives from the provider in bursts and is played by Twilio (or the
//! pacer) later, one chunk after another. A recording is only useful if the agent is
//! heard where the caller heard it, so everything is placed on the **caller's clock**:
//! - caller audio is appended as it arrives (or placed at its stream timestamp, with
//!   silence filling lost packets);
//! - agent audio is placed at the caller-clock time it was sent, or right after the
//!   agent audio before it if that is still playing, the way a playback buffer works;
//! - on barge-in, [`Recorder::cut_agent`] removes agent audio the caller never heard
//!   (what Twilio `clear` dropped);
//! - anything not written is silence.
//!
//! Both channels are kept in memory at one rate (feed it already-resampled audio) up to
//! a bound, and [`Recorder::finish`] writes a 16-bit PCM WAV. Audio past the bound is
//! dropped and counted, never a panic or an unbounded allocation.

use std::io::{self, Write};

pub struct Recorder {
    sample_rate_hz: u32,
    max_samples: usize,
    caller: Vec<i16>,
    agent: Vec<i16>,
    /// Where queued agent playback ends, in samples (agent audio plays back to back).
    agent_end: usize,
    dropped_samples: u64,
}

impl Recorder {
    /// `max_seconds` bounds memory: 2 channels × 2 bytes × rate × seconds.
    pub fn new(sample_rate_hz: u32, max_seconds: u32) -> Self {
        let sample_rate_hz = sample_rate_hz.max(1);
        Self {
            sample_rate_hz,
            max_samples: sample_rate_hz as usize * max_seconds as usize,
            caller: Vec::new(),
            agent: Vec::new(),
            agent_end: 0,
            dropped_samples: 0,
        }
    }

    /// Appends caller audio right after the caller audio before it.
    pub fn push_caller(&mut self, samples: &[i16]) {
        let at = self.caller.len();
        self.write_caller(at, samples);
    }

    /// Places caller audio at its stream time (Twilio's media `timestamp`); a jump forward
    /// leaves silence for the lost audio, a repeat overwrites.
    pub fn push_caller_at(&mut self, at_ms: u64, samples: &[i16]) {
        let at = self.ms_to_samples(at_ms);
        self.write_caller(at, samples);
    }

    /// Places agent audio sent at caller-clock `sent_at_ms`. It starts playing then, or
    /// when the agent audio queued before it ends, whichever is later.
    pub fn push_agent(&mut self, sent_at_ms: u64, samples: &[i16]) {
        let start = self.ms_to_samples(sent_at_ms).max(self.agent_end);
        let written = write_at(&mut self.agent, start, samples, self.max_samples);
        self.dropped_samples += (samples.len() - written) as u64;
        self.agent_end = start + written;
    }

    /// Barge-in at caller-clock `at_ms`: agent audio scheduled after it was never heard.
    pub fn cut_agent(&mut self, at_ms: u64) {
        let at = self.ms_to_samples(at_ms);
        if at < self.agent.len() {
            self.agent.truncate(at);
        }
        self.agent_end = self.agent_end.min(at);
    }

    /// Length of the recording so far.
    pub fn duration_ms(&self) -> u64 {
        self.frames() as u64 * 1000 / self.sample_rate_hz as u64
    }

    /// Samples that fell past the recording bound.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// The recording as a WAV file in memory.
    pub fn finish(self) -> Vec<u8> {
        let mut wav = Vec::with_capacity(44 + self.frames() * 4);
        // Writing into a Vec cannot fail.
        let _ = self.write_wav(&mut wav);
        wav
    }

    /// Writes the recording as a 16-bit PCM stereo WAV (RIFF, 44-byte header).
    pub fn write_wav<W: Write>(&self, mut w: W) -> io::Result<()> {
        let frames = self.frames();
        let data_bytes = u32::try_from(frames * 4).unwrap_or(u32::MAX - 36);
        w.write_all(b"RIFF")?;
        w.write_all(&(36 + data_bytes).to_le_bytes())?;
        w.write_all(b"WAVEfmt ")?;
        w.write_all(&16u32.to_le_bytes())?; // fmt chunk size
        w.write_all(&1u16.to_le_bytes())?; // PCM
        w.write_all(&2u16.to_le_bytes())?; // channels
        w.write_all(&self.sample_rate_hz.to_le_bytes())?;
        w.write_all(&(self.sample_rate_hz * 4).to_le_bytes())?; // byte rate
        w.write_all(&4u16.to_le_bytes())?; // block align
        w.write_all(&16u16.to_le_bytes())?; // bits per sample
        w.write_all(b"data")?;
        w.write_all(&data_bytes.to_le_bytes())?;
        // Interleave in blocks so a long call is not one write per sample.
        let mut block = [0u8; 4096];
        for start in (0..frames).step_by(block.len() / 4) {
            let end = (start + block.len() / 4).min(frames);
            for (i, frame) in (start..end).enumerate() {
                let left = self.caller.get(frame).copied().unwrap_or(0);
                let right = self.agent.get(frame).copied().unwrap_or(0);
                block[i * 4..i * 4 + 2].copy_from_slice(&left.to_le_bytes());
                block[i * 4 + 2..i * 4 + 4].copy_from_slice(&right.to_le_bytes());
            }
            w.write_all(&block[..(end - start) * 4])?;
        }
        Ok(())
    }

    fn frames(&self) -> usize {
        self.caller.len().max(self.agent.len())
    }

    fn ms_to_samples(&self, ms: u64) -> usize {
        let samples = ms.saturating_mul(self.sample_rate_hz as u64) / 1000;
        usize::try_from(samples).unwrap_or(usize::MAX)
    }

    fn write_caller(&mut self, at: usize, samples: &[i16]) {
        let written = write_at(&mut self.caller, at, samples, self.max_samples);
        self.dropped_samples += (samples.len() - written) as u64;
    }
}

/// Writes `samples` into `channel` from `at`, zero-filling any gap and stopping at
/// `max_len`; returns how many samples were written.
fn write_at(channel: &mut Vec<i16>, at: usize, samples: &[i16], max_len: usize) -> usize {
    if at >= max_len {
        return 0;
    }
    let fit = samples.len().min(max_len - at);
    let end = at + fit;
    if channel.len() < end {
        channel.resize(end, 0);
    }
    channel[at..end].copy_from_slice(&samples[..fit]);
    fit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the interleaved data chunk of a WAV written by `finish`.
    fn frames_of(wav: &[u8]) -> Vec<(i16, i16)> {
        wav[44..]
            .chunks_exact(4)
            .map(|c| {
                (
                    i16::from_le_bytes([c[0], c[1]]),
                    i16::from_le_bytes([c[2], c[3]]),
                )
            })
            .collect()
    }

    #[test]
    fn header_is_16_bit_pcm_stereo() {
        let mut r = Recorder::new(8000, 60);
        r.push_caller(&[1, 2, 3]);
        let wav = r.finish();
        let expected_header: [u8; 44] = [
            b'R', b'I', b'F', b'F', 48, 0, 0, 0, // 36 + 12 data bytes
            b'W', b'A', b'V', b'E', b'f', b'm', b't', b' ', //
            16, 0, 0, 0, 1, 0, 2, 0, // fmt size, PCM, 2 channels
            0x40, 0x1F, 0, 0, // 8000 Hz
            0x00, 0x7D, 0, 0, // 32000 bytes/s
            4, 0, 16, 0, // block align, bits
            b'd', b'a', b't', b'a', 12, 0, 0, 0,
        ];
        assert_eq!(wav[..44], expected_header);
        assert_eq!(wav.len(), 44 + 12);
        assert_eq!(frames_of(&wav), [(1, 0), (2, 0), (3, 0)]);
    }

    #[test]
    fn agent_audio_lands_at_its_caller_clock_time() {
        let mut r = Recorder::new(8000, 60);
        r.push_caller(&[10; 160]); // 0–20 ms
        r.push_agent(5, &[20; 8]); // sent at 5 ms = sample 40
        let f = frames_of(&r.finish());
        assert_eq!(f.len(), 160);
        assert_eq!(f[39], (10, 0));
        assert_eq!(f[40], (10, 20));
        assert_eq!(f[47], (10, 20));
        assert_eq!(f[48], (10, 0));
    }

    #[test]
    fn agent_chunks_play_back_to_back_and_past_the_caller() {
        let mut r = Recorder::new(1000, 60); // 1 sample per ms
        r.push_caller(&[1; 10]);
        // A burst of three chunks all sent at 2 ms: they queue behind each other.
        r.push_agent(2, &[5; 4]);
        r.push_agent(2, &[6; 4]);
        r.push_agent(2, &[7; 4]);
        // Sent after the queue drained: starts when sent, with a silent gap before it.
        r.push_agent(20, &[8; 2]);
        assert_eq!(r.duration_ms(), 22);
        let right: Vec<i16> = frames_of(&r.finish()).iter().map(|f| f.1).collect();
        assert_eq!(
            right,
            [
                0, 0, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 8, 8
            ]
        );
    }

    #[test]
    fn barge_in_cut_removes_unheard_agent_audio() {
        let mut r = Recorder::new(1000, 60);
        r.push_caller(&[1; 10]);
        r.push_agent(0, &[5; 8]);
        r.cut_agent(3);
        // The next answer starts when sent, not after the cut audio.
        r.push_agent(6, &[9; 2]);
        let right: Vec<i16> = frames_of(&r.finish()).iter().map(|f| f.1).collect();
        assert_eq!(right, [5, 5, 5, 0, 0, 0, 9, 9, 0, 0]);
    }

    #[test]
    fn caller_timestamps_fill_lost_packets_with_silence() {
        let mut r = Recorder::new(1000, 60);
        r.push_caller_at(0, &[1, 1]);
        r.push_caller_at(5, &[2, 2]); // 2–4 ms were lost
        r.push_caller(&[3]);
        let left: Vec<i16> = frames_of(&r.finish()).iter().map(|f| f.0).collect();
        assert_eq!(left, [1, 1, 0, 0, 0, 2, 2, 3]);
    }

    #[test]
    fn audio_past_the_bound_is_dropped_and_counted() {
        let mut r = Recorder::new(1000, 1); // 1000 samples
        r.push_caller(&[1; 990]);
        r.push_caller(&[1; 20]);
        r.push_agent(u64::MAX, &[2; 5]);
        r.push_caller_at(u64::MAX, &[3; 5]);
        assert_eq!(r.dropped_samples(), 10 + 5 + 5);
        assert_eq!(r.duration_ms(), 1000);
        assert_eq!(r.finish().len(), 44 + 4000);
    }
}
