//! Per-20 ms-frame cost of the media core's DSP: G.711 both ways, every resampler pair
//! the gateway uses, Opus encode and decode. Output buffers are reused across
//! iterations, as the call task does, so allocation is not measured.
//!
//! Targets (issue 3): µ-law ≤ 1 µs; 8k↔24k and 16k↔24k ≤ 5 µs; 48k↔24k ≤ 8 µs;
//! Opus encode ≤ 80 µs, decode ≤ 25 µs.
//!
//! `cargo bench -p vocalized-media --bench dsp -- --warm-up-time 1 --measurement-time 2`

use criterion::{Criterion, criterion_group, criterion_main};
use std::f64::consts::PI;
use std::hint::black_box;
use vocalized_media::core::g711;
use vocalized_media::core::opus::{
    OPUS_FRAME_SAMPLES, OPUS_MAX_PACKET_BYTES, OPUS_MAX_PACKET_SAMPLES, OpusDecoder, OpusEncoder,
};
use vocalized_media::core::resample::StreamResampler;

/// 20 ms of speech-band test signal (two tones) at `rate_hz`, continuing across frames
/// so the resampler sees a steady signal rather than a repeated click.
fn signal(rate_hz: u32, frames: usize) -> Vec<i16> {
    (0..rate_hz as usize / 50 * frames)
        .map(|i| {
            let t = i as f64 / rate_hz as f64;
            (6000.0 * (2.0 * PI * 300.0 * t).sin() + 3000.0 * (2.0 * PI * 1170.0 * t).sin()) as i16
        })
        .collect()
}

fn g711(c: &mut Criterion) {
    let mut ulaw = Vec::with_capacity(160);
    g711::pcm_to_ulaw(&signal(8000, 1), &mut ulaw);
    let mut alaw = Vec::with_capacity(160);
    g711::pcm_to_alaw(&signal(8000, 1), &mut alaw);
    let mut pcm = Vec::with_capacity(160);
    let mut bytes = Vec::with_capacity(160);

    c.bench_function("ulaw decode+encode 160 B", |b| {
        b.iter(|| {
            pcm.clear();
            bytes.clear();
            g711::ulaw_to_pcm(black_box(&ulaw), &mut pcm);
            g711::pcm_to_ulaw(&pcm, &mut bytes);
            black_box(&bytes);
        })
    });
    c.bench_function("alaw decode+encode 160 B", |b| {
        b.iter(|| {
            pcm.clear();
            bytes.clear();
            g711::alaw_to_pcm(black_box(&alaw), &mut pcm);
            g711::pcm_to_alaw(&pcm, &mut bytes);
            black_box(&bytes);
        })
    });
}

fn resample(c: &mut Criterion) {
    const PAIRS: [(u32, u32); 12] = [
        (8000, 24000),
        (24000, 8000),
        (16000, 24000),
        (24000, 16000),
        (48000, 24000),
        (24000, 48000),
        (8000, 16000),
        (16000, 8000),
        (8000, 48000),
        (48000, 8000),
        (16000, 48000),
        (48000, 16000),
    ];
    let mut group = c.benchmark_group("resample 20 ms");
    for (from, to) in PAIRS {
        // 50 different frames (1 s), cycled, so each iteration is a fresh 20 ms.
        let input = signal(from, 50);
        let frames: Vec<&[i16]> = input.chunks(from as usize / 50).collect();
        let mut resampler = StreamResampler::new(from, to).expect("supported pair");
        let mut out = Vec::with_capacity(to as usize / 50);
        let mut next = 0;
        group.bench_function(format!("{}k->{}k", from / 1000, to / 1000), |b| {
            b.iter(|| {
                out.clear();
                resampler.process(black_box(frames[next]), &mut out);
                next = (next + 1) % frames.len();
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn opus(c: &mut Criterion) {
    let input = signal(48000, 50);
    let frames: Vec<&[i16]> = input.chunks(OPUS_FRAME_SAMPLES).collect();
    let mut encoder = OpusEncoder::new().expect("opus encoder");
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| {
            let mut packet = [0u8; OPUS_MAX_PACKET_BYTES];
            let len = encoder.encode(frame, &mut packet).expect("encode");
            packet[..len].to_vec()
        })
        .collect();

    let mut packet = [0u8; OPUS_MAX_PACKET_BYTES];
    let mut next = 0;
    c.bench_function("opus encode 20 ms 48k mono", |b| {
        b.iter(|| {
            let len = encoder
                .encode(black_box(frames[next]), &mut packet)
                .expect("encode");
            next = (next + 1) % frames.len();
            black_box(len);
        })
    });

    let mut decoder = OpusDecoder::new().expect("opus decoder");
    let mut pcm = [0i16; OPUS_MAX_PACKET_SAMPLES];
    let mut next = 0;
    c.bench_function("opus decode 20 ms 48k mono", |b| {
        b.iter(|| {
            let n = decoder
                .decode(black_box(&packets[next]), &mut pcm)
                .expect("decode");
            next = (next + 1) % packets.len();
            black_box(n);
        })
    });
}

criterion_group!(benches, g711, resample, opus);
criterion_main!(benches);
