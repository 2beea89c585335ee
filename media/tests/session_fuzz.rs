//! Fuzz-style properties: arbitrary bytes as Twilio JSON never panic the parser, and
//! arbitrary sequences of inputs never panic the session and always yield events with
//! seq ids 1, 2, 3, ... and times that never go back.

mod support;

use proptest::prelude::*;
use std::time::{Duration, Instant};
use support::{PCM24, assert_event_order, settings};
use vocalized_media::core::session::{CallSession, Input, Output, ProviderEvent, SessionConfig};
use vocalized_media::core::wire::twilio;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::events::{CallEvent, Role, Usage};
use vocalized_shared::plan::CallSource;

/// One scripted step; byte payloads and names are arbitrary.
#[derive(Clone, Debug)]
enum Step {
    TwilioText(String),
    TwilioStart,
    TwilioMedia(Vec<u8>),
    TwilioMark(String),
    TwilioStop,
    WebAnswered,
    WebAudio(Vec<i16>),
    WebHangup,
    Audio(u8, Vec<u8>),
    SpeechStarted,
    Interrupted,
    Transcript(bool, bool, String, Option<u8>),
    ToolCall(String),
    Usage,
    Error(bool),
    Closed,
    Timeout,
    Wait(u32),
}

fn step() -> impl Strategy<Value = Step> {
    let name = "[a-z0-9_:]{0,12}";
    prop_oneof![
        ".{0,80}".prop_map(Step::TwilioText),
        Just(Step::TwilioStart),
        proptest::collection::vec(any::<u8>(), 0..400).prop_map(Step::TwilioMedia),
        name.prop_map(Step::TwilioMark),
        (0u8..3, 1u64..20).prop_map(|(item, seq)| Step::TwilioMark(format!("item{item}:{seq}"))),
        Just(Step::TwilioStop),
        Just(Step::WebAnswered),
        proptest::collection::vec(any::<i16>(), 0..2_000).prop_map(Step::WebAudio),
        Just(Step::WebHangup),
        (0u8..3, proptest::collection::vec(any::<u8>(), 0..1_200))
            .prop_map(|(item, audio)| Step::Audio(item, audio)),
        Just(Step::SpeechStarted),
        Just(Step::Interrupted),
        (
            any::<bool>(),
            any::<bool>(),
            ".{0,30}",
            proptest::option::of(0u8..4)
        )
            .prop_map(|(user, fin, text, item)| Step::Transcript(user, fin, text, item)),
        prop_oneof![Just("end_call".to_owned()), "[a-z_]{1,10}"].prop_map(Step::ToolCall),
        Just(Step::Usage),
        any::<bool>().prop_map(Step::Error),
        Just(Step::Closed),
        Just(Step::Timeout),
        (0u32..120_000).prop_map(Step::Wait),
    ]
}

fn json_for(step: &Step) -> Option<String> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Some(match step {
        Step::TwilioText(text) => text.clone(),
        Step::TwilioStart => {
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1"}}"#
                .to_owned()
        }
        Step::TwilioMedia(bytes) => format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{{"payload":"{}"}}}}"#,
            b64(bytes)
        ),
        Step::TwilioMark(name) => {
            format!(r#"{{"event":"mark","streamSid":"MZ1","mark":{{"name":"{name}"}}}}"#)
        }
        Step::TwilioStop => r#"{"event":"stop","streamSid":"MZ1"}"#.to_owned(),
        _ => return None,
    })
}

