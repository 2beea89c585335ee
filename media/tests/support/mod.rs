//! Shared helpers for the session scenario tests: a scripted clock, a driver that drains
//! `poll_output` into owned records, and a fake Twilio that plays agent audio in real
//! time and echoes marks the way Twilio does (in order when played, all at once on
//! `clear`).

#![allow(dead_code)] // each test file uses a different subset

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use vocalized_media::core::session::{
    CallSession, CallerOutput, Input, Output, ProviderCommand, ProviderEvent, SessionConfig,
};
use vocalized_media::core::wire::twilio::{self, Outbound};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind, Role};
use vocalized_shared::plan::CallSource;

pub const PCM24: AudioFormat = AudioFormat::Pcm16 {
    sample_rate_hz: 24_000,
};

/// An owned copy of one output, so tests can inspect a step after draining it.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    Media(Vec<u8>),
    Mark(String),
    Clear,
    WebAudio(usize),
    WebFlush,
    Hangup,
    ProviderAudio(Vec<u8>),
    Truncate { item_id: String, audio_end_ms: u64 },
    Cancel,
    Say(String),
    Close,
    Event(CallEvent),
}

/// Plays agent audio in real time and echoes marks: when played, or at once on `clear`.
#[derive(Default)]
pub struct FakeTwilio {
    playout_end: Option<Instant>,
    /// Marks waiting for their audio to play, with the time it will have played.
    pending: VecDeque<(String, Instant)>,
    /// Echoes of marks a `clear` discarded; the test decides when they arrive.
    pub cleared_echoes: Vec<String>,
    pub played_bytes: usize,
}

impl FakeTwilio {
    fn on_output(&mut self, out: &Out, now: Instant) {
        match out {
            Out::Media(bytes) => {
                let start = self.playout_end.map_or(now, |end| end.max(now));
                self.playout_end =
                    Some(start + Duration::from_micros(bytes.len() as u64 * 1000 / 8));
                self.played_bytes += bytes.len();
            }
            Out::Mark(name) => {
                let at = self.playout_end.unwrap_or(now).max(now);
                self.pending.push_back((name.clone(), at));
            }
            Out::Clear => {
                self.cleared_echoes
                    .extend(self.pending.drain(..).map(|(name, _)| name));
                self.playout_end = None;
            }
            _ => {}
        }
    }

    fn next_echo_at(&self) -> Option<Instant> {
        self.pending.front().map(|(_, at)| *at)
    }
}

/// A session under a scripted clock.
pub struct Harness {
    pub session: CallSession,
    pub t0: Instant,
    pub now: Instant,
    /// Everything output so far, in order.
    pub log: Vec<Out>,
    pub twilio: FakeTwilio,
    /// Feed mark echoes back automatically as audio plays (Twilio calls only).
    pub auto_echo: bool,
}

pub fn settings() -> CallSettings {
    CallSettings {
        silence_timeout: 30,
        max_call_duration: 600,
        end_call_phrase: "goodbye, end the call".into(),
        ..CallSettings::default()
    }
}

impl Harness {
    pub fn new(config: SessionConfig) -> Self {
        let t0 = Instant::now();
        Self {
            session: CallSession::new(config).expect("valid session config"),
            t0,
            now: t0,
            log: Vec::new(),
            twilio: FakeTwilio::default(),
            auto_echo: true,
        }
    }

    /// A Twilio call to an OpenAI-like provider speaking `audio/pcmu`: pass-through.
    pub fn twilio_passthrough(settings: &CallSettings) -> Self {
        Self::new(SessionConfig::new(
            CallSource::Twilio,
            "openai",
            AudioFormat::Mulaw8k,
            AudioFormat::Mulaw8k,
            settings,
        ))
    }

    /// A Twilio call to a provider speaking PCM16 24 kHz both ways: transcode.
    pub fn twilio_transcode(settings: &CallSettings) -> Self {
        Self::new(SessionConfig::new(
            CallSource::Twilio,
            "openai",
            PCM24,
            PCM24,
            settings,
        ))
    }

    pub fn web(settings: &CallSettings) -> Self {
        Self::new(SessionConfig::new(
            CallSource::Web,
            "gemini",
            AudioFormat::Pcm16 {
                sample_rate_hz: 16_000,
            },
            PCM24,
            settings,
        ))
    }

    pub fn ms(&self) -> u64 {
        self.now.duration_since(self.t0).as_millis() as u64
    }

