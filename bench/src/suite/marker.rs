//! Frame stamps: how the bench times each 20 ms frame through the gateway.
//!
//! In pass-through the gateway forwards µ-law bytes unchanged, so the sender writes a
//! stamp into the first [`STAMP_BYTES`] bytes of every 160-byte frame and the receiver
//! reads it back wherever those bytes land. A stamp carries the stream it belongs to, the
//! frame's sequence number and the send time in µs on the bench's clock (one process, one
//! monotonic clock), so the receiver computes the gateway-added latency on arrival without
//! asking anyone, and the sequence numbers expose lost, duplicated or reordered frames.
//!
//! Each stamp byte is `0xF0 | nibble`: µ-law codes this close to 0xFF decode to at most
//! ±120 of 32767, so 20 of them in a frame sit near -58 dBFS, far under the fake VAD's
//! -40 dBFS threshold: the stamps neither start nor end a turn. Speech frames lose their
//! first 2.5 ms, which the VAD does not notice either.

use std::time::{Duration, Instant};

/// Stamp length in bytes (one nibble each): 8 bits of magic, 16 of stream, 24 of
/// sequence, 32 of µs.
pub const STAMP_BYTES: usize = 20;
/// One Twilio frame: stamps sit at every multiple of this in the byte stream.
pub const FRAME_BYTES: usize = crate::audio::FRAME_BYTES;
const MAGIC: u64 = 0xA5;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which call (caller → provider) or provider session (provider → caller).
    pub stream: u16,
    /// Frame number within the stream, from 0.
    pub seq: u32,
    /// Send time in µs since the clock's epoch, modulo 2^32 (71 minutes).
    pub sent_us: u32,
}

/// The bench's shared clock: every stamp counts µs from one `Instant`.
#[derive(Debug, Clone, Copy)]
pub struct StampClock {
    epoch: Instant,
}

impl StampClock {
    pub fn new(epoch: Instant) -> Self {
        Self { epoch }
    }

    /// Time since the epoch (the start of the run).
    pub fn since_epoch(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// `at` in µs since the epoch, wrapped to 32 bits like the stamp field.
    pub fn micros(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.epoch).as_micros() as u32
    }

    /// How long ago (as of `now`) a stamp was sent. Wraps correctly as long as the true
    /// latency is under 71 minutes.
    pub fn age(&self, stamp: &Stamp, now: Instant) -> Duration {
        Duration::from_micros(u64::from(self.micros(now).wrapping_sub(stamp.sent_us)))
    }
}

/// Writes `stamp` over the first [`STAMP_BYTES`] of `frame` (which must be that long).
pub fn write(stamp: &Stamp, frame: &mut [u8]) {
    let bits: u128 = (u128::from(MAGIC) << 72)
        | (u128::from(stamp.stream) << 56)
        | (u128::from(stamp.seq & 0xFF_FFFF) << 32)
        | u128::from(stamp.sent_us);
    for (i, byte) in frame.iter_mut().take(STAMP_BYTES).enumerate() {
        let shift = 4 * (STAMP_BYTES - 1 - i);
        *byte = 0xF0 | ((bits >> shift) & 0xF) as u8;
    }
}

/// Reads a stamp from the start of `frame`; `None` when there is none (wrong length,
/// wrong high nibbles, wrong magic).
pub fn read(frame: &[u8]) -> Option<Stamp> {
    let head = frame.get(..STAMP_BYTES)?;
    let mut bits: u128 = 0;
    for &byte in head {
        if byte & 0xF0 != 0xF0 {
            return None;
        }
        bits = (bits << 4) | u128::from(byte & 0x0F);
    }
    if (bits >> 72) as u64 != MAGIC {
        return None;
    }
    Some(Stamp {
        stream: (bits >> 56) as u16,
        seq: ((bits >> 32) & 0xFF_FFFF) as u32,
        sent_us: bits as u32,
    })
}

