//! A Twilio socket that misbehaves (issue 19): floods media far faster than real time, or
//! sends media, marks or a `stop` for another stream. The excess and the strays are
//! dropped and counted; the call goes on. Scripted clock, no sockets.

mod support;

use support::*;
use vocalized_media::core::session::{CALLER_AUDIO_BURST_MS, CallState, Input};
use vocalized_media::core::wire::twilio;

fn provider_audio_frames(outs: &[Out]) -> usize {
    outs.iter()
        .filter(|o| matches!(o, Out::ProviderAudio(_)))
        .count()
}

#[test]
fn a_media_flood_is_cut_to_real_time_and_the_call_goes_on() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    let frame = loud_mulaw(160); // 20 ms
    // 5 000 frames (100 s of audio) within the first second: 50 frames every 10 ms.
    let mut forwarded = 0;
    for step in 0..100u64 {
        h.advance_to(step * 10);
        for _ in 0..50 {
            forwarded += provider_audio_frames(&h.caller_media(&frame));
        }
    }
    // Real time so far (990 ms) plus the jitter allowance, in 20 ms frames.
    let allowed = ((990 + CALLER_AUDIO_BURST_MS) / 20) as usize;
    assert!(
        forwarded <= allowed + 1 && forwarded >= allowed - 1,
        "{forwarded} frames forwarded, about {allowed} allowed"
    );
    assert_eq!(
        h.session.counters().caller_audio_over_real_time as usize,
        5_000 - forwarded
    );
    // The flood stops; audio at real-time pace flows again once time catches up.
    h.advance_to(3_000);
    assert_eq!(provider_audio_frames(&h.caller_media(&frame)), 1);
    assert_eq!(h.session.state(), &CallState::Active);
}

#[test]
fn real_time_audio_with_jitter_bunches_is_never_dropped() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    let frame = loud_mulaw(160);
    let mut forwarded = 0;
    // A minute of audio, arriving in bunches of 25 frames (500 ms late, then all at once).
    for bunch in 0..120u64 {
        h.advance_to(bunch * 500 + 500);
        for _ in 0..25 {
            forwarded += provider_audio_frames(&h.caller_media(&frame));
        }
    }
    assert_eq!(forwarded, 3_000);
    assert_eq!(h.session.counters().caller_audio_over_real_time, 0);
}

#[test]
fn messages_for_another_stream_are_dropped_and_counted() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    let frame = loud_mulaw(160);
    let foreign_media = {
        use base64::Engine;
        let payload = base64::engine::general_purpose::STANDARD.encode(&frame);
        twilio::Inbound::parse(&format!(
            r#"{{"event":"media","streamSid":"MZother","media":{{"payload":"{payload}"}}}}"#
        ))
        .unwrap()
    };
    h.advance_to(20);
    assert!(h.twilio(&foreign_media).is_empty(), "not forwarded");
    assert!(
        h.twilio_json(r#"{"event":"mark","streamSid":"MZother","mark":{"name":"x"}}"#)
            .is_empty()
    );
    assert!(
        h.twilio_json(r#"{"event":"dtmf","streamSid":"MZother","dtmf":{"digit":"1"}}"#)
            .is_empty()
    );
    assert!(
        h.twilio_json(r#"{"event":"stop","streamSid":"MZother"}"#)
            .is_empty(),
        "another stream's stop does not hang this call up"
    );
    assert_eq!(h.session.counters().foreign_stream, 4);
    assert_eq!(h.session.state(), &CallState::Active);
    // This stream's audio still flows, and its own stop ends the call.
    assert_eq!(provider_audio_frames(&h.caller_media(&frame)), 1);
    h.stop();
    assert!(h.session.is_ended());
    // Web audio is cut to real time the same way.
    let mut w = Harness::web(&settings());
    w.input(Input::WebAnswered);
    let samples = vec![1_000i16; 960]; // 20 ms at 48 kHz
    let mut forwarded = 0;
    for _ in 0..1_000 {
        forwarded += provider_audio_frames(&w.input(Input::WebAudio(&samples)));
    }
    assert!(
        forwarded as u64 <= CALLER_AUDIO_BURST_MS / 20 + 1,
        "{forwarded} web frames forwarded at one instant"
    );
    assert_eq!(w.session.counters().caller_audio_over_real_time, 900);
}
