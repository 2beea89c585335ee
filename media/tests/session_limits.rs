//! Call limits from the agent's settings: silence (prompt once, then end), maximum
//! duration (warn at 90 %, then end), end-call phrases and the agent's end_call tool
//! (after the goodbye already sent has played). The clock is scripted:
//! the tests jump straight to each deadline `poll_timeout` names.

mod support;

use support::*;
use vocalized_media::core::session::{CallState, ProviderEvent, SILENCE_PROMPT};
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEventKind, EndReason, Role};

fn says(outs: &[Out]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Say(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn silence_prompts_once_then_ends() {
    let mut h = Harness::twilio_passthrough(&settings()); // 30 s silence timeout
    h.start();
    // The greeting plays 0.0–0.5 s; silence counts from its end.
    h.agent_audio("greet", &[0x55; 4_000]);
    h.advance_to(500);
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.t0 + std::time::Duration::from_millis(30_500))
    );
    assert!(h.advance_to(30_499).is_empty());
    let prompt = h.advance_to(30_500);
    assert_eq!(says(&prompt), [SILENCE_PROMPT]);
    assert!(kinds(&prompt).contains(&CallEventKind::Warning {
        code: "caller_silent".into(),
        message: SILENCE_PROMPT.into(),
    }));

    // The provider speaks the prompt (1 s); the second timeout runs from its end.
    h.agent_audio("prompt", &[0x55; 8_000]);
    let quiet = h.advance_to(61_000);
    assert!(says(&quiet).is_empty(), "prompted only once: {quiet:?}");
    assert!(!h.session.is_ended());
    let end = h.advance_to(61_500);
    assert!(end.contains(&Out::Close));
    assert!(end.contains(&Out::Hangup));
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::SilenceTimeout))
    );
    assert_eq!(h.events().last().unwrap().at_ms, 61_500);
    assert_event_order(&h.events());
}

#[test]
fn caller_speech_resets_the_silence_clock_and_the_prompt() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.advance_to(30_000);
    assert_eq!(says(&h.log), [SILENCE_PROMPT]);
    // The caller answers (the provider's VAD hears it); silence starts over.
    h.advance_to(35_000);
    h.provider(ProviderEvent::SpeechStarted);
    h.transcript(Role::User, "Yes, still here.", None);
    assert!(h.advance_to(64_999).is_empty());
    // A new silence gets a new prompt rather than ending the call.
    let again = h.advance_to(65_000);
    assert_eq!(says(&again), [SILENCE_PROMPT]);
    assert!(!h.session.is_ended());
}

#[test]
fn loud_caller_audio_counts_as_speech_even_without_provider_vad() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.advance_to(20_000);
    for i in 0..15 {
        h.advance_to(20_000 + i * 20);
        h.caller_media(&loud_mulaw(160));
    }
    // 300 ms of voiced audio: the clock restarted during it.
    assert!(h.advance_to(30_000).is_empty());
    assert!(says(&h.advance_to(50_300)).len() == 1);

    // Quiet line noise does not.
    let mut q = Harness::twilio_passthrough(&settings());
    q.start();
    for i in 0..500 {
        q.advance_to(i * 20);
        q.caller_media(&[0xFE; 160]);
    }
    assert_eq!(says(&q.advance_to(30_000)), [SILENCE_PROMPT]);
}

#[test]
fn max_duration_warns_at_ninety_percent_then_ends() {
    let settings = CallSettings {
        max_call_duration: 600,
        silence_timeout: 300,
        ..settings()
    };
    let mut h = Harness::twilio_passthrough(&settings);
    h.start();
    // Keep the caller busy so silence never triggers.
    for s in (0..540).step_by(60) {
        h.advance_to(s * 1_000);
        h.provider(ProviderEvent::SpeechStarted);
    }
    let log_before = h.log.len();
    h.advance_to(539_999);
    assert!(says(&h.log[log_before..]).is_empty());
    let warn = h.advance_to(540_000);
    assert_eq!(says(&warn), ["This call will end in one minute."]);
    assert!(kinds(&warn).iter().any(|k| matches!(
        k,
        CallEventKind::Warning { code, .. } if code == "max_duration_approaching"
    )));
    assert!(!h.session.is_ended());
    h.advance_to(599_999);
    assert!(!h.session.is_ended());
    let end = h.advance_to(600_000);
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::MaxDuration))
    );
    assert_eq!(h.events().last().unwrap().at_ms, 600_000);
    assert_eq!(h.session.poll_timeout(), None);
    assert_event_order(&h.events());
}

