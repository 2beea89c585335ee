//! Arbitrary audio in arbitrary chunk lengths through every resampler pair: never a
//! panic, and the output is identical to resampling the same audio in one piece.
//! Layout: byte 0 picks the pair, bytes 1..9 are chunk lengths (×8 samples), the rest
//! is PCM16 LE audio.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vocalized_media::core::pcm;
use vocalized_media::core::resample::{SUPPORTED_RATES_HZ, StreamResampler};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let from = SUPPORTED_RATES_HZ[(data[0] & 3) as usize];
    let to = SUPPORTED_RATES_HZ[((data[0] >> 2) & 3) as usize];
    let cuts = &data[1..9];
    let mut audio = Vec::new();
    pcm::le_bytes_to_samples(&data[9..], &mut audio);

    let Ok(mut whole) = StreamResampler::new(from, to) else { return };
    let mut expected = Vec::new();
    whole.process(&audio, &mut expected);

    let Ok(mut chunked) = StreamResampler::new(from, to) else { return };
    let mut got = Vec::new();
    let mut rest = &audio[..];
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (cut as usize * 8).clamp(1, rest.len());
        chunked.process(&rest[..n], &mut got);
        rest = &rest[n..];
    }
    assert_eq!(got, expected);
    assert_eq!(chunked.failed_blocks(), 0);
});
