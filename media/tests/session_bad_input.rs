//! Bad input is counted and skipped; the call goes on.

mod support;

use support::*;
use vocalized_media::core::session::{Input, ProviderEvent, SessionConfig};
use vocalized_media::core::wire::twilio;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::events::{CallEventKind, Role};
use vocalized_shared::plan::CallSource;

fn media_b64(payload: &str) -> twilio::Inbound {
    twilio::Inbound::parse(&format!(
        r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{payload}"}}}}"#
    ))
    .unwrap()
}

#[test]
fn twilio_bad_input_is_counted_and_the_call_goes_on() {
    let mut h = Harness::twilio_passthrough(&settings());

    // Before `start`: media, marks and keys have nowhere to go.
    assert!(h.caller_media(&[0xFF; 160]).is_empty());
    assert!(h.mark_echo("x:1").is_empty());
    assert!(h.agent_audio("i0", &[0xFF; 160]).is_empty());
    assert_eq!(h.session.counters().input_before_answer, 2);
    assert_eq!(h.session.counters().provider_audio_before_answer, 1);

    h.start();
    assert!(h.start().is_empty(), "second start ignored");
    assert_eq!(h.session.counters().duplicate_starts, 1);

    assert!(h.twilio(&media_b64("not base64!!")).is_empty());
    assert!(h.twilio(&media_b64("")).is_empty());
    let oversized = vec![0xFFu8; 8_001 + 3];
    assert!(h.caller_media(&oversized).is_empty());
    assert!(
        h.twilio_json(r#"{"event":"whatever","streamSid":"MZ1"}"#)
            .is_empty()
    );
    assert!(h.mark_echo("never:sent").is_empty());
    assert!(h.mark_echo("nocolon").is_empty());
    assert!(h.mark_echo("i1:42").is_empty());
    assert!(h.agent_audio("i1", &[]).is_empty());

    let c = h.session.counters().clone();
    assert_eq!(c.bad_base64, 1);
    assert_eq!(c.empty_frames, 2);
    assert_eq!(c.oversized_frames, 1);
    assert_eq!(c.unknown_caller_events, 1);
    assert_eq!(c.unknown_marks, 3);

    // An assistant transcript for an item never seen is still recorded, and counted.
    let t = h.transcript(Role::Assistant, "hm", Some("ghost"));
    assert!(matches!(kinds(&t)[0], CallEventKind::Transcript { .. }));
    assert_eq!(h.session.counters().unknown_items, 1);

    // The call still works.
    assert!(matches!(
        h.caller_media(&[0xFF; 160])[0],
        Out::ProviderAudio(_)
    ));
    assert!(matches!(
        h.agent_audio("i1", &[0xFF; 160])[0],
        Out::Media(_)
    ));
    assert!(!h.session.is_ended());
    assert_event_order(&h.events());
}

#[test]
fn odd_length_provider_pcm_loses_its_trailing_byte() {
    let pcm24 = AudioFormat::Pcm16 {
        sample_rate_hz: 24_000,
    };
    // Pass-through PCM (a WebRTC-like leg at 48 kHz) and a transcoded Twilio leg.
    let mut h = Harness::new(SessionConfig::new(
        CallSource::Twilio,
        "openai",
        pcm24,
        pcm24,
        &settings(),
    ));
    h.start();
    h.agent_audio("i1", &[1, 2, 3]);
    assert_eq!(h.session.counters().odd_length_pcm, 1);

    let web48 = AudioFormat::Pcm16 {
        sample_rate_hz: 48_000,
    };
    let mut w = Harness::new(SessionConfig::new(
        CallSource::Web,
        "echo",
        web48,
        web48,
        &settings(),
    ));
    w.input(Input::WebAnswered);
    let out = w.agent_audio("i1", &[1, 2, 3]);
    assert_eq!(out[0], Out::WebAudio(1));
    assert_eq!(w.session.counters().odd_length_pcm, 1);
    assert!(w.input(Input::WebAudio(&[])).is_empty());
    assert!(w.input(Input::WebAudio(&vec![0i16; 48_001])).is_empty());
    assert_eq!(w.session.counters().empty_frames, 1);
    assert_eq!(w.session.counters().oversized_frames, 1);
    // Twilio messages on a web call are not the caller's.
    assert!(w.caller_media(&[0xFF; 160]).is_empty());
    assert_eq!(w.session.counters().unknown_caller_events, 1);
}

#[test]
fn a_provider_closing_ends_the_call_without_closing_it_again() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    let end = h.provider(ProviderEvent::Closed);
    assert!(!end.contains(&Out::Close));
    assert!(end.contains(&Out::Hangup));
    assert!(h.session.is_ended());
    assert!(h.provider(ProviderEvent::SpeechStarted).is_empty());
    assert_eq!(h.session.counters().inputs_after_end, 1);
}

#[test]
fn opus_is_not_a_session_format() {
    let config = SessionConfig::new(
        CallSource::Web,
        "openai",
        AudioFormat::Opus48k,
        AudioFormat::Mulaw8k,
        &settings(),
    );
    assert!(vocalized_media::core::session::CallSession::new(config).is_err());
}
