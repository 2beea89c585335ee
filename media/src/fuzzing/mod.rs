//! Fuzz targets for every parser of untrusted input in the media plane, as plain
//! functions of a byte slice, so that one body serves three drivers: the stable driver in
//! [`engine`] (`media/tests/fuzz.rs`, in CI and for long runs), the cargo-fuzz project in
//! `media/fuzz` (nightly, coverage-guided) and the regression tests of inputs that once
//! crashed.
//!
//! Each target asserts properties, not only "no panic":
//! - parse, then act, is total: whatever parses is handed to a real `CallSession`, and
//!   its events still count 1, 2, 3, ... with times that never go back;
//! - a rejected input is an error value (or a `malformed` count), and emits nothing;
//! - what can round-trip does (Twilio marks and media, PCM, G.711, chunked resampling).
//!
//! Multi-message targets split their input on `0xFF`, a byte no UTF-8 text contains; a
//! frame starting with `0xFE` is a binary WebSocket frame.
//!
//! Not part of the API: hidden from the docs, and free to change.

pub mod engine;
pub mod seeds;

use crate::core::session::{CallSession, Input, Output, ProviderEvent, SessionConfig};
use crate::core::wire::{deepgram, elevenlabs, gemini, openai, twilio};
use crate::core::{g711, opus, pcm, resample};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use std::borrow::Cow;
use std::time::{Duration, Instant};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::CallEvent;
use vocalized_shared::plan::CallSource;

/// Arbitrary bytes as a sequence of Opus packets (each prefixed by a length byte):
/// decode, FEC-decode and conceal return errors, never crash or write out of bounds.
pub fn opus_decode(data: &[u8]) {
    let Ok(mut decoder) = opus::OpusDecoder::new() else {
        return;
    };
    let mut out = [0i16; opus::OPUS_MAX_PACKET_SAMPLES];
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        match packet.first().map(|b| b % 4) {
            // Exercise the lost-packet paths too, driven by the data.
            Some(0) => {
                let _ = decoder.decode_fec(packet, &mut out);
            }
            Some(1) => {
                let _ = decoder.conceal(&mut out);
            }
            _ => {}
        }
        if let Ok(n) = decoder.decode(packet, &mut out) {
            assert!(n <= opus::OPUS_MAX_PACKET_SAMPLES);
        }
    }
}

/// Arbitrary bytes through both G.711 decoders and back through the encoders: one
/// sample per byte, and every code survives decode -> encode (µ-law -0 becomes +0).
pub fn g711_decode(data: &[u8]) {
    let mut pcm = Vec::new();
    let mut bytes = Vec::new();
    g711::ulaw_to_pcm(data, &mut pcm);
    assert_eq!(pcm.len(), data.len());
    g711::pcm_to_ulaw(&pcm, &mut bytes);
    for (&code, &back) in data.iter().zip(&bytes) {
        assert_eq!(back, if code == 0x7F { 0xFF } else { code });
    }
    pcm.clear();
    bytes.clear();
    g711::alaw_to_pcm(data, &mut pcm);
    g711::pcm_to_alaw(&pcm, &mut bytes);
    assert_eq!(bytes, data);
}

/// Arbitrary bytes as PCM16 LE: odd lengths are reported, never a panic, and whole
/// samples round-trip byte for byte.
pub fn pcm_parse(data: &[u8]) {
    let mut samples = Vec::new();
    let whole = pcm::le_bytes_to_samples(data, &mut samples);
    assert_eq!(whole, data.len().is_multiple_of(2));
    assert_eq!(samples.len(), data.len() / 2);
    let mut back = Vec::new();
    pcm::samples_to_le_bytes(&samples, &mut back);
    assert_eq!(back, data[..data.len() & !1]);
}

