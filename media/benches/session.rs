//! One 20 ms frame through `CallSession`: caller frame in, provider delta in, mark echo
//! in, every output drained (Twilio JSON written into a reused buffer, as the driver
//! does). Pass-through (Twilio µ-law <-> `audio/pcmu`) and transcode (Twilio µ-law <->
//! PCM16 24 kHz), and for comparison a WebRTC frame (PCM16 48 kHz <-> Gemini-style
//! 16 kHz in / 24 kHz out; Opus is the driver's and not included).
//!
//! `cargo bench -p vocalized-media --bench session -- --warm-up-time 1 --measurement-time 2`

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};
use vocalized_media::core::session::{
    CallSession, CallerOutput, Input, Output, ProviderCommand, ProviderEvent, SessionConfig,
};
use vocalized_media::core::wire::twilio;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::plan::CallSource;

struct Call {
    session: CallSession,
    caller: twilio::Inbound,
    delta: Vec<u8>,
    /// The mark echo, renamed in place each frame: parsing is the driver's cost, not
    /// the session's.
    mark: twilio::Inbound,
    frame: usize,
    t0: Instant,
    json: String,
}

/// Settings under which no limit fires while criterion runs millions of 20 ms frames
/// (days of simulated call); the caller's audio is loud, so silence never fires either.
fn endless_call() -> CallSettings {
    CallSettings {
        max_call_duration: u32::MAX,
        silence_timeout: 300,
        ..CallSettings::default()
    }
}

impl Call {
    fn new(provider: AudioFormat) -> Self {
        let settings = endless_call();
        let config = SessionConfig::new(CallSource::Twilio, "bench", provider, provider, &settings);
        let mut session = CallSession::new(config).unwrap();
        let t0 = Instant::now();
        let start = twilio::Inbound::parse(
            r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1"}}"#,
        )
        .unwrap();
        session.handle_input(Input::Twilio(&start), t0);
        while session.poll_output().is_some() {}

        let speech: Vec<u8> = (0..160)
            .map(|i| if i % 20 < 10 { 0x90 } else { 0x10 })
            .collect();
        let payload = base64::engine::general_purpose::STANDARD.encode(&speech);
        let caller = twilio::Inbound::parse(&format!(
            r#"{{"event":"media","streamSid":"MZ1","media":{{"payload":"{payload}"}}}}"#
        ))
        .unwrap();
        let delta_len = provider.bytes_per_ms().unwrap() as usize * 20;
        let mark = twilio::Inbound::parse(
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"item_1:0000000000"}}"#,
        )
        .unwrap();
        Self {
            session,
            caller,
            delta: (0..delta_len).map(|i| (i % 200) as u8).collect(),
            mark,
            frame: 0,
            t0,
            json: String::with_capacity(4096),
        }
    }

    fn drain(&mut self) -> usize {
        let mut sink = 0;
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Caller(CallerOutput::Twilio(message)) => {
                    self.json.clear();
                    message.write_json(&mut self.json);
                    sink += self.json.len();
                }
                Output::Provider(ProviderCommand::Audio(bytes)) => sink += bytes.len(),
                _ => sink += 1,
            }
        }
        sink
    }

    fn frame(&mut self) -> usize {
        let now = self.t0 + Duration::from_millis(20 * self.frame as u64);
        self.session.handle_input(Input::Twilio(&self.caller), now);
        let mut sink = self.drain();
        self.session.handle_input(
            Input::Provider(ProviderEvent::AudioDelta {
                item_id: "item_1",
                audio: &self.delta,
            }),
            now,
        );
        sink += self.drain();
        self.frame += 1;
        if let twilio::Inbound::Mark { mark, .. } = &mut self.mark {
            mark.name.clear();
            let _ = write!(mark.name, "item_1:{}", self.frame);
        }
        self.session.handle_input(Input::Twilio(&self.mark), now);
        sink += self.drain();
        sink
    }
}

/// A WebRTC call: the playout clock, not marks, decides what was heard.
struct WebCall {
    session: CallSession,
    caller: Vec<i16>,
    delta: Vec<u8>,
    frame: u64,
    t0: Instant,
}

impl WebCall {
    fn new() -> Self {
        let config = SessionConfig::new(
            CallSource::Web,
            "bench",
            AudioFormat::Pcm16 {
                sample_rate_hz: 16_000,
            },
            AudioFormat::Pcm16 {
                sample_rate_hz: 24_000,
            },
            &endless_call(),
        );
        let mut session = CallSession::new(config).unwrap();
        let t0 = Instant::now();
        session.handle_input(Input::WebAnswered, t0);
        while session.poll_output().is_some() {}
        Self {
            session,
            caller: (0..960)
                .map(|i| if i % 40 < 20 { 3_000 } else { -3_000 })
                .collect(),
            delta: (0..960).map(|i| (i % 200) as u8).collect(),
            frame: 0,
            t0,
        }
    }

    fn frame(&mut self) -> usize {
        let now = self.t0 + Duration::from_millis(20 * self.frame);
        self.frame += 1;
        let mut sink = 0;
        self.session
            .handle_input(Input::WebAudio(&self.caller), now);
        while let Some(out) = self.session.poll_output() {
            if let Output::Provider(ProviderCommand::Audio(bytes)) = out {
                sink += bytes.len();
            }
        }
        self.session.handle_input(
            Input::Provider(ProviderEvent::AudioDelta {
                item_id: "item_1",
                audio: &self.delta,
            }),
            now,
        );
        while let Some(out) = self.session.poll_output() {
            if let Output::Caller(CallerOutput::WebAudio(samples)) = out {
                sink += samples.len();
            }
        }
        sink
    }
}

fn session_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_frame_20ms");
    let mut passthrough = Call::new(AudioFormat::Mulaw8k);
    group.bench_function("twilio_passthrough_pcmu", |b| {
        b.iter(|| black_box(passthrough.frame()))
    });
    let mut transcode = Call::new(AudioFormat::Pcm16 {
        sample_rate_hz: 24_000,
    });
    group.bench_function("twilio_transcode_pcm24k", |b| {
        b.iter(|| black_box(transcode.frame()))
    });
    let mut web = WebCall::new();
    group.bench_function("web_transcode_48k_16k_24k", |b| {
        b.iter(|| black_box(web.frame()))
    });
    group.finish();
    assert!(!web.session.is_ended());
    assert_eq!(web.session.counters().rejected_inputs(), 0);
    // The frames measured real work: the calls are live and every mark was heard.
    for call in [&passthrough, &transcode] {
        assert!(!call.session.is_ended());
        assert_eq!(call.session.counters().rejected_inputs(), 0);
        assert_eq!(call.session.counters().marks_acked, call.frame as u64);
    }
}

criterion_group!(benches, session_frames);
criterion_main!(benches);