    /// Feeds one input at the current time and returns what it produced.
    pub fn input(&mut self, input: Input<'_>) -> Vec<Out> {
        self.session.handle_input(input, self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Out> {
        let mut step = Vec::new();
        while let Some(output) = self.session.poll_output() {
            step.push(own(output));
        }
        for out in &step {
            self.twilio.on_output(out, self.now);
        }
        self.log.extend(step.iter().cloned());
        step
    }

    pub fn twilio(&mut self, message: &twilio::Inbound) -> Vec<Out> {
        self.input(Input::Twilio(message))
    }

    pub fn twilio_json(&mut self, json: &str) -> Vec<Out> {
        let message = twilio::Inbound::parse(json).expect("valid twilio json");
        self.twilio(&message)
    }

    pub fn start(&mut self) -> Vec<Out> {
        self.twilio_json(
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1",
                "start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],
                "customParameters":{"token":"t"},
                "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
        )
    }

    pub fn caller_media(&mut self, mulaw: &[u8]) -> Vec<Out> {
        self.twilio(&media(mulaw))
    }

    pub fn mark_echo(&mut self, name: &str) -> Vec<Out> {
        self.twilio_json(&format!(
            r#"{{"event":"mark","sequenceNumber":"9","streamSid":"MZ1","mark":{{"name":"{name}"}}}}"#
        ))
    }

    pub fn stop(&mut self) -> Vec<Out> {
        self.twilio_json(
            r#"{"event":"stop","sequenceNumber":"99","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
        )
    }

    pub fn provider(&mut self, event: ProviderEvent<'_>) -> Vec<Out> {
        self.input(Input::Provider(event))
    }

    pub fn agent_audio(&mut self, item_id: &str, audio: &[u8]) -> Vec<Out> {
        self.provider(ProviderEvent::AudioDelta { item_id, audio })
    }

    pub fn transcript(&mut self, role: Role, text: &str, item_id: Option<&str>) -> Vec<Out> {
        self.provider(ProviderEvent::Transcript {
            role,
            text,
            is_final: true,
            item_id,
            confidence: None,
        })
    }

    /// Moves the clock to `ms` after the start, delivering on the way every mark echo
    /// the fake Twilio produces and every session timeout, each at its own instant.
    pub fn advance_to(&mut self, ms: u64) -> Vec<Out> {
        let target = self.t0 + Duration::from_millis(ms);
        let mut produced = Vec::new();
        loop {
            let echo = if self.auto_echo {
                self.twilio.next_echo_at()
            } else {
                None
            };
            let timeout = self.session.poll_timeout();
            let next = match (echo, timeout) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > target {
                break;
            }
            self.now = next.max(self.now);
            if echo == Some(next) {
                let (name, _) = self.twilio.pending.pop_front().expect("echo due");
                produced.extend(self.mark_echo(&name));
            } else {
                produced.extend(self.input(Input::Timeout));
            }
        }
        self.now = target.max(self.now);
        produced
    }

    pub fn events(&self) -> Vec<CallEvent> {
        events(&self.log)
    }
}

pub fn media(mulaw: &[u8]) -> twilio::Inbound {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(mulaw);
    twilio::Inbound::parse(&format!(
        r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}}}}"#
    ))
    .expect("valid media json")
}

pub fn events(outs: &[Out]) -> Vec<CallEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn kinds(outs: &[Out]) -> Vec<CallEventKind> {
    events(outs).into_iter().map(|e| e.kind).collect()
}

/// A loud 400 Hz-ish µ-law tone: the energy gate hears it as speech.
pub fn loud_mulaw(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 20 < 10 { 0x90 } else { 0x10 })
        .collect()
}

fn own(output: Output<'_>) -> Out {
    match output {
        Output::Caller(CallerOutput::Twilio(Outbound::Media { payload, .. })) => {
            Out::Media(payload.to_vec())
        }
        Output::Caller(CallerOutput::Twilio(Outbound::Mark { name, .. })) => {
            Out::Mark(name.to_owned())
        }
        Output::Caller(CallerOutput::Twilio(Outbound::Clear { .. })) => Out::Clear,
        Output::Caller(CallerOutput::WebAudio(samples)) => Out::WebAudio(samples.len()),
        Output::Caller(CallerOutput::WebFlush) => Out::WebFlush,
        Output::Caller(CallerOutput::Hangup) => Out::Hangup,
        Output::Provider(ProviderCommand::Audio(bytes)) => Out::ProviderAudio(bytes.to_vec()),
        Output::Provider(ProviderCommand::Truncate {
            item_id,
            audio_end_ms,
        }) => Out::Truncate {
            item_id: item_id.to_owned(),
            audio_end_ms,
        },
        Output::Provider(ProviderCommand::CancelResponse) => Out::Cancel,
        Output::Provider(ProviderCommand::Say { text }) => Out::Say(text.to_owned()),
        Output::Provider(ProviderCommand::Close) => Out::Close,
        Output::Event(event) => Out::Event(event),
    }
}

/// Every event's seq is one more than the last, and times never go backwards.
pub fn assert_event_order(events: &[CallEvent]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1, "seq of {event:?}");
    }
    for pair in events.windows(2) {
        assert!(pair[0].at_ms <= pair[1].at_ms, "time went back: {pair:?}");
    }
}
