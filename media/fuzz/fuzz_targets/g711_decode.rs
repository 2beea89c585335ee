//! Arbitrary bytes through both G.711 decoders and back through the encoders: one
//! sample per byte, and every code survives decode -> encode (µ-law -0 becomes +0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vocalized_media::core::g711;

fuzz_target!(|data: &[u8]| {
    let mut pcm = Vec::new();
    let mut bytes = Vec::new();
    g711::ulaw_to_pcm(data, &mut pcm);
    assert_eq!(pcm.len(), data.len());
    g711::pcm_to_ulaw(&pcm, &mut bytes);
    for (&code, &back) in data.iter().zip(&bytes) {
        assert_eq!(back, if code == 0x7F { 0xFF } else { code });
    }
    pcm.clear();
    bytes.clear();
    g711::alaw_to_pcm(data, &mut pcm);
    g711::pcm_to_alaw(&pcm, &mut bytes);
    assert_eq!(bytes, data);
});
