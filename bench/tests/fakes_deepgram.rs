//! The fake Deepgram Voice Agent driven from the client side with the gateway's own codec
//! (`vocalized_media::core::wire::deepgram`) over a real socket: if these pass, the fake
//! and the codec agree on protocols.md §5.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vocalized_bench::audio;
use vocalized_bench::fakes::deepgram::{
    DeepgramBehaviour, DeepgramRecord, Failure, FakeDeepgram, FunctionScript,
};
use vocalized_media::core::session::{ProviderCommand, ProviderEvent};
use vocalized_media::core::wire::deepgram as dg;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::Role;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A decoded event, owned.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected,
    Audio {
        item_id: String,
        bytes: usize,
    },
    SpeechStarted,
    Transcript {
        user: bool,
        text: String,
    },
    Tool {
        id: String,
        name: String,
        args: String,
    },
    Usage {
        output_ms: u64,
    },
    Error {
        fatal: bool,
        code: String,
    },
}

fn own(e: ProviderEvent<'_>) -> Option<Seen> {
    Some(match e {
        ProviderEvent::Connected => Seen::Connected,
        ProviderEvent::AudioDelta { item_id, audio } => Seen::Audio {
            item_id: item_id.into(),
            bytes: audio.len(),
        },
        ProviderEvent::SpeechStarted => Seen::SpeechStarted,
        ProviderEvent::Transcript { role, text, .. } => Seen::Transcript {
            user: role == Role::User,
            text: text.into(),
        },
        ProviderEvent::ToolCall {
            call_id,
            name,
            arguments,
        } => Seen::Tool {
            id: call_id.into(),
            name: name.into(),
            args: arguments.into(),
        },
        ProviderEvent::Usage { usage, .. } => Seen::Usage {
            output_ms: usage.audio_output_ms,
        },
        ProviderEvent::Error { fatal, code, .. } => Seen::Error {
            fatal,
            code: code.into(),
        },
        _ => return None,
    })
}

fn setup(format: AudioFormat, greeting: &str) -> dg::DeepgramSetup {
    let settings = CallSettings {
        call_greeting: greeting.into(),
        ..CallSettings::default()
    };
    dg::DeepgramSetup {
        think_provider: "open_ai".into(),
        think_model: "gpt-4o-mini".into(),
        instructions: "You are a concise phone agent.".into(),
        settings,
        tools: vec![],
        format,
    }
}

struct Client {
    ws: Ws,
    decoder: dg::DeepgramDecoder,
    out: String,
}

impl Client {
    async fn connect(fake: &FakeDeepgram, setup: &dg::DeepgramSetup) -> Self {
        let mut request = dg::connect_url(&fake.url()).into_client_request().unwrap();
        let (name, value) = dg::api_key_header("dg-test-key");
        request.headers_mut().insert(name, value.parse().unwrap());
        let ws = tokio_tungstenite::connect_async(request).await.unwrap().0;
        Self {
            ws,
            decoder: dg::DeepgramDecoder::new(setup.format, dg::settings(setup)),
            out: String::new(),
        }
    }

    async fn command(&mut self, cmd: ProviderCommand<'_>) {
        let message = match dg::write_command(&cmd, &mut self.out) {
            Some(dg::Frame::Text(text)) => Message::text(text.to_owned()),
            Some(dg::Frame::Binary(bytes)) => Message::binary(bytes.to_vec()),
            None => return,
        };
        self.ws.send(message).await.unwrap();
    }

    async fn send_audio(&mut self, bytes: &[u8], frame: usize) {
        for chunk in bytes.chunks(frame) {
            self.command(ProviderCommand::Audio(chunk)).await;
        }
    }

    /// Feeds one server frame to the decoder and sends what it queued (Settings).
    async fn handle(&mut self, message: Message, seen: &mut Vec<Seen>) {
        match message {
            Message::Text(text) => self
                .decoder
                .handle_text(text.as_str(), |e| seen.extend(own(e))),
            Message::Binary(bytes) => self.decoder.handle_binary(&bytes, |e| seen.extend(own(e))),
            _ => {}
        }
        while let Some(reply) = self.decoder.poll_reply() {
            self.ws.send(Message::text(reply)).await.unwrap();
        }
    }

