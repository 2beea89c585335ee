//! Arbitrary bytes as a sequence of Opus packets (each prefixed by a length byte):
//! decode, FEC-decode and conceal must return errors, never crash or write out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vocalized_media::core::opus::{OPUS_MAX_PACKET_SAMPLES, OpusDecoder};

fuzz_target!(|data: &[u8]| {
    let Ok(mut decoder) = OpusDecoder::new() else { return };
    let mut out = [0i16; OPUS_MAX_PACKET_SAMPLES];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        match packet.first().map(|b| b % 4) {
            // Exercise the lost-packet paths too, driven by the data.
            Some(0) => {
                let _ = decoder.decode_fec(packet, &mut out);
            }
            Some(1) => {
                let _ = decoder.conceal(&mut out);
            }
            _ => {}
        }
        if let Ok(n) = decoder.decode(packet, &mut out) {
            assert!(n <= OPUS_MAX_PACKET_SAMPLES);
        }
    }
});
