//! A whole call, start to hang-up: answer, greeting, caller speech, transcripts, usage,
//! caller stop. Events come out in order with increasing seq ids.

mod support;

use support::*;
use vocalized_media::core::session::{CallState, ProviderEvent};
use vocalized_shared::events::{CallEventKind, EndReason, Role, Usage};

#[test]
fn a_twilio_call_from_answer_to_hangup() {
    let mut h = Harness::twilio_passthrough(&settings());
    assert!(h.session.is_passthrough());
    assert_eq!(h.session.poll_timeout(), None, "no deadlines before answer");

    h.twilio_json(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
    h.start();
    h.provider(ProviderEvent::Connected);

    // Greeting: 3 deltas of 100 ms µ-law arrive at 300 ms, faster than real time.
    h.advance_to(300);
    let greeting: Vec<u8> = (0..800u32).map(|i| (i % 251) as u8).collect();
    let mut step = Vec::new();
    for _ in 0..3 {
        step.extend(h.agent_audio("item_greet", &greeting));
    }
    // Pass-through: the caller gets the provider's bytes, each chunk followed by its mark.
    assert_eq!(step[0], Out::Media(greeting.clone()));
    assert_eq!(step[1], Out::Mark("item_greet:1".into()));
    assert_eq!(step[2], Out::Event(h.events()[2].clone()));
    assert_eq!(step[3], Out::Media(greeting.clone()));
    assert_eq!(step[4], Out::Mark("item_greet:2".into()));
    assert_eq!(step.len(), 7);
    assert_eq!(
        h.events()[2].kind,
        CallEventKind::ProviderAudioStarted { ttfa_ms: 300 }
    );

    // The assistant transcript arrives long before the audio has played: it is held
    // until the caller has heard the turn.
    h.transcript(Role::Assistant, "Hi, how can I help?", Some("item_greet"));
    assert!(
        !kinds(&h.log)
            .iter()
            .any(|k| matches!(k, CallEventKind::Transcript { .. }))
    );
    h.advance_to(700);
    let assistant = h
        .events()
        .into_iter()
        .find(|e| matches!(e.kind, CallEventKind::Transcript { .. }))
        .expect("released once played");
    assert_eq!(assistant.at_ms, 600, "released when the last mark echoed");
    assert_eq!(
        assistant.kind,
        CallEventKind::Transcript {
            role: Role::Assistant,
            text: "Hi, how can I help?".into(),
            start_ms: 300,
            end_ms: 600,
            confidence: None,
            truncated: false,
        }
    );

    // The caller speaks: audio goes to the provider unchanged.
    h.advance_to(1_000);
    h.provider(ProviderEvent::SpeechStarted);
    let frame = loud_mulaw(160);
    let mut to_provider = Vec::new();
    for i in 0..50 {
        h.advance_to(1_000 + i * 20);
        for out in h.caller_media(&frame) {
            if let Out::ProviderAudio(bytes) = out {
                to_provider.extend(bytes);
            }
        }
    }
    assert_eq!(to_provider.len(), 50 * 160);
    assert!(to_provider.chunks(160).all(|c| c == frame.as_slice()));
    assert_eq!(h.session.counters().caller_frames, 50);

    h.advance_to(2_100);
    h.transcript(Role::User, "I'd like to book a table.", None);
    let usage = Usage {
        input_audio_tokens: 120,
        output_audio_tokens: 80,
        ..Usage::default()
    };
    h.provider(ProviderEvent::Usage {
        model: "gpt-realtime",
        usage: &usage,
    });

    h.advance_to(3_000);
    let last = h.stop();
    assert_eq!(
        last,
        vec![Out::Close, Out::Event(h.events().last().unwrap().clone())]
    );
    assert_eq!(
        h.session.state(),
        &CallState::Ended(EndReason::CallerHangup)
    );

    let events = h.events();
    assert_event_order(&events);
    let names: Vec<&str> = events
        .iter()
        .map(|e| match &e.kind {
            CallEventKind::Answered => "answered",
            CallEventKind::ProviderConnected { .. } => "provider_connected",
            CallEventKind::ProviderAudioStarted { .. } => "audio_started",
            CallEventKind::Transcript { .. } => "transcript",
            CallEventKind::Usage { .. } => "usage",
            CallEventKind::Ended(_) => "ended",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "answered",
            "provider_connected",
            "audio_started",
            "transcript",
            "transcript",
            "usage",
            "ended"
        ]
    );
    // The user's turn runs from the provider's speech-started to the final transcript.
    assert!(matches!(
        &events[4].kind,
        CallEventKind::Transcript {
            role: Role::User,
            start_ms: 1_000,
            end_ms: 2_100,
            ..
        }
    ));
    assert!(matches!(
        &events[5].kind,
        CallEventKind::Usage { provider, model, usage: u }
            if provider == "openai" && model == "gpt-realtime" && u.output_audio_tokens == 80
    ));
    assert_eq!(events[6].at_ms, 3_000);
    assert_eq!(h.session.counters().marks_acked, 3);
    assert_eq!(h.session.counters().rejected_inputs(), 0);

    // After the end, nothing more happens and nothing panics.
    assert!(h.stop().is_empty());
    assert_eq!(h.session.poll_timeout(), None);
    assert_eq!(h.session.counters().inputs_after_end, 1);
}

#[test]
fn a_transcoded_twilio_call_converts_both_directions() {
    let mut h = Harness::twilio_transcode(&settings());
    assert!(!h.session.is_passthrough());
    h.start();
    // 20 ms of caller µ-law becomes 20 ms of PCM16 at 24 kHz (960 bytes) once the
    // resampler is primed.
    let mut provider_bytes = 0;
    for _ in 0..50 {
        for out in h.caller_media(&loud_mulaw(160)) {
            if let Out::ProviderAudio(bytes) = out {
                assert_eq!(bytes.len() % 2, 0);
                provider_bytes += bytes.len();
            }
        }
    }
    assert!(
        (40 * 960..=50 * 960).contains(&provider_bytes),
        "got {provider_bytes} bytes for 1 s"
    );

    // 100 ms of 24 kHz PCM from the provider becomes µ-law at 8 kHz for Twilio.
    let pcm: Vec<u8> = (0..2_400i16)
        .flat_map(|i| (((i % 48) - 24) * 500).to_le_bytes())
        .collect();
    let mut caller_bytes = 0;
    for _ in 0..10 {
        for out in h.agent_audio("item_1", &pcm) {
            if let Out::Media(bytes) = out {
                caller_bytes += bytes.len();
            }
        }
    }
    assert!(
        (7_000..=8_000).contains(&caller_bytes),
        "1 s of agent audio gave {caller_bytes} µ-law bytes"
    );
}

#[test]
fn a_web_call_answers_transcodes_and_hangs_up() {
    let mut h = Harness::web(&settings());
    assert_eq!(
        h.input(vocalized_media::core::session::Input::WebAnswered)
            .len(),
        1
    );
    let frame = [1_000i16; 960];
    let mut provider_bytes = 0;
    for _ in 0..50 {
        for out in h.input(vocalized_media::core::session::Input::WebAudio(&frame)) {
            if let Out::ProviderAudio(bytes) = out {
                provider_bytes += bytes.len();
            }
        }
    }
    // 48 kHz -> 16 kHz PCM16: 640 bytes per 20 ms.
    assert!((40 * 640..=50 * 640).contains(&provider_bytes));

    let pcm24 = vec![0u8; 4_800]; // 100 ms at 24 kHz
    let mut web_samples = 0;
    for _ in 0..10 {
        for out in h.agent_audio("turn_1", &pcm24) {
            if let Out::WebAudio(n) = out {
                web_samples += n;
            }
        }
    }
    assert!((40_000..=48_000).contains(&web_samples), "{web_samples}");
    let end = h.input(vocalized_media::core::session::Input::WebHangup);
    assert!(end.contains(&Out::Close));
    assert!(matches!(
        kinds(&end).last(),
        Some(CallEventKind::Ended(EndReason::CallerHangup))
    ));
    assert_event_order(&h.events());
}

#[test]
fn a_web_peer_that_never_connects_ends_not_connected_and_a_later_failure_is_a_hangup() {
    use vocalized_media::core::session::Input;
    let mut never = Harness::web(&settings());
    let end = never.input(Input::WebFailed);
    assert!(end.contains(&Out::Close), "the provider is closed");
    assert!(matches!(
        kinds(&end).last(),
        Some(CallEventKind::Ended(EndReason::NotConnected))
    ));
    assert!(never.session.is_ended());

    let mut dropped = Harness::web(&settings());
    dropped.input(Input::WebAnswered);
    let end = dropped.input(Input::WebFailed);
    assert!(matches!(
        kinds(&end).last(),
        Some(CallEventKind::Ended(EndReason::CallerHangup))
    ));
    assert_event_order(&dropped.events());
}