    /// Decoded events until `stop` matches one (included).
    async fn until(&mut self, mut stop: impl FnMut(&Seen) -> bool) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no server message in time")
                .expect("socket ended")
                .expect("socket error");
            let start = seen.len();
            self.handle(message, &mut seen).await;
            if let Some(i) = seen[start..].iter().position(&mut stop) {
                seen.truncate(start + i + 1);
                return seen;
            }
        }
    }

    /// Keeps reading until the fake's first record satisfies `check`.
    async fn serve_until(
        &mut self,
        fake: &FakeDeepgram,
        mut check: impl FnMut(&DeepgramRecord) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if fake.sessions().first().is_some_and(&mut check) {
                return true;
            }
            if let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_millis(50), self.ws.next()).await
            {
                self.handle(message, &mut Vec::new()).await;
            }
        }
        false
    }
}

fn caller_turn() -> Vec<u8> {
    let mut speech = audio::silence(300);
    speech.extend(audio::tone_bursts(1500));
    speech.extend(audio::silence(800));
    speech
}

fn audio_bytes(seen: &[Seen]) -> usize {
    seen.iter()
        .map(|e| match e {
            Seen::Audio { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn welcome_settings_applied_then_the_greeting_in_binary_frames() {
    let fake = FakeDeepgram::start(DeepgramBehaviour::default())
        .await
        .unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "Hi, how can I help?");
    let mut client = Client::connect(&fake, &setup).await;
    let seen = client
        .until(|e| *e == Seen::Usage { output_ms: 1500 })
        .await;
    assert_eq!(seen[0], Seen::Connected);
    assert_eq!(
        seen[1],
        Seen::Transcript {
            user: false,
            text: "Hi, how can I help?".into()
        }
    );
    // 1.5 s of µ-law in 100 ms binary frames, all in the greeting's turn.
    assert_eq!(audio_bytes(&seen), 12_000);
    assert_eq!(seen.len(), 2 + 15 + 1);
    assert!(
        seen.iter()
            .all(|e| !matches!(e, Seen::Audio { item_id, .. } if item_id != "dg_turn_1"))
    );

    assert!(fake.wait_until(WAIT, |s| s.len() == 1).await);
    let record = &fake.sessions()[0];
    assert_eq!(record.authorization.as_deref(), Some("Token dg-test-key"));
    assert_eq!(record.path, "/v1/agent/converse");
    assert_eq!(record.messages, vec!["Settings"]);
    let settings = record.settings.as_ref().unwrap();
    assert_eq!(
        settings["audio"]["input"],
        json!({"encoding": "mulaw", "sample_rate": 8000})
    );
    assert_eq!(
        settings["agent"]["think"]["functions"][0]["name"],
        "end_call"
    );
    assert_eq!(record.bad_input, 0);
}

#[tokio::test]
async fn caller_speech_gets_transcripts_and_a_reply() {
    let fake = FakeDeepgram::start(DeepgramBehaviour::default())
        .await
        .unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "");
    let mut client = Client::connect(&fake, &setup).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    client.send_audio(&caller_turn(), 160).await;
    let seen = client.until(|e| matches!(e, Seen::Usage { .. })).await;
    assert_eq!(seen[0], Seen::SpeechStarted);
    assert_eq!(
        seen[1],
        Seen::Transcript {
            user: true,
            text: "Hello, I would like to check my order.".into()
        }
    );
    assert_eq!(
        seen[2],
        Seen::Transcript {
            user: false,
            text: "Sure, what is your order number?".into()
        }
    );
    assert_eq!(audio_bytes(&seen), 12_000);
    assert_eq!(seen.last(), Some(&Seen::Usage { output_ms: 1500 }));
    assert!(
        fake.wait_until(WAIT, |s| s[0].turns_completed == 1
            && s[0].audio_bytes_in == caller_turn().len() as u64)
            .await
    );
}

#[tokio::test]
async fn talking_over_the_agent_stops_it() {
    let behaviour = DeepgramBehaviour {
        chunk_interval_ms: 100,
        ..DeepgramBehaviour::default()
    }
    .with_agent_audio_ms(5000);
    let fake = FakeDeepgram::start(behaviour).await.unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "A long greeting.");
    let mut client = Client::connect(&fake, &setup).await;
    client.until(|e| matches!(e, Seen::Audio { .. })).await;
    client.send_audio(&audio::tone_bursts(400), 160).await;
    let seen = client.until(|e| *e == Seen::SpeechStarted).await;
    assert!(audio_bytes(&seen) < 5000 * 8);
    // The cut turn's usage comes just before the barge-in.
    assert!(matches!(seen[seen.len() - 2], Seen::Usage { output_ms } if output_ms < 5000));
    client.send_audio(&audio::silence(800), 160).await;
    let after = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert!(
        matches!(&after[0], Seen::Transcript { user: true, .. }),
        "{after:?}"
    );
    assert!(matches!(after.last(), Some(Seen::Audio { item_id, .. }) if item_id == "dg_turn_2"));
    assert!(
        fake.wait_until(WAIT, |s| s[0].interruptions == 1
            && s[0].speech_started == 1)
            .await
    );
}

#[tokio::test]
async fn functions_say_and_keep_alive() {
    let behaviour = DeepgramBehaviour {
        function_call: Some(FunctionScript {
            name: "lookup_order".into(),
            arguments: r#"{"id":"42"}"#.into(),
        }),
        ..DeepgramBehaviour::default()
    };
    let fake = FakeDeepgram::start(behaviour).await.unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "");
    let mut client = Client::connect(&fake, &setup).await;
    client.until(|e| *e == Seen::Connected).await;
    client.send_audio(&caller_turn(), 160).await;
    let seen = client.until(|e| matches!(e, Seen::Tool { .. })).await;
    let Some(Seen::Tool { id, name, args }) = seen.last().cloned() else {
        unreachable!()
    };
    assert_eq!(
        (name.as_str(), args.as_str()),
        ("lookup_order", r#"{"id":"42"}"#)
    );
    client
        .ws
        .send(Message::text(dg::tool_result(
            &id,
            &name,
            &json!({"status": "shipped"}),
        )))
        .await
        .unwrap();
    client.until(|e| matches!(e, Seen::Usage { .. })).await;
    client
        .command(ProviderCommand::Say {
            text: "Are you still there?",
        })
        .await;
    let said = client
        .until(|e| matches!(e, Seen::Transcript { user: false, .. }))
        .await;
    assert_eq!(
        said.last(),
        Some(&Seen::Transcript {
            user: false,
            text: "Are you still there?".into()
        })
    );
    client.ws.send(Message::text(dg::KEEP_ALIVE)).await.unwrap();
    assert!(
        client
            .serve_until(&fake, |r| r.keep_alives == 1
                && r.function_responses.len() == 1
                && r.injected_agent_messages.len() == 1)
            .await
    );
    let record = &fake.sessions()[0];
    assert_eq!(
        record.function_responses[0]["content"],
        r#"{"status":"shipped"}"#
    );
    assert_eq!(record.function_responses[0]["name"], "lookup_order");
    assert_eq!(record.bad_input, 0);
}

#[tokio::test]
async fn silence_without_keep_alive_closes_the_session() {
    let behaviour = DeepgramBehaviour {
        idle_timeout_ms: 200,
        ..DeepgramBehaviour::default()
    };
    let fake = FakeDeepgram::start(behaviour).await.unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "");
    let mut client = Client::connect(&fake, &setup).await;
    let seen = client.until(|e| matches!(e, Seen::Error { .. })).await;
    assert_eq!(
        seen,
        vec![
            Seen::Connected,
            Seen::Error {
                fatal: true,
                code: "CLIENT_MESSAGE_TIMEOUT".into()
            }
        ]
    );
    assert!(
        fake.wait_until(WAIT, |s| s[0].idle_closed && s[0].closed)
            .await
    );
}

