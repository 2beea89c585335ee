//! The media plane's fuzz targets on the stable toolchain (`vocalized_media::fuzzing`):
//! a short deterministic run of each in CI, a long one on demand:
//!
//! ```text
//! VOCALIZED_FUZZ_ITERS=10000000 VOCALIZED_FUZZ_SEED=$RANDOM \
//!   cargo test --release -p vocalized-media --test fuzz -- --nocapture --test-threads 1
//! ```
//!
//! A crash prints the path of the saved input; `VOCALIZED_FUZZ_REPLAY=<path>` reruns
//! one target on it. Inputs that once crashed live on below as regression tests.

use vocalized_media::fuzzing::engine::{Rng, fuzz};
use vocalized_media::fuzzing::{self, seeds};

/// Runs a target with its corpus and generator. `ci_iters` keeps each test to a second
/// or two in a debug build.
fn run(name: &str, ci_iters: u64) {
    let (_, body) = fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a known target");
    let corpus = seeds::corpus(name);
    let generate = seeds::generator(name);
    let generate = generate
        .as_ref()
        .map(|g| g as &dyn Fn(&mut Rng, &mut Vec<u8>));
    let stats = fuzz(name, ci_iters, &corpus, generate, body);
    assert!(stats.inputs > 0);
}

#[test]
fn fuzz_twilio_messages() {
    run("twilio_messages", 5_000);
}

#[test]
fn fuzz_openai_events() {
    run("openai_events", 5_000);
}

#[test]
fn fuzz_gemini_messages() {
    run("gemini_messages", 5_000);
}

#[test]
fn fuzz_elevenlabs_messages() {
    run("elevenlabs_messages", 5_000);
}

#[test]
fn fuzz_deepgram_messages() {
    run("deepgram_messages", 5_000);
}

#[test]
fn fuzz_sdp_offer() {
    run("sdp_offer", 20_000);
}

#[test]
fn fuzz_opus_decode() {
    run("opus_decode", 5_000);
}

#[test]
fn fuzz_g711_decode() {
    run("g711_decode", 20_000);
}

#[test]
fn fuzz_pcm_parse() {
    run("pcm_parse", 20_000);
}

#[test]
fn fuzz_resample_chunks() {
    run("resample_chunks", 500);
}

#[test]
fn every_target_has_a_test() {
    let source = include_str!("fuzz.rs");
    for (name, _) in fuzzing::TARGETS {
        assert!(
            source.contains(&format!("run(\"{name}\"")),
            "{name} has no test"
        );
    }
}

// Regression tests: inputs the fuzzers once failed on.

/// A JSON array parsed as a Twilio message (serde reads a tagged enum from a sequence,
/// fields by position); only objects are messages now.
#[test]
fn regression_a_json_array_is_not_a_twilio_message() {
    use vocalized_media::core::wire::twilio::Inbound;
    let found = "[\"\\u0011\u{fffd}\u{fffd}+\u{fffd}\u{fffd}<e\u{6c7}\u{fffd}\\n\"]";
    for text in [found, r#"["connected"]"#, r#" ["stop", "1", "MZ1"]"#, "[]"] {
        assert!(Inbound::parse(text).is_err(), "{text}");
    }
    assert!(Inbound::parse(" \n{\"event\":\"connected\"}").is_ok());
    fuzzing::twilio_messages(found.as_bytes());
}

/// OpenAI transcription usage with a huge token count overflowed a sum (a panic in
/// debug builds).
#[test]
fn regression_openai_huge_transcription_tokens() {
    fuzzing::openai_events(br#"{"type":"conversation.item.input_audio_transcription.completed","transcript":"hi","usage":{"type":"tokens","input_tokens":12,"output_tokens":5,"input_token_details":{"audio_tokens":18446744073709551615,"text_tokens":42860}}}"#);
    fuzzing::gemini_messages(br#"{"usageMetadata":{"promptTokensDetails":[{"modality":"AUDIO","tokenCount":18446744073709551615},{"modality":"AUDIO","tokenCount":1}],"responseTokensDetails":[{"modality":"TEXT","tokenCount":18446744073709551615},{"modality":"X","tokenCount":9}]}}"#);
}

/// A Gemini goAway with a time left past `Duration`'s range panicked the provider reader
/// (in release builds too).
#[test]
fn regression_gemini_go_away_past_duration_range() {
    for message in [
        r#"{"goAway":{"timeLeft":"18446744073709551616s"}}"#,
        r#"{"goAway":{"timeLeft":"1e300s"}}"#,
        r#"{"goAway":{"timeLeft":{"seconds":18446744073709551615,"nanos":999999999}}}"#,
    ] {
        fuzzing::gemini_messages(message.as_bytes());
        let mut decoder = vocalized_media::core::wire::gemini::GeminiDecoder::new("m");
        decoder.handle_text(message, |_| {});
        // The connection still ends: the goAway is reported, whatever its time.
        assert!(decoder.take_go_away().is_some(), "{message}");
    }
}

/// `a=rtpmap:+11 opus/48000/2` was accepted as payload type 11.
#[test]
fn regression_sdp_payload_type_with_a_sign() {
    use vocalized_media::io::webrtc::signalling::check_offer;
    let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 11\r\na=rtpmap:+11 opus/48000/2\r\n";
    assert!(check_offer(offer).is_err());
    fuzzing::sdp_offer(format!("application/sdp\n{offer}").as_bytes());
}
