//! Arbitrary bytes as PCM16 LE: odd lengths are reported, never a panic, and whole
//! samples round-trip byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vocalized_media::core::pcm;

fuzz_target!(|data: &[u8]| {
    let mut samples = Vec::new();
    let whole = pcm::le_bytes_to_samples(data, &mut samples);
    assert_eq!(whole, data.len() % 2 == 0);
    assert_eq!(samples.len(), data.len() / 2);
    let mut back = Vec::new();
    pcm::samples_to_le_bytes(&samples, &mut back);
    assert_eq!(back, data[..data.len() & !1]);
});