#[tokio::test]
async fn web_callers_get_linear16_at_24k() {
    let fake = FakeDeepgram::start(DeepgramBehaviour::default())
        .await
        .unwrap();
    let setup = setup(AudioFormat::Opus48k, "Hi!");
    let mut client = Client::connect(&fake, &setup).await;
    let seen = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert_eq!(seen[0], Seen::Connected);
    // 100 ms of PCM16 at 24 kHz.
    assert!(matches!(seen.last(), Some(Seen::Audio { bytes: 4800, .. })));
    let record = &fake.sessions()[0];
    assert_eq!(
        record.settings.as_ref().unwrap()["audio"]["output"],
        json!({"encoding": "linear16", "sample_rate": 24000, "container": "none"})
    );
}

#[tokio::test]
async fn failure_modes() {
    // Refused upgrade.
    let fake = FakeDeepgram::start(DeepgramBehaviour::default().with_failure(Failure::Refuse(401)))
        .await
        .unwrap();
    let err = tokio_tungstenite::connect_async(fake.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(fake.wait_until(WAIT, |s| s.len() == 1 && s[0].closed).await);

    // SettingsApplied, then a 1011 close.
    let fake =
        FakeDeepgram::start(DeepgramBehaviour::default().with_failure(Failure::CloseAfterSetup))
            .await
            .unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "");
    let mut client = Client::connect(&fake, &setup).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    match tokio::time::timeout(WAIT, client.ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected a close frame, got {other:?}"),
    }

    // Death mid-call: the socket ends with no close frame.
    let fake =
        FakeDeepgram::start(DeepgramBehaviour::default().with_failure(Failure::DieAfterMs(50)))
            .await
            .unwrap();
    let mut client = Client::connect(&fake, &setup).await;
    let mut ended_without_close = false;
    while let Ok(Some(message)) = tokio::time::timeout(WAIT, client.ws.next()).await {
        match message {
            Ok(Message::Close(_)) => break,
            Ok(m) => client.handle(m, &mut Vec::new()).await,
            Err(_) => {
                ended_without_close = true;
                break;
            }
        }
    }
    assert!(ended_without_close);
    assert!(fake.wait_until(WAIT, |s| s[0].closed).await);
}