/// Arbitrary audio in arbitrary chunk lengths through every resampler pair: never a
/// panic, and the output is identical to resampling the same audio in one piece.
/// Layout: byte 0 picks the pair, bytes 1..9 are chunk lengths (×8 samples), the rest
/// is PCM16 LE audio.
pub fn resample_chunks(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let rates = resample::SUPPORTED_RATES_HZ;
    let from = rates[(data[0] & 3) as usize];
    let to = rates[((data[0] >> 2) & 3) as usize];
    let cuts = &data[1..9];
    let mut audio = Vec::new();
    pcm::le_bytes_to_samples(&data[9..], &mut audio);

    let Ok(mut whole) = resample::StreamResampler::new(from, to) else {
        return;
    };
    let mut expected = Vec::new();
    whole.process(&audio, &mut expected);

    let Ok(mut chunked) = resample::StreamResampler::new(from, to) else {
        return;
    };
    let mut got = Vec::new();
    let mut rest = &audio[..];
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (cut as usize * 8).clamp(1, rest.len());
        chunked.process(&rest[..n], &mut got);
        rest = &rest[n..];
    }
    assert_eq!(got, expected);
    assert_eq!(chunked.failed_blocks(), 0);
}

/// One WebSocket frame of a multi-frame input.
pub enum Frame<'a> {
    Text(Cow<'a, str>),
    Binary(&'a [u8]),
}

/// Splits on `0xFF`; a frame starting with `0xFE` is binary, any other is text (invalid
/// UTF-8 replaced, as a WebSocket text frame is always UTF-8).
pub fn frames(data: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    data.split(|&b| b == 0xFF).map(|f| match f.split_first() {
        Some((0xFE, rest)) => Frame::Binary(rest),
        _ => Frame::Text(String::from_utf8_lossy(f)),
    })
}

/// A call session under a scripted clock that checks its event order as it goes.
struct Session {
    session: CallSession,
    now: Instant,
    events: Vec<CallEvent>,
}

impl Session {
    fn new(source: CallSource, provider_input: AudioFormat, provider_output: AudioFormat) -> Self {
        let settings = CallSettings {
            silence_timeout: 30,
            max_call_duration: 600,
            end_call_phrase: "goodbye, end the call".into(),
            ..CallSettings::default()
        };
        let config = SessionConfig::new(source, "fuzz", provider_input, provider_output, &settings);
        Self {
            session: CallSession::new(config).expect("a session for supported formats"),
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    /// A Twilio-side session whose provider speaks µ-law (no resampler to build).
    fn twilio() -> Self {
        Self::new(
            CallSource::Twilio,
            AudioFormat::Mulaw8k,
            AudioFormat::Mulaw8k,
        )
    }

    fn input(&mut self, input: Input<'_>) {
        self.session.handle_input(input, self.now);
        self.drain();
    }

    /// Drains outputs, then lets 20 ms pass (firing a deadline that falls due).
    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            if let Output::Event(event) = out {
                self.events.push(event);
            }
        }
        if let Some(deadline) = self.session.poll_timeout() {
            assert!(deadline > self.now, "a deadline in the past");
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(20);
        if self
            .session
            .poll_timeout()
            .is_some_and(|deadline| deadline <= self.now)
        {
            self.input(Input::Timeout);
        }
    }

    fn finish(mut self) {
        self.input(Input::Provider(ProviderEvent::Closed));
        for (i, event) in self.events.iter().enumerate() {
            assert_eq!(event.seq, i as u64 + 1, "seq of {event:?}");
        }
        for pair in self.events.windows(2) {
            assert!(pair[0].at_ms <= pair[1].at_ms, "time went back: {pair:?}");
        }
        let ends = self
            .events
            .iter()
            .filter(|e| matches!(e.kind, vocalized_shared::events::CallEventKind::Ended(_)))
            .count();
        assert!(ends <= 1, "the call ended {ends} times");
    }
}

/// Twilio Media Streams frames (one or more): each parses or is an error; what parses
/// drives a call session; marks and media round-trip through our outbound writer.
pub fn twilio_messages(data: &[u8]) {
    let mut session = Session::twilio();
    for frame in frames(data) {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(bytes) => String::from_utf8_lossy(bytes),
        };
        match twilio::Inbound::parse(&text) {
            Ok(message) => {
                // Only a JSON object with an event name parses.
                let value: Value = serde_json::from_str(&text).expect("parsed, so it is JSON");
                assert!(value.get("event").is_some_and(Value::is_string), "{text}");
                twilio_round_trip(&message);
                session.input(Input::Twilio(&message));
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        session.tick();
    }
    session.finish();
}

/// Our outbound marks and media, read back by the inbound parser, are what was written.
fn twilio_round_trip(message: &twilio::Inbound) {
    match message {
        twilio::Inbound::Mark {
            stream_sid, mark, ..
        } => {
            let json = twilio::Outbound::Mark {
                stream_sid,
                name: &mark.name,
            }
            .to_json();
            match twilio::Inbound::parse(&json) {
                Ok(twilio::Inbound::Mark {
                    stream_sid: sid,
                    mark: back,
                    ..
                }) => {
                    assert_eq!(&sid, stream_sid);
                    assert_eq!(back, *mark);
                }
                other => panic!("our mark {json} read back as {other:?}"),
            }
        }
        twilio::Inbound::Media {
            stream_sid, media, ..
        } => {
            let Ok(payload) = BASE64.decode(media.payload.as_bytes()) else {
                return;
            };
            let json = twilio::Outbound::Media {
                stream_sid,
                payload: &payload,
            }
            .to_json();
            match twilio::Inbound::parse(&json) {
                Ok(twilio::Inbound::Media {
                    stream_sid: sid,
                    media: back,
                    ..
                }) => {
                    assert_eq!(&sid, stream_sid);
                    assert_eq!(BASE64.decode(back.payload.as_bytes()).ok(), Some(payload));
                }
                other => panic!("our media {json} read back as {other:?}"),
            }
        }
        _ => {}
    }
}

/// True if `text` is not JSON at all: every decoder must count it as malformed and
/// emit nothing.
fn not_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
}

/// OpenAI Realtime server events. Audio deltas carry exactly the base64-decoded bytes.
pub fn openai_events(data: &[u8]) {
    let mut session = Session::twilio();
    let mut decoder = openai::OpenAiDecoder::new("gpt-realtime");
    session.input(Input::Provider(ProviderEvent::Connected));
    for frame in frames(data) {
        let Frame::Text(text) = frame else {
            continue;
        };
        let expected_audio = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v["type"] == "response.output_audio.delta")
            .and_then(|v| v["delta"].as_str().map(|d| BASE64.decode(d)));
        let mut audio_seen = None;
        let before = decoder.malformed;
        let mut emitted = 0;
        decoder.handle_text(&text, |event| {
            emitted += 1;
            if let ProviderEvent::AudioDelta { audio, .. } = event {
                audio_seen = Some(audio.to_vec());
            }
            session
                .session
                .handle_input(Input::Provider(event), session.now);
        });
        session.drain();
        if not_json(&text) {
            assert_eq!(decoder.malformed, before + 1);
            assert_eq!(emitted, 0);
        }
        if let (Some(Ok(expected)), Some(seen)) = (expected_audio, &audio_seen) {
            assert_eq!(&expected, seen, "audio delta bytes differ from its base64");
        }
        session.tick();
    }
    session.finish();
}

/// Gemini Live server messages, as text or binary frames, then a close.
pub fn gemini_messages(data: &[u8]) {
    let mut session = Session::twilio();
    let mut decoder = gemini::GeminiDecoder::new("models/gemini-live");
    let mut last = None;
    for frame in frames(data) {
        match frame {
            Frame::Text(text) => {
                let before = decoder.malformed;
                let mut emitted = 0;
                decoder.handle_text(&text, |event| {
                    emitted += 1;
                    session
                        .session
                        .handle_input(Input::Provider(event), session.now);
                });
                if not_json(&text) || !text.trim_start().starts_with('{') {
                    assert_eq!(decoder.malformed, before + 1);
                    assert_eq!(emitted, 0);
                }
                last = Some(text.len());
            }
            Frame::Binary(bytes) => {
                decoder.handle_binary(bytes, |event| {
                    session
                        .session
                        .handle_input(Input::Provider(event), session.now);
                });
                last = Some(bytes.len());
            }
        }
        session.drain();
        // A handle once kept is never empty.
        assert!(decoder.latest_resume_handle() != Some(""));
        let _ = decoder.take_go_away();
        assert!(decoder.take_go_away().is_none(), "goAway reported twice");
        session.tick();
    }
    // The close code comes from the input too.
    let code = last.map(|n| 1000 + (n % 16) as u16);
    decoder.handle_close(code, "fuzz", |event| {
        session
            .session
            .handle_input(Input::Provider(event), session.now);
    });
    session.drain();
    session.finish();
}

/// ElevenLabs Agents server messages; every reply the decoder queues (pongs) is JSON.
pub fn elevenlabs_messages(data: &[u8]) {
    let mut session = Session::twilio();
    let mut decoder = elevenlabs::ElevenLabsDecoder::new(AudioFormat::Mulaw8k);
    for frame in frames(data) {
        let Frame::Text(text) = frame else {
            continue;
        };
        let before = decoder.malformed;
        let mut emitted = 0;
        decoder.handle_text(&text, |event| {
            emitted += 1;
            session
                .session
                .handle_input(Input::Provider(event), session.now);
        });
        session.drain();
        if not_json(&text) {
            assert_eq!(decoder.malformed, before + 1);
            assert_eq!(emitted, 0);
        }
        while let Some(reply) = decoder.poll_reply() {
            let v: Value = serde_json::from_str(&reply).expect("replies are JSON");
            assert_eq!(v["type"], "pong");
        }
        session.tick();
    }
    decoder.finish(|event| {
        session
            .session
            .handle_input(Input::Provider(event), session.now);
    });
    session.drain();
    session.finish();
}

/// Deepgram Voice Agent server messages and binary audio; the only reply is the
/// `Settings` given, at most once.
pub fn deepgram_messages(data: &[u8]) {
    const SETTINGS: &str = r#"{"type":"Settings"}"#;
    let mut session = Session::twilio();
    let mut decoder = deepgram::DeepgramDecoder::new(AudioFormat::Mulaw8k, SETTINGS.into());
    let mut replies = 0;
    for frame in frames(data) {
        match frame {
            Frame::Text(text) => {
                let before = decoder.malformed;
                let mut emitted = 0;
                decoder.handle_text(&text, |event| {
                    emitted += 1;
                    session
                        .session
                        .handle_input(Input::Provider(event), session.now);
                });
                if not_json(&text) {
                    assert_eq!(decoder.malformed, before + 1);
                    assert_eq!(emitted, 0);
                }
            }
            Frame::Binary(bytes) => decoder.handle_binary(bytes, |event| {
                session
                    .session
                    .handle_input(Input::Provider(event), session.now);
            }),
        }
        session.drain();
        while let Some(reply) = decoder.poll_reply() {
            assert_eq!(reply, SETTINGS);
            replies += 1;
        }
        assert!(replies <= 1, "Settings sent twice");
        session.tick();
    }
    decoder.finish(|event| {
        session
            .session
            .handle_input(Input::Provider(event), session.now);
    });
    session.drain();
    session.finish();
}

/// A WebRTC offer body: the content-type check and the offer check never panic, a
/// refusal is a 400 `invalid_offer`, an accepted offer really offers that payload type
/// as Opus, and webrtc-rs's SDP parser (which `peer::answer` runs next) returns a
/// value or an error. The first line of the input is the Content-Type header.
pub fn sdp_offer(data: &[u8]) {
    use crate::io::webrtc::signalling::{check_content_type, check_offer};
    use axum::http::StatusCode;
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let content_type = String::from_utf8_lossy(content_type);
    if let Err(refusal) = check_content_type(Some(&content_type)) {
        assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    // The route refuses a body that is not UTF-8 before checking it.
    let Ok(sdp) = std::str::from_utf8(body) else {
        return;
    };
    match check_offer(sdp) {
        Ok(pt) => {
            let offered = sdp
                .lines()
                .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
                .any(|map| {
                    let (p, codec) = map.split_once(' ').unwrap_or((map, ""));
                    p.bytes().all(|b| b.is_ascii_digit())
                        && p.parse() == Ok(pt)
                        && codec.to_ascii_lowercase().starts_with("opus/48000")
                });
            assert!(offered, "accepted payload type {pt} is not offered as Opus");
            assert!(sdp.contains("m=audio "), "accepted an offer without audio");
        }
        Err(refusal) => {
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
            assert_eq!(refusal.body()["error"]["code"], "invalid_offer");
        }
    }
    let _ = webrtc::peer_connection::RTCSessionDescription::offer(sdp.to_owned());
}

/// `(name, body)` of every target, for drivers that run them all.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("opus_decode", opus_decode),
    ("g711_decode", g711_decode),
    ("pcm_parse", pcm_parse),
    ("resample_chunks", resample_chunks),
    ("twilio_messages", twilio_messages),
    ("openai_events", openai_events),
    ("gemini_messages", gemini_messages),
    ("elevenlabs_messages", elevenlabs_messages),
    ("deepgram_messages", deepgram_messages),
    ("sdp_offer", sdp_offer),
];