/// Splits an arriving byte stream into 160-byte frames, whatever sizes it arrives in,
/// and reads the stamp of each. Frames without a stamp are counted, not guessed at.
#[derive(Debug, Default)]
pub struct FrameReader {
    partial: Vec<u8>,
    /// Whole frames that carried no readable stamp (the bytes were altered or shifted).
    pub unstamped: u64,
}

impl FrameReader {
    /// Feeds `bytes`; calls `on_stamp` for every whole frame's stamp.
    pub fn feed(&mut self, bytes: &[u8], mut on_stamp: impl FnMut(Stamp)) {
        let mut rest = bytes;
        if !self.partial.is_empty() {
            let need = FRAME_BYTES - self.partial.len();
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() < FRAME_BYTES {
                return;
            }
            match read(&self.partial) {
                Some(stamp) => on_stamp(stamp),
                None => self.unstamped += 1,
            }
            self.partial.clear();
        }
        let mut frames = rest.chunks_exact(FRAME_BYTES);
        for frame in &mut frames {
            match read(frame) {
                Some(stamp) => on_stamp(stamp),
                None => self.unstamped += 1,
            }
        }
        self.partial.extend_from_slice(frames.remainder());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{ULAW_SILENCE, rms_dbfs, tone};

    fn stamped(stream: u16, seq: u32, sent_us: u32) -> Vec<u8> {
        let mut frame = vec![ULAW_SILENCE; FRAME_BYTES];
        write(
            &Stamp {
                stream,
                seq,
                sent_us,
            },
            &mut frame,
        );
        frame
    }

    #[test]
    fn a_stamp_reads_back_exactly() {
        let frame = stamped(0xBEEF, 0x12_3456, 0xDEAD_BEEF);
        assert_eq!(
            read(&frame),
            Some(Stamp {
                stream: 0xBEEF,
                seq: 0x12_3456,
                sent_us: 0xDEAD_BEEF
            })
        );
    }

    #[test]
    fn audio_without_a_stamp_is_not_read_as_one() {
        assert_eq!(read(&tone(300.0, -20.0, 20)), None);
        assert_eq!(read(&[ULAW_SILENCE; FRAME_BYTES]), None);
        assert_eq!(read(&[0xF0; 10]), None, "too short");
    }

    #[test]
    fn a_stamped_silent_frame_stays_far_under_the_vad_threshold() {
        let frame = stamped(u16::MAX, 0xFF_FFFF, u32::MAX);
        assert!(rms_dbfs(&frame) < -50.0, "{}", rms_dbfs(&frame));
    }

    #[test]
    fn the_reader_finds_every_frame_whatever_the_chunking() {
        let stream: Vec<u8> = (0..10)
            .flat_map(|seq| stamped(7, seq, seq * 20_000))
            .collect();
        for chunk in [1, 7, 160, 333, 800, 1600] {
            let mut reader = FrameReader::default();
            let mut seqs = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.feed(piece, |s| seqs.push(s.seq));
            }
            assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "chunk {chunk}");
            assert_eq!(reader.unstamped, 0);
        }
    }

    #[test]
    fn shifted_bytes_are_counted_as_unstamped() {
        let mut stream: Vec<u8> = (0..4).flat_map(|seq| stamped(1, seq, 0)).collect();
        stream.remove(0);
        stream.push(ULAW_SILENCE);
        let mut reader = FrameReader::default();
        let mut found = 0;
        reader.feed(&stream, |_| found += 1);
        assert_eq!(found, 0);
        assert_eq!(reader.unstamped, 4);
    }

    #[test]
    fn age_survives_the_32_bit_wrap() {
        let epoch = Instant::now();
        let clock = StampClock::new(epoch);
        let stamp = Stamp {
            stream: 0,
            seq: 0,
            sent_us: u32::MAX - 99,
        };
        let now = epoch + Duration::from_micros(u64::from(u32::MAX) + 1 + 400);
        assert_eq!(clock.age(&stamp, now), Duration::from_micros(500));
    }
}