#[tokio::test]
async fn ready_waits_for_the_delay_and_early_audio_is_bad_input() {
    let behaviour = DeepgramBehaviour {
        ready_delay_ms: 1000,
        ..DeepgramBehaviour::default()
    };
    let fake = FakeDeepgram::start(behaviour).await.unwrap();
    let setup = setup(AudioFormat::Mulaw8k, "");
    let mut client = Client::connect(&fake, &setup).await;
    // Welcome: the decoder queues Settings, which `handle` sends.
    let message = tokio::time::timeout(WAIT, client.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut seen = Vec::new();
    client.handle(message, &mut seen).await;
    assert!(seen.is_empty());
    // A gateway that does not wait for SettingsApplied is caught.
    client.send_audio(&audio::silence(20), 160).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    let record = &fake.sessions()[0];
    assert_eq!(record.bad_input, 1);
    assert_eq!(record.audio_frames_in, 1);
}

#[tokio::test]
async fn invalid_settings_are_refused_with_an_error() {
    let fake = FakeDeepgram::start(DeepgramBehaviour::default())
        .await
        .unwrap();
    let mut request = fake.url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", "Token k".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let _welcome = ws.next().await;
    let bad = json!({"type": "Settings", "audio": {"input": {"encoding": "mulaw", "sample_rate": 16000}},
                     "agent": {}});
    ws.send(Message::text(bad.to_string())).await.unwrap();
    let mut decoder = dg::DeepgramDecoder::new(AudioFormat::Mulaw8k, String::new());
    let mut seen = Vec::new();
    while seen.is_empty() {
        let Some(Ok(Message::Text(text))) = tokio::time::timeout(WAIT, ws.next()).await.unwrap()
        else {
            panic!("expected an Error message");
        };
        decoder.handle_text(text.as_str(), |e| seen.extend(own(e)));
    }
    assert_eq!(
        seen,
        vec![Seen::Error {
            fatal: true,
            code: "INVALID_SETTINGS".into()
        }]
    );
    assert!(
        fake.wait_until(WAIT, |s| s[0].bad_input == 1 && s[0].closed)
            .await
    );
}
