//! G.711 µ-law and A-law, table-driven (protocols.md §6.2–6.4).
//!
//! Twilio Media Streams carry 8 kHz µ-law, and some providers (OpenAI `audio/pcmu`,
//! ElevenLabs `ulaw_8000`) speak it too, so these conversions sit on every phone call's
//! hot path. All four directions are lookups into tables built at compile time:
//!
//! - decode: one 256-entry `i16` table per law;
//! - encode: the Sun `g711.c` encoders first drop the low bits of the sample (µ-law keeps
//!   14 bits, A-law 13), so the whole encoder is a 16 384-entry (µ-law) or 8 192-entry
//!   (A-law) `u8` table indexed by the shifted sample. 24 KB in all, L1/L2 resident.
//!
//! **Encoder variant:** both encoders are the Sun `g711.c` ones that CPython's `audioop`
//! uses (µ-law: 14-bit input, BIAS 33, CLIP 8159). They match `audioop.lin2ulaw` /
//! `audioop.lin2alaw` for all 65 536 inputs (the tests pin a checksum taken from audioop).
//! The Reese/Campbell µ-law encoder differs on 381 negative boundary inputs by one code
//! (e.g. encode(-1) is 0x7F there, 0x7E here); we chose audioop so that recordings and
//! fixtures can be cross-checked with stock Python. Both decode with the same table.
//!
//! Silence: µ-law 0xFF, A-law 0xD5.

/// The µ-law byte for digital silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law byte for digital silence (encode(0); decodes to +8).
pub const ALAW_SILENCE: u8 = 0xD5;

const ULAW_DECODE: [i16; 256] = build_ulaw_decode();
const ALAW_DECODE: [i16; 256] = build_alaw_decode();
/// Indexed by `(sample >> 2) + 8192`.
static ULAW_ENCODE: [u8; 16384] = build_ulaw_encode();
/// Indexed by `(sample >> 3) + 4096`.
static ALAW_ENCODE: [u8; 8192] = build_alaw_encode();

/// Decodes one µ-law byte to a 16-bit sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Encodes one 16-bit sample to µ-law (audioop-compatible).
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[((sample >> 2) as i32 + 8192) as usize]
}

/// Decodes one A-law byte to a 16-bit sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes one 16-bit sample to A-law (audioop-compatible).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[((sample >> 3) as i32 + 4096) as usize]
}

/// Appends decoded samples to `out` (no allocation when `out` has capacity).
pub fn ulaw_to_pcm(input: &[u8], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&code| ulaw_decode(code)));
}

/// Appends µ-law bytes to `out` (no allocation when `out` has capacity).
pub fn pcm_to_ulaw(input: &[i16], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&sample| ulaw_encode(sample)));
}

/// Appends decoded samples to `out` (no allocation when `out` has capacity).
pub fn alaw_to_pcm(input: &[u8], out: &mut Vec<i16>) {
    out.extend(input.iter().map(|&code| alaw_decode(code)));
}

/// Appends A-law bytes to `out` (no allocation when `out` has capacity).
pub fn pcm_to_alaw(input: &[i16], out: &mut Vec<u8>) {
    out.extend(input.iter().map(|&sample| alaw_encode(sample)));
}

// ---- table builders: the reference algorithms, run once by the compiler ----

/// protocols.md §6.3, exact for all 256 codes.
const fn ulaw_decode_reference(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 7;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = ((mantissa << 3) + 0x84) << exponent;
    if u & 0x80 != 0 {
        (0x84 - magnitude) as i16
    } else {
        (magnitude - 0x84) as i16
    }
}

