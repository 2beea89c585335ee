//! Barge-in: the caller talks over the agent. The caller leg is cleared in the same
//! step, queued agent audio is dropped, the provider's item is truncated at what the
//! caller heard, and the mark echoes a `clear` causes do not count as heard.

mod support;

use support::*;
use vocalized_media::core::session::{Input, ProviderEvent, SessionConfig};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEventKind, Role};
use vocalized_shared::plan::CallSource;

/// A Twilio call playing a 1 s agent turn (ten 100 ms deltas) that started at 1 s.
fn call_playing_a_long_turn(settings: &CallSettings) -> Harness {
    let mut h = Harness::twilio_passthrough(settings);
    h.start();
    h.advance_to(1_000);
    for _ in 0..10 {
        h.agent_audio("item_long", &[0x55; 800]);
    }
    h
}

#[test]
fn speech_started_clears_truncates_at_heard_ms_and_ignores_late_marks() {
    let mut h = call_playing_a_long_turn(&settings());
    h.transcript(
        Role::Assistant,
        "A long answer that goes on.",
        Some("item_long"),
    );
    // Marks for the first 400 ms echo as they play; the caller speaks 30 ms later.
    h.advance_to(1_430);
    assert_eq!(h.session.counters().marks_acked, 4);

    let step = h.provider(ProviderEvent::SpeechStarted);
    assert_eq!(step[0], Out::Clear, "clear first, in the same step");
    let Out::Truncate {
        item_id,
        audio_end_ms,
    } = &step[1]
    else {
        panic!("expected a truncate, got {step:?}");
    };
    assert_eq!(item_id, "item_long");
    assert!(
        (410..=450).contains(audio_end_ms),
        "heard {audio_end_ms} ms, expected 430 ± 20"
    );
    let kinds = kinds(&step);
    assert!(kinds.contains(&CallEventKind::BargeIn {
        item_id: "item_long".into(),
        heard_ms: *audio_end_ms,
    }));
    // The held transcript goes out now, marked as cut off at what was heard.
    assert!(kinds.iter().any(|k| matches!(
        k,
        CallEventKind::Transcript { role: Role::Assistant, truncated: true, start_ms: 1_000, end_ms, .. }
            if *end_ms == 1_000 + audio_end_ms
    )));
    assert!(
        !step
            .iter()
            .any(|o| matches!(o, Out::Media(_) | Out::Mark(_)))
    );

    // Twilio echoes the six cleared marks; none counts as heard.
    let late = std::mem::take(&mut h.twilio.cleared_echoes);
    assert_eq!(late.len(), 6);
    for name in &late {
        assert!(h.mark_echo(name).is_empty());
    }
    assert_eq!(h.session.counters().stale_marks, 6);
    assert_eq!(h.session.counters().marks_acked, 4);
    assert_eq!(h.session.counters().unknown_marks, 0);

    // The provider's remaining audio for the cut item is dropped; the next turn plays.
    assert!(h.agent_audio("item_long", &[0x55; 800]).is_empty());
    assert_eq!(h.session.counters().audio_for_truncated_items, 1);
    let next = h.agent_audio("item_next", &[0x55; 160]);
    assert!(matches!(next[0], Out::Media(_)));
    assert_event_order(&h.events());
}

#[test]
fn queued_but_unpolled_agent_audio_is_dropped() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    // The driver has not drained yet when the caller starts speaking.
    let now = h.now;
    h.session.handle_input(
        Input::Provider(ProviderEvent::AudioDelta {
            item_id: "i1",
            audio: &[0x55; 1_600],
        }),
        now,
    );
    h.session
        .handle_input(Input::Provider(ProviderEvent::SpeechStarted), now);
    let mut outs = Vec::new();
    while let Some(out) = h.session.poll_output() {
        outs.push(format!("{out:?}"));
    }
    assert!(!outs.iter().any(|o| o.contains("Media")), "{outs:?}");
    assert!(outs.iter().any(|o| o.contains("Clear")));
    assert!(outs.iter().any(|o| o.contains("Truncate")));
}

#[test]
fn truncate_is_clamped_to_what_was_sent() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.auto_echo = false; // Twilio never confirms: elapsed time alone says 5 s.
    h.agent_audio("i1", &[0x55; 400]); // 50 ms
    h.advance_to(5_000);
    let step = h.provider(ProviderEvent::Interrupted);
    assert!(step.contains(&Out::Truncate {
        item_id: "i1".into(),
        audio_end_ms: 50
    }));
}

#[test]
fn nothing_playing_means_no_clear() {
    let mut h = call_playing_a_long_turn(&settings());
    h.advance_to(2_500); // everything played and echoed
    let step = h.provider(ProviderEvent::SpeechStarted);
    assert!(step.is_empty(), "{step:?}");
}

