//! PCM16 little-endian bytes <-> `i16` samples (protocols.md §6.1).
//!
//! Every provider here speaks signed 16-bit little-endian mono; the bytes arrive base64
//! in JSON or as binary WebSocket frames, and nothing guarantees an even length (a
//! provider may split a frame anywhere). An odd trailing byte is reported, not a panic:
//! the caller counts it as malformed input.

/// Appends the samples in `input` to `out` (no allocation when `out` has capacity).
///
/// Returns `false` when `input` had an odd trailing byte, which is ignored.
pub fn le_bytes_to_samples(input: &[u8], out: &mut Vec<i16>) -> bool {
    let pairs = input.chunks_exact(2);
    let whole = pairs.remainder().is_empty();
    out.extend(pairs.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
    whole
}

/// Appends `input` to `out` as little-endian bytes (no allocation when `out` has capacity).
pub fn samples_to_le_bytes(input: &[i16], out: &mut Vec<u8>) {
    out.reserve(input.len() * 2);
    for sample in input {
        out.extend_from_slice(&sample.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_little_endian_pairs() {
        let mut out = vec![5];
        assert!(le_bytes_to_samples(
            &[0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80, 0xFF, 0x7F],
            &mut out
        ));
        assert_eq!(out, [5, 1, -1, i16::MIN, i16::MAX]);
    }

    #[test]
    fn odd_trailing_byte_is_reported_and_ignored() {
        let mut out = Vec::new();
        assert!(!le_bytes_to_samples(&[0x34, 0x12, 0x99], &mut out));
        assert_eq!(out, [0x1234]);
        assert!(!le_bytes_to_samples(&[0x99], &mut out));
        assert_eq!(out, [0x1234]);
        assert!(le_bytes_to_samples(&[], &mut out));
    }

    #[test]
    fn encodes_little_endian() {
        let mut out = vec![9u8];
        samples_to_le_bytes(&[1, -2, i16::MIN], &mut out);
        assert_eq!(out, [9, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0x80]);
    }

    proptest! {
        #[test]
        fn round_trips_any_samples(samples in proptest::collection::vec(any::<i16>(), 0..1000)) {
            let mut bytes = Vec::new();
            samples_to_le_bytes(&samples, &mut bytes);
            prop_assert_eq!(bytes.len(), samples.len() * 2);
            let mut back = Vec::new();
            prop_assert!(le_bytes_to_samples(&bytes, &mut back));
            prop_assert_eq!(back, samples);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut out = Vec::new();
            let whole = le_bytes_to_samples(&bytes, &mut out);
            prop_assert_eq!(whole, bytes.len() % 2 == 0);
            prop_assert_eq!(out.len(), bytes.len() / 2);
        }
    }
}