#[test]
fn the_end_call_phrase_in_a_final_caller_transcript_ends_the_call() {
    let mut h = Harness::twilio_passthrough(&settings()); // "goodbye, end the call"
    h.start();
    h.advance_to(5_000);
    // Partial transcripts and the agent saying it do not end the call.
    h.provider(ProviderEvent::Transcript {
        role: Role::User,
        text: "ok goodbye",
        is_final: false,
        item_id: None,
        confidence: None,
    });
    h.transcript(Role::Assistant, "Goodbye!", None);
    h.transcript(Role::User, "Maybe goodbyes are hard", None);
    assert!(!h.session.is_ended());

    h.advance_to(6_000);
    let end = h.transcript(Role::User, "Thanks, GOODBYE.", None);
    let k = kinds(&end);
    assert!(matches!(&k[0], CallEventKind::Transcript { text, .. } if text == "Thanks, GOODBYE."));
    assert_eq!(
        k.last(),
        Some(&CallEventKind::Ended(EndReason::EndCallPhrase))
    );
    assert!(end.contains(&Out::Close) && end.contains(&Out::Hangup));
    assert_eq!(
        h.session.state(),
        &CallState::Ended(EndReason::EndCallPhrase)
    );
}

#[test]
fn the_agents_end_call_tool_ends_the_call() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    let end = h.provider(ProviderEvent::ToolCall {
        call_id: "c1",
        name: "end_call",
        arguments: "{}",
    });
    let k = kinds(&end);
    assert!(matches!(&k[0], CallEventKind::ToolCall { name, .. } if name == "end_call"));
    assert_eq!(k[1], CallEventKind::Ended(EndReason::AgentEndedCall));
}

#[test]
fn a_fatal_provider_error_ends_the_call_and_a_recoverable_one_does_not() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.provider(ProviderEvent::Error {
        fatal: false,
        code: "invalid_request_error",
        message: "bad field",
    });
    assert!(!h.session.is_ended());
    assert_eq!(h.session.counters().provider_errors, 1);
    let end = h.provider(ProviderEvent::Error {
        fatal: true,
        code: "session_expired",
        message: "60 minutes",
    });
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::ProviderError {
            code: "session_expired".into()
        }))
    );
}

#[test]
fn dtmf_is_an_event_and_counts_as_caller_activity() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.advance_to(29_000);
    let step = h.twilio_json(
        r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"7"}}"#,
    );
    assert_eq!(kinds(&step), [CallEventKind::Dtmf { digit: "7".into() }]);
    assert_eq!(events(&step)[0].at_ms, 29_000);
    assert!(h.advance_to(58_999).is_empty());
    assert_eq!(says(&h.advance_to(59_000)), [SILENCE_PROMPT]);
}

#[test]
fn the_goodbye_plays_out_before_the_call_ends() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.advance_to(1_000);
    // The agent says goodbye (1 s of audio), then calls its end_call tool.
    for _ in 0..5 {
        h.agent_audio("bye", &[0x55; 1_600]);
    }
    let step = h.provider(ProviderEvent::ToolCall {
        call_id: "c1",
        name: "end_call",
        arguments: "{}",
    });
    assert!(!step.contains(&Out::Hangup));
    assert_eq!(
        h.session.state(),
        &CallState::Ending(EndReason::AgentEndedCall)
    );
    // The caller talking over the goodbye does not cut it.
    h.advance_to(1_500);
    assert!(h.provider(ProviderEvent::SpeechStarted).is_empty());

    h.advance_to(1_999);
    assert!(!h.session.is_ended());
    let end = h.advance_to(2_000);
    assert!(end.contains(&Out::Close) && end.contains(&Out::Hangup));
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::AgentEndedCall))
    );
    assert_eq!(h.events().last().unwrap().at_ms, 2_000);
    assert_eq!(
        h.twilio.played_bytes, 8_000,
        "all of the goodbye was played"
    );
}

#[test]
fn an_unconfirmed_goodbye_ends_after_the_grace_period() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.auto_echo = false; // Twilio never echoes the marks.
    h.agent_audio("bye", &[0x55; 8_000]);
    h.advance_to(100);
    h.transcript(Role::User, "goodbye", None);
    assert_eq!(
        h.session.state(),
        &CallState::Ending(EndReason::EndCallPhrase)
    );
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.t0 + std::time::Duration::from_millis(5_100))
    );
    let end = h.advance_to(5_100);
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::EndCallPhrase))
    );
}

#[test]
fn a_caller_hanging_up_during_the_goodbye_keeps_the_first_reason() {
    let mut h = Harness::twilio_passthrough(&settings());
    h.start();
    h.agent_audio("bye", &[0x55; 8_000]);
    h.transcript(Role::User, "goodbye", None);
    let end = h.stop();
    assert!(end.contains(&Out::Close) && !end.contains(&Out::Hangup));
    assert_eq!(
        kinds(&end).last(),
        Some(&CallEventKind::Ended(EndReason::EndCallPhrase))
    );
}