/// protocols.md §6.4 (`alaw2linear`).
const fn alaw_decode_reference(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    t = match segment {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

/// Sun `st_14linear2ulaw`, input already shifted to 14 bits (-8192..=8191).
const fn ulaw_encode_14bit(mut pcm: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > 8159 {
        pcm = 8159;
    }
    pcm += 33;
    let mut segment = 0;
    while segment < 8 && pcm > SEG_END[segment] {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((segment as i32) << 4) | ((pcm >> (segment + 1)) & 0x0F);
    (uval as u8) ^ mask
}

/// Sun `linear2alaw`, input already shifted to 13 bits (-4096..=4095).
const fn alaw_encode_13bit(mut pcm: i32) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let mut segment = 0;
    while segment < 8 && pcm > SEG_END[segment] {
        segment += 1;
    }
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let low = if segment < 2 {
        pcm >> 1
    } else {
        pcm >> segment
    } & 0x0F;
    let aval = ((segment as i32) << 4) | low;
    (aval as u8) ^ mask
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_reference(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_reference(i as u8);
        i += 1;
    }
    table
}

const fn build_ulaw_encode() -> [u8; 16384] {
    let mut table = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        table[i] = ulaw_encode_14bit(i as i32 - 8192);
        i += 1;
    }
    table
}

const fn build_alaw_encode() -> [u8; 8192] {
    let mut table = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        table[i] = alaw_encode_13bit(i as i32 - 4096);
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// protocols.md §6.3: codes 0x00–0x7F; code 0x80|i decodes to the negation of code i.
    const ULAW_SPEC_LOW_HALF: [i16; 128] = [
        -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956, -23932, -22908, -21884,
        -20860, -19836, -18812, -17788, -16764, -15996, -15484, -14972, -14460, -13948, -13436,
        -12924, -12412, -11900, -11388, -10876, -10364, -9852, -9340, -8828, -8316, -7932, -7676,
        -7420, -7164, -6908, -6652, -6396, -6140, -5884, -5628, -5372, -5116, -4860, -4604, -4348,
        -4092, -3900, -3772, -3644, -3516, -3388, -3260, -3132, -3004, -2876, -2748, -2620, -2492,
        -2364, -2236, -2108, -1980, -1884, -1820, -1756, -1692, -1628, -1564, -1500, -1436, -1372,
        -1308, -1244, -1180, -1116, -1052, -988, -924, -876, -844, -812, -780, -748, -716, -684,
        -652, -620, -588, -556, -524, -492, -460, -428, -396, -372, -356, -340, -324, -308, -292,
        -276, -260, -244, -228, -212, -196, -180, -164, -148, -132, -120, -112, -104, -96, -88,
        -80, -72, -64, -56, -48, -40, -32, -24, -16, -8, 0,
    ];

    /// FNV-1a over the encoder output for every i16 from -32768 to 32767, in order.
    fn fnv1a_all_inputs(encode: fn(i16) -> u8) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for sample in i16::MIN..=i16::MAX {
            hash ^= encode(sample) as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }

    #[test]
    fn ulaw_decode_matches_spec_table_for_all_256_codes() {
        for (code, &value) in (0u8..).zip(&ULAW_SPEC_LOW_HALF) {
            assert_eq!(ulaw_decode(code), value, "code {code:#04x}");
            assert_eq!(
                ulaw_decode(0x80 | code),
                -value,
                "code {:#04x}",
                0x80 | code
            );
        }
    }

    #[test]
    fn alaw_decode_anchor_values() {
        // protocols.md §6.4.
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        // A-law is sign-symmetric: flipping the sign bit negates the value.
        for code in 0..=255u8 {
            assert_eq!(alaw_decode(code ^ 0x80), -alaw_decode(code));
        }
    }

    #[test]
    fn encoder_anchor_values() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(
            ulaw_encode(-1),
            0x7E,
            "audioop variant, not Reese/Campbell's 0x7F"
        );
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(32767), 0xAA);
        assert_eq!(alaw_encode(-32768), 0x2A);
    }

    /// Checksums computed with CPython 3.11 `audioop.lin2ulaw` / `lin2alaw` over all 65 536
    /// little-endian inputs (same FNV-1a as `fnv1a_all_inputs`). A change in any single
    /// code of either encoder changes these.
    #[test]
    fn encoders_match_audioop_for_all_inputs() {
        assert_eq!(fnv1a_all_inputs(ulaw_encode), AUDIOOP_ULAW_FNV);
        assert_eq!(fnv1a_all_inputs(alaw_encode), AUDIOOP_ALAW_FNV);
    }
    const AUDIOOP_ULAW_FNV: u64 = 0xd5ee_23f7_d0ff_ae91;
    const AUDIOOP_ALAW_FNV: u64 = 0xf030_666e_b780_cf25;

    #[test]
    fn every_code_round_trips_through_its_decoded_value() {
        // Decoded values are exact reconstruction points, so re-encoding must give the
        // code back — except µ-law 0x7F (-0), which encodes as 0xFF (+0).
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                ulaw_encode(ulaw_decode(code)),
                expected,
                "µ-law {code:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn bulk_helpers_append_and_match_scalar() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut pcm = vec![7i16];
        ulaw_to_pcm(&bytes, &mut pcm);
        assert_eq!(pcm.len(), 257);
        assert_eq!(pcm[0], 7, "appends, never overwrites");
        assert!(
            bytes
                .iter()
                .zip(&pcm[1..])
                .all(|(&b, &s)| ulaw_decode(b) == s)
        );
        let mut back = Vec::new();
        pcm_to_ulaw(&pcm[1..], &mut back);
        assert_eq!(back.len(), 256);

        let mut pcm = Vec::with_capacity(256);
        alaw_to_pcm(&bytes, &mut pcm);
        let mut back = Vec::with_capacity(256);
        pcm_to_alaw(&pcm, &mut back);
        assert_eq!(back, bytes);
    }

    /// Quantisation step of the µ-law segment holding the decoded `magnitude`
    /// (protocols.md §6.3: 8 << exponent) and the A-law one (16 for the two lowest
    /// segments, then doubling up to 1024).
    fn ulaw_step(magnitude: i32) -> i32 {
        let bases = [0, 132, 396, 924, 1980, 4092, 8316, 16764];
        let segment = bases.iter().rposition(|&b| magnitude >= b).unwrap_or(0);
        8 << segment
    }
    fn alaw_step(magnitude: i32) -> i32 {
        let segment = ((magnitude >> 8).max(1) as u32).ilog2() as i32 + 1;
        if magnitude < 512 {
            16
        } else {
            16 << (segment - 1)
        }
    }

    proptest! {
        #[test]
        fn ulaw_round_trip_error_bounded_by_segment_step(x in any::<i16>()) {
            let y = ulaw_decode(ulaw_encode(x)) as i32;
            let x = x as i32;
            // Clipping: µ-law's largest magnitude is 32124.
            let clipped = x.clamp(-32124, 32124);
            let err = (y - clipped).abs();
            // Each code's decision interval is one step of its segment wide with the
            // decoded value in the middle; the 14-bit floor shifts negative inputs by up
            // to 4 more. The interval is the one of the chosen code, so take y's segment.
            prop_assert!(err <= ulaw_step(y.abs()) / 2 + 4, "x={x} y={y} err={err}");
        }

        #[test]
        fn alaw_round_trip_error_bounded_by_segment_step(x in any::<i16>()) {
            let y = alaw_decode(alaw_encode(x)) as i32;
            let x = x as i32;
            let clipped = x.clamp(-32256, 32256);
            let err = (y - clipped).abs();
            // Half a step, plus up to 8 from the 13-bit floor.
            prop_assert!(err <= alaw_step(y.abs()) / 2 + 8, "x={x} y={y} err={err}");
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut out = Vec::new();
            ulaw_to_pcm(&bytes, &mut out);
            alaw_to_pcm(&bytes, &mut out);
            prop_assert_eq!(out.len(), bytes.len() * 2);
        }
    }
}
