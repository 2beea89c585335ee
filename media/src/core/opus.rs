//! Opus for the browser leg (WebRTC): 48 kHz mono, 20 ms frames (protocols.md §6.6).
//!
//! A thin wrapper over the `opus` 0.4 crate (libopus 1.6, statically linked; see
//! reference/crates.md for why not audiopus) that fixes the parameters a voice gateway
//! wants and turns every misuse into an [`OpusError`] instead of a libopus assert:
//!
//! - VoIP application (speech-tuned), 32 kbit/s: plenty for wideband speech and well
//!   under any browser's `maxaveragebitrate`; complexity 5, as a server encodes many.
//! - In-band FEC on, tuned for 10% expected loss: each packet carries a low-bitrate copy
//!   of the previous frame, which [`OpusDecoder::decode_fec`] can recover when a packet is
//!   missing but the next one arrived.
//! - [`OpusDecoder::conceal`] for a missing packet with nothing to recover from (PLC), so
//!   the pacer always has a frame to play.
//!
//! The RTP packetisation itself lives in the WebRTC driver; this module only sees payloads.

/// Opus in WebRTC always runs its RTP clock at 48 kHz.
pub const OPUS_SAMPLE_RATE_HZ: u32 = 48_000;
/// One 20 ms mono frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// Output room that any valid Opus packet fits in: 120 ms at 48 kHz.
pub const OPUS_MAX_PACKET_SAMPLES: usize = 5_760;
/// A buffer this large always holds one encoded 20 ms frame (RFC 6716's 1275-byte cap
/// for a single frame).
pub const OPUS_MAX_PACKET_BYTES: usize = 1_275;
/// Target bitrate of the encoder.
pub const OPUS_BITRATE_BPS: i32 = 32_000;
/// Encoder complexity (0–10; libopus defaults to 10). Encoding is most of a browser
/// call's CPU; on our VMs 5 costs about three quarters of 10 per frame (166 against
/// 226 µs with FEC at 10 % loss, `cargo bench --bench dsp`), and speech at 32 kbit/s
/// does not need the slower search.
pub const OPUS_COMPLEXITY: i32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("an Opus frame must be {OPUS_FRAME_SAMPLES} samples (20 ms at 48 kHz), got {got}")]
    WrongFrameSize { got: usize },
    #[error("empty Opus packet (a lost packet is conceal(), not decode())")]
    EmptyPacket,
    #[error("output buffer holds {got} samples, needs {needed}")]
    OutputTooSmall { got: usize, needed: usize },
    #[error("libopus: {0}")]
    Codec(#[from] opus::Error),
}

/// One caller's outbound Opus stream.
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl OpusEncoder {
    pub fn new() -> Result<Self, OpusError> {
        let mut inner = opus::Encoder::new(
            OPUS_SAMPLE_RATE_HZ,
            opus::Channels::Mono,
            opus::Application::Voip,
        )?;
        inner.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE_BPS))?;
        inner.set_complexity(OPUS_COMPLEXITY)?;
        inner.set_inband_fec(true)?;
        // libopus only spends bits on FEC when it expects loss; 10% until the driver
        // knows better (see `set_expected_loss_percent`).
        inner.set_packet_loss_perc(10)?;
        Ok(Self { inner })
    }

    /// Tells the encoder how much loss to protect against (0–100 %), e.g. from RTCP
    /// receiver reports. In-band FEC is the costly part of encoding: measured on our
    /// VMs, 10% costs ~108 µs per frame against ~37 µs at 0%.
    pub fn set_expected_loss_percent(&mut self, percent: u8) -> Result<(), OpusError> {
        Ok(self
            .inner
            .set_packet_loss_perc(i32::from(percent.min(100)))?)
    }

    /// Encodes one 20 ms frame (exactly 960 samples) into `out` and returns the packet
    /// length. `out` should hold [`OPUS_MAX_PACKET_BYTES`].
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != OPUS_FRAME_SAMPLES {
            return Err(OpusError::WrongFrameSize { got: pcm.len() });
        }
        Ok(self.inner.encode(pcm, out)?)
    }
}