#[test]
fn interruption_disabled_ignores_speech_started() {
    let mut h = call_playing_a_long_turn(&CallSettings {
        interruption_enabled: false,
        ..settings()
    });
    h.advance_to(1_300);
    let step = h.provider(ProviderEvent::SpeechStarted);
    assert!(step.is_empty(), "{step:?}");
    // The turn plays to the end and every mark counts.
    h.advance_to(2_500);
    assert_eq!(h.session.counters().marks_acked, 10);
}

#[test]
fn providers_that_do_not_self_cancel_get_cancel_response() {
    let mut config = SessionConfig::new(
        CallSource::Twilio,
        "openai",
        AudioFormat::Mulaw8k,
        AudioFormat::Mulaw8k,
        &settings(),
    );
    config.cancel_response_on_barge_in = true;
    let mut h = Harness::new(config);
    h.start();
    h.agent_audio("i1", &[0x55; 800]);
    h.advance_to(50);
    let step = h.provider(ProviderEvent::SpeechStarted);
    assert_eq!(step[0], Out::Clear);
    assert!(matches!(
        step[1],
        Out::Truncate {
            audio_end_ms: 50,
            ..
        }
    ));
    assert_eq!(step[2], Out::Cancel);
}

#[test]
fn web_barge_in_flushes_the_pacer_and_truncates_by_the_playout_clock() {
    let mut h = Harness::web(&settings());
    h.input(Input::WebAnswered);
    // 500 ms of 24 kHz agent audio arrives at once; the pacer plays it in real time.
    for _ in 0..5 {
        h.agent_audio("turn_1", &[0u8; 4_800]);
    }
    h.advance_to(260);
    let step = h.provider(ProviderEvent::Interrupted);
    assert_eq!(step[0], Out::WebFlush);
    let Out::Truncate { audio_end_ms, .. } = step[1] else {
        panic!("{step:?}");
    };
    // The resampler holds back a few ms, so the clock runs slightly behind 260.
    assert!((230..=270).contains(&audio_end_ms), "{audio_end_ms}");
}

#[test]
fn a_provider_switch_keeps_marks_and_barge_in_and_converts_to_the_new_formats() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.auto_echo = false;
    h.start();
    h.provider(ProviderEvent::Connected);
    // The first provider's turn is on its way to the caller when the provider dies.
    let chunk = vec![0x55u8; 800]; // 100 ms of µ-law
    let sent = h.agent_audio("item_old", &chunk);
    assert!(sent.contains(&Out::Mark("item_old:1".into())));
    h.agent_audio("item_old", &chunk);
    let pcm16 = AudioFormat::Pcm16 {
        sample_rate_hz: 16_000,
    };
    let pcm24 = AudioFormat::Pcm16 {
        sample_rate_hz: 24_000,
    };
    h.session
        .switch_provider("gemini", pcm16, pcm24, "provider_closed", h.now)
        .unwrap();
    let out = h.input(vocalized_media::core::session::Input::Timeout);
    assert!(matches!(
        &kinds(&out)[..],
        [CallEventKind::Failover { from, to, reason }]
            if from == "openai" && to == "gemini" && reason == "provider_closed"
    ));
    // Caller audio now goes out as 16 kHz PCM: 20 ms of µ-law is 640 bytes.
    let mut bytes = 0;
    for _ in 0..10 {
        for out in h.caller_media(&[0x7Fu8; 160]) {
            if let Out::ProviderAudio(b) = out {
                bytes += b.len();
            }
        }
    }
    assert!((5_000..=6_400).contains(&bytes), "{bytes}");
    // The old turn's mark still counts, and barge-in still cuts it at what was heard.
    h.advance_to(100);
    h.mark_echo("item_old:1");
    assert_eq!(h.session.counters().marks_acked, 1);
    h.advance_to(150);
    let out = h.provider(ProviderEvent::Interrupted);
    assert!(out.contains(&Out::Clear), "{out:?}");
    // The provider that sent it is gone: no truncate for the new one, which never knew
    // the item; the barge-in is recorded at what the caller heard.
    assert!(
        !out.iter().any(|o| matches!(o, Out::Truncate { .. })),
        "{out:?}"
    );
    assert!(
        kinds(&out)
            .iter()
            .any(|k| matches!(k, CallEventKind::BargeIn { item_id, heard_ms }
            if item_id == "item_old" && (100..=200).contains(heard_ms))),
        "{out:?}"
    );
    // The new provider's 24 kHz audio reaches the caller as µ-law at 8 kHz.
    let pcm = vec![0u8; 4_800]; // 100 ms at 24 kHz
    let media: usize = h
        .agent_audio("gemini_turn_1", &pcm)
        .iter()
        .map(|o| match o {
            Out::Media(b) => b.len(),
            _ => 0,
        })
        .sum();
    assert!((600..=800).contains(&media), "{media}");
    // A format the session cannot carry is refused and changes nothing.
    assert!(
        h.session
            .switch_provider(
                "odd",
                AudioFormat::Pcm16 {
                    sample_rate_hz: 11_025
                },
                pcm24,
                "x",
                h.now
            )
            .is_err()
    );
    assert_eq!(h.session.config().provider, "gemini");
}