fn run(config: SessionConfig, steps: &[Step]) -> Vec<CallEvent> {
    let mut session = CallSession::new(config).unwrap();
    let t0 = Instant::now();
    let mut now = t0;
    let mut events = Vec::new();
    let usage = Usage::default();
    let items = ["item0", "item1", "item2", "item3"];
    for step in steps {
        if let Some(json) = json_for(step) {
            // Unparseable frames are the driver's to count; they never reach the session.
            if let Ok(message) = twilio::Inbound::parse(&json) {
                session.handle_input(Input::Twilio(&message), now);
            }
        } else {
            let input = match step {
                Step::WebAnswered => Input::WebAnswered,
                Step::WebAudio(samples) => Input::WebAudio(samples),
                Step::WebHangup => Input::WebHangup,
                Step::Audio(item, audio) => Input::Provider(ProviderEvent::AudioDelta {
                    item_id: items[usize::from(*item)],
                    audio,
                }),
                Step::SpeechStarted => Input::Provider(ProviderEvent::SpeechStarted),
                Step::Interrupted => Input::Provider(ProviderEvent::Interrupted),
                Step::Transcript(user, is_final, text, item) => {
                    Input::Provider(ProviderEvent::Transcript {
                        role: if *user { Role::User } else { Role::Assistant },
                        text,
                        is_final: *is_final,
                        item_id: item.map(|i| items[usize::from(i)]),
                        confidence: None,
                    })
                }
                Step::ToolCall(name) => Input::Provider(ProviderEvent::ToolCall {
                    call_id: "c",
                    name,
                    arguments: "{}",
                }),
                Step::Usage => Input::Provider(ProviderEvent::Usage {
                    model: "m",
                    usage: &usage,
                }),
                Step::Error(fatal) => Input::Provider(ProviderEvent::Error {
                    fatal: *fatal,
                    code: "e",
                    message: "m",
                }),
                Step::Closed => Input::Provider(ProviderEvent::Closed),
                Step::Timeout => {
                    if let Some(deadline) = session.poll_timeout() {
                        now = now.max(deadline);
                    }
                    Input::Timeout
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(u64::from(*ms));
                    Input::Timeout
                }
                _ => unreachable!("twilio steps are handled above"),
            };
            session.handle_input(input, now);
        }
        while let Some(out) = session.poll_output() {
            if let Output::Event(event) = out {
                events.push(event);
            }
        }
        if let Some(deadline) = session.poll_timeout() {
            // A deadline is never in the past after the session has seen `now`.
            assert!(deadline > now, "stale deadline");
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic_the_twilio_parser(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = twilio::Inbound::parse(&text);
    }

    #[test]
    fn arbitrary_twilio_shaped_json_never_panics(
        event in prop_oneof![Just("start"), Just("media"), Just("mark"), Just("dtmf"), Just("stop"), Just("x")],
        seq in prop_oneof![Just("\"1\"".to_owned()), Just("7".to_owned()), Just("\"x\"".to_owned()), Just("null".to_owned())],
        body in ".{0,40}",
    ) {
        let json = format!(r#"{{"event":"{event}","sequenceNumber":{seq},"streamSid":"MZ","{event}":{body}}}"#);
        let _ = twilio::Inbound::parse(&json);
    }

    #[test]
    fn arbitrary_input_sequences_keep_event_seqs_increasing(
        steps in proptest::collection::vec(step(), 0..60),
        kind in 0u8..4,
    ) {
        let (source, provider_in, provider_out) = match kind {
            0 => (CallSource::Twilio, AudioFormat::Mulaw8k, AudioFormat::Mulaw8k),
            1 => (CallSource::Twilio, PCM24, PCM24),
            2 => (CallSource::Web, AudioFormat::Pcm16 { sample_rate_hz: 16_000 }, PCM24),
            _ => (CallSource::Web, AudioFormat::Alaw8k, AudioFormat::Mulaw8k),
        };
        let config = SessionConfig::new(source, "p", provider_in, provider_out, &settings());
        let events = run(config, &steps);
        assert_event_order(&events);
        // At most one end, and nothing after it.
        let ended = events.iter().position(|e| matches!(e.kind, vocalized_shared::events::CallEventKind::Ended(_)));
        if let Some(at) = ended {
            prop_assert_eq!(at, events.len() - 1);
        }
    }
}