/// One caller's inbound Opus stream.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, OpusError> {
        Ok(Self {
            inner: opus::Decoder::new(OPUS_SAMPLE_RATE_HZ, opus::Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out` and returns the samples written (960 for a 20 ms
    /// packet; a browser may send 10–60 ms, so give `out` [`OPUS_MAX_PACKET_SAMPLES`] of
    /// room to accept anything). Truncated or garbage packets are an error.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError::EmptyPacket);
        }
        Ok(self.inner.decode(packet, out, false)?)
    }

    /// Fills exactly one 20 ms frame for a packet that never arrived (packet loss
    /// concealment), continuing the previous audio so the gap does not click.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        let frame = frame_of(out)?;
        Ok(self.inner.decode(&[], frame, false)?)
    }

    /// Recovers the frame *before* `next_packet` from its in-band FEC data, for when that
    /// frame's own packet was lost. Call it before decoding `next_packet` itself. Falls
    /// back to concealment inside libopus when `next_packet` carries no FEC.
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if next_packet.is_empty() {
            return Err(OpusError::EmptyPacket);
        }
        let frame = frame_of(out)?;
        Ok(self.inner.decode(next_packet, frame, true)?)
    }
}

/// PLC and FEC produce exactly one frame; libopus needs the slice to be that long.
fn frame_of(out: &mut [i16]) -> Result<&mut [i16], OpusError> {
    let got = out.len();
    out.get_mut(..OPUS_FRAME_SAMPLES)
        .ok_or(OpusError::OutputTooSmall {
            got,
            needed: OPUS_FRAME_SAMPLES,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f64::consts::PI;

    fn tone_frames(freq_hz: f64, amplitude: f64, frames: usize) -> Vec<Vec<i16>> {
        let samples: Vec<i16> = (0..frames * OPUS_FRAME_SAMPLES)
            .map(|i| (amplitude * (2.0 * PI * freq_hz * i as f64 / 48_000.0).sin()) as i16)
            .collect();
        samples
            .chunks(OPUS_FRAME_SAMPLES)
            .map(<[i16]>::to_vec)
            .collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    fn zero_crossing_hz(samples: &[i16]) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        crossings as f64 / 2.0 / (samples.len() as f64 / 48_000.0)
    }

    /// Encodes `frames`, decodes every packet; returns the packets and the decoded audio.
    fn round_trip(frames: &[Vec<i16>]) -> (Vec<Vec<u8>>, Vec<i16>, OpusDecoder) {
        let mut encoder = OpusEncoder::new().unwrap();
        let mut decoder = OpusDecoder::new().unwrap();
        let mut packets = Vec::new();
        let mut decoded = Vec::new();
        for frame in frames {
            let mut packet = [0u8; OPUS_MAX_PACKET_BYTES];
            let len = encoder.encode(frame, &mut packet).unwrap();
            packets.push(packet[..len].to_vec());
            let mut pcm = [0i16; OPUS_MAX_PACKET_SAMPLES];
            let n = decoder.decode(&packet[..len], &mut pcm).unwrap();
            assert_eq!(n, OPUS_FRAME_SAMPLES);
            decoded.extend_from_slice(&pcm[..n]);
        }
        (packets, decoded, decoder)
    }

    #[test]
    fn tone_keeps_its_frequency_and_energy() {
        let frames = tone_frames(440.0, 8000.0, 50);
        let (packets, decoded, _) = round_trip(&frames);
        // Skip the first 100 ms while the codec converges.
        let settled = &decoded[5 * OPUS_FRAME_SAMPLES..];
        let freq = zero_crossing_hz(settled);
        assert!((freq - 440.0).abs() < 3.0, "decoded tone at {freq:.1} Hz");
        let level_db = 20.0 * (rms(settled) / (8000.0 / 2f64.sqrt())).log10();
        assert!(level_db.abs() < 1.5, "level changed by {level_db:.2} dB");
        // ~32 kbit/s is ~80 bytes per 20 ms; allow VBR swing.
        let mean_bytes = packets.iter().map(Vec::len).sum::<usize>() / packets.len();
        assert!(
            (20..=160).contains(&mean_bytes),
            "mean packet {mean_bytes} bytes"
        );
    }

    #[test]
    fn concealment_after_speech_is_one_non_silent_frame() {
        let (_, _, mut decoder) = round_trip(&tone_frames(300.0, 8000.0, 20));
        let mut out = [0i16; OPUS_MAX_PACKET_SAMPLES];
        let n = decoder.conceal(&mut out).unwrap();
        assert_eq!(n, OPUS_FRAME_SAMPLES);
        assert!(
            rms(&out[..n]) > 500.0,
            "PLC went silent: rms {}",
            rms(&out[..n])
        );
        assert!(out[n..].iter().all(|&s| s == 0), "PLC wrote past one frame");
    }

    #[test]
    fn fec_recovers_a_lost_frame_from_the_next_packet() {
        let frames = tone_frames(300.0, 8000.0, 20);
        let (packets, _, _) = round_trip(&frames);
        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = [0i16; OPUS_MAX_PACKET_SAMPLES];
        for packet in &packets[..10] {
            decoder.decode(packet, &mut out).unwrap();
        }
        // Packet 10 is lost; packet 11 carries its FEC copy.
        let n = decoder.decode_fec(&packets[11], &mut out).unwrap();
        assert_eq!(n, OPUS_FRAME_SAMPLES);
        assert!(rms(&out[..n]) > 500.0);
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut encoder = OpusEncoder::new().unwrap();
        let mut packet = [0u8; OPUS_MAX_PACKET_BYTES];
        assert!(matches!(
            encoder.encode(&[0; 959], &mut packet),
            Err(OpusError::WrongFrameSize { got: 959 })
        ));
        assert!(matches!(
            encoder.encode(&[0; 960], &mut [0u8; 0]),
            Err(OpusError::Codec(_))
        ));
        assert!(
            encoder.set_expected_loss_percent(250).is_ok(),
            "clamped to 100"
        );

        let mut decoder = OpusDecoder::new().unwrap();
        let mut out = [0i16; OPUS_MAX_PACKET_SAMPLES];
        assert!(matches!(
            decoder.decode(&[], &mut out),
            Err(OpusError::EmptyPacket)
        ));
        // Code 3 (several frames) without its frame-count byte: truncated.
        assert!(matches!(
            decoder.decode(&[0x03], &mut out),
            Err(OpusError::Codec(_))
        ));
        // Code 3 claiming 63 frames of 20 ms: longer than Opus allows.
        assert!(matches!(
            decoder.decode(&[0x7B, 0x3F], &mut out),
            Err(OpusError::Codec(_))
        ));
        // A valid 20 ms packet into a 10 ms buffer.
        let len = encoder.encode(&[0; 960], &mut packet).unwrap();
        assert!(decoder.decode(&packet[..len], &mut out[..480]).is_err());
        assert!(matches!(
            decoder.conceal(&mut out[..100]),
            Err(OpusError::OutputTooSmall {
                got: 100,
                needed: 960
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..6),
        ) {
            let mut decoder = OpusDecoder::new().unwrap();
            let mut out = [0i16; OPUS_MAX_PACKET_SAMPLES];
            for packet in &packets {
                if let Ok(n) = decoder.decode(packet, &mut out) {
                    prop_assert!(n <= OPUS_MAX_PACKET_SAMPLES);
                }
                let _ = decoder.decode_fec(packet, &mut out);
                let _ = decoder.conceal(&mut out);
            }
        }
    }
}
