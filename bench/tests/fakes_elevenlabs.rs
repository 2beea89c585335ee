//! The fake ElevenLabs server driven from the client side with the gateway's own codec
//! (`vocalized_media::core::wire::elevenlabs`) over a real socket: if these pass, the fake
//! and the codec agree on protocols.md §4.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vocalized_bench::audio;
use vocalized_bench::fakes::elevenlabs::{
    ElevenLabsBehaviour, Failure, FakeElevenLabs, ToolScript,
};
use vocalized_media::core::session::{ProviderCommand, ProviderEvent};
use vocalized_media::core::wire::elevenlabs as el;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;

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
    Interrupted,
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
        ProviderEvent::Interrupted => Seen::Interrupted,
        ProviderEvent::Transcript { role, text, .. } => Seen::Transcript {
            user: role == vocalized_shared::events::Role::User,
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

struct Client {
    ws: Ws,
    decoder: el::ElevenLabsDecoder,
    out: String,
}

impl Client {
    async fn connect(fake: &FakeElevenLabs, settings: CallSettings) -> Self {
        let mut request = el::connect_url(&fake.url(), "agent_test")
            .into_client_request()
            .unwrap();
        let (name, value) = el::api_key_header("xi-test-key");
        request.headers_mut().insert(name, value.parse().unwrap());
        let ws = tokio_tungstenite::connect_async(request).await.unwrap().0;
        let mut client = Self {
            ws,
            decoder: el::ElevenLabsDecoder::new(AudioFormat::Mulaw8k),
            out: String::new(),
        };
        let setup = el::ElevenLabsSetup {
            agent_id: "agent_test".into(),
            instructions: "Be brief.".into(),
            settings,
            tools: vec![],
            format: AudioFormat::Mulaw8k,
        };
        client.send_text(el::initiation(&setup)).await;
        client
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn command(&mut self, cmd: ProviderCommand<'_>) {
        if el::write_command(&cmd, &mut self.out) {
            let text = self.out.clone();
            self.send_text(text).await;
        }
    }

    async fn send_audio(&mut self, ulaw: &[u8]) {
        for chunk in ulaw.chunks(160) {
            self.command(ProviderCommand::Audio(chunk)).await;
        }
    }

    /// Decoded events until `stop` matches one (included); pongs are answered on the way.
    async fn until(&mut self, mut stop: impl FnMut(&Seen) -> bool) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no server message in time")
                .expect("socket ended")
                .expect("socket error");
            let Message::Text(text) = message else {
                continue;
            };
            let mut batch = Vec::new();
            self.decoder
                .handle_text(text.as_str(), |e| batch.extend(own(e)));
            while let Some(reply) = self.decoder.poll_reply() {
                self.send_text(reply).await;
            }
            for e in batch {
                let done = stop(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
        }
    }
}

impl Client {
    /// Keeps reading (and answering pings) until the fake's records satisfy `check`.
    async fn serve_until(
        &mut self,
        fake: &FakeElevenLabs,
        mut check: impl FnMut(&vocalized_bench::fakes::elevenlabs::ElevenLabsRecord) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if fake.sessions().first().is_some_and(&mut check) {
                return true;
            }
            let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(Duration::from_millis(50), self.ws.next()).await
            else {
                continue;
            };
            self.decoder.handle_text(text.as_str(), |_| {});
            while let Some(reply) = self.decoder.poll_reply() {
                self.send_text(reply).await;
            }
        }
        false
    }
}

/// Settings whose agent waits for the caller (no `first_message` override).
fn no_greeting() -> CallSettings {
    CallSettings {
        call_greeting: String::new(),
        ..CallSettings::default()
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
async fn initiation_gets_metadata_and_the_overridden_first_message() {
    let fake = FakeElevenLabs::start(ElevenLabsBehaviour::default())
        .await
        .unwrap();
    let settings = CallSettings {
        voice_provider: "elevenlabs".into(),
        voice_id: "voice_9".into(),
        call_greeting: "Welcome to Acme.".into(),
        ..CallSettings::default()
    };
    let mut client = Client::connect(&fake, settings).await;
    let seen = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert_eq!(seen[0], Seen::Connected);
    assert_eq!(
        seen[1],
        Seen::Transcript {
            user: false,
            text: "Welcome to Acme.".into()
        }
    );
    assert!(matches!(&seen[2], Seen::Audio { item_id, bytes: 800 } if item_id == "el_turn_1"));

    assert!(fake.wait_until(WAIT, |s| s.len() == 1).await);
    let record = &fake.sessions()[0];
    assert_eq!(record.agent_id.as_deref(), Some("agent_test"));
    assert_eq!(record.api_key.as_deref(), Some("xi-test-key"));
    assert_eq!(record.path, "/v1/convai/conversation");
    let init = record.initiation.as_ref().unwrap();
    assert_eq!(
        init["conversation_config_override"],
        json!({"agent": {"prompt": {"prompt": "Be brief."}, "first_message": "Welcome to Acme."},
               "tts": {"voice_id": "voice_9"}})
    );
    assert_eq!(record.messages, vec!["conversation_initiation_client_data"]);
    assert_eq!(record.bad_input, 0);
}

#[tokio::test]
async fn caller_speech_gets_a_transcript_and_a_reply_in_chunks() {
    let fake = FakeElevenLabs::start(ElevenLabsBehaviour::default())
        .await
        .unwrap();
    let mut client = Client::connect(&fake, no_greeting()).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    client.send_audio(&caller_turn()).await;
    let seen = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert_eq!(
        seen,
        vec![
            Seen::Transcript {
                user: true,
                text: "Hello, I would like to check my order.".into()
            },
            Seen::Transcript {
                user: false,
                text: "Sure, what is your order number?".into()
            },
            Seen::Audio {
                item_id: "el_turn_1".into(),
                bytes: 800
            },
        ]
    );
    // The remaining 1.4 s of the reply, then the caller's next turn closes the agent's.
    client.send_audio(&caller_turn()).await;
    let rest = client.until(|e| matches!(e, Seen::Usage { .. })).await;
    assert_eq!(audio_bytes(&rest), 11_200, "{rest:?}");
    assert_eq!(rest.last(), Some(&Seen::Usage { output_ms: 1500 }));
    assert!(
        fake.wait_until(WAIT, |s| s[0].turns_completed == 2
            && s[0].audio_bytes_in == 2 * caller_turn().len() as u64)
            .await
    );
    assert_eq!(fake.sessions()[0].bad_input, 0);
}

#[tokio::test]
async fn talking_over_the_agent_interrupts_it_and_late_audio_is_dropped() {
    let behaviour = ElevenLabsBehaviour {
        first_message: "Hello! This is a long greeting.".into(),
        chunk_interval_ms: 100,
        late_audio_after_interruption: true,
        ..ElevenLabsBehaviour::default()
    }
    .with_agent_audio_ms(5000);
    let fake = FakeElevenLabs::start(behaviour).await.unwrap();
    let mut client = Client::connect(&fake, no_greeting()).await;
    client.until(|e| matches!(e, Seen::Audio { .. })).await;
    // Speak over it: the fake's VAD needs 60 ms of loud audio.
    client.send_audio(&audio::tone_bursts(400)).await;
    let seen = client.until(|e| *e == Seen::Interrupted).await;
    assert!(matches!(seen.last(), Some(Seen::Interrupted)));
    assert!(audio_bytes(&seen) < 5000 * 8);
    // The stale chunk after the interruption never reaches the session.
    client.send_audio(&audio::silence(800)).await;
    let after = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert!(
        matches!(&after[0], Seen::Transcript { user: true, .. }),
        "{after:?}"
    );
    assert!(matches!(after.last(), Some(Seen::Audio { item_id, .. }) if item_id == "el_turn_2"));
    assert_eq!(client.decoder.dropped_audio, 1);
    assert!(fake.wait_until(WAIT, |s| s[0].interruptions == 1).await);
}

#[tokio::test]
async fn pings_are_answered_with_pongs_and_tools_round_trip() {
    let behaviour = ElevenLabsBehaviour {
        ping_interval_ms: 20,
        tool_call: Some(ToolScript {
            tool_name: "lookup_order".into(),
            parameters: json!({"id": "42"}),
        }),
        ..ElevenLabsBehaviour::default()
    };
    let fake = FakeElevenLabs::start(behaviour).await.unwrap();
    let mut client = Client::connect(&fake, no_greeting()).await;
    client.until(|e| *e == Seen::Connected).await;
    client.send_audio(&caller_turn()).await;
    let seen = client.until(|e| matches!(e, Seen::Tool { .. })).await;
    let Some(Seen::Tool { id, name, args }) = seen.last().cloned() else {
        unreachable!()
    };
    assert_eq!(name, "lookup_order");
    assert_eq!(args, r#"{"id":"42"}"#);
    client
        .send_text(el::tool_result(&id, &json!({"status": "shipped"}), false))
        .await;
    client
        .until(|e| matches!(e, Seen::Transcript { user: false, .. }))
        .await;
    client
        .command(ProviderCommand::Say {
            text: "Are you still there?",
        })
        .await;
    assert!(
        client
            .serve_until(&fake, |r| r.pongs.len() >= 2
                && r.user_messages.len() == 1
                && r.tool_results.len() == 1)
            .await
    );
    let record = &fake.sessions()[0];
    // Every pong names a ping the fake sent, in order.
    assert!(record.pongs.iter().all(|id| record.pings_sent.contains(id)));
    assert!(record.pongs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(record.tool_results[0]["result"], r#"{"status":"shipped"}"#);
    assert!(record.user_messages[0].contains("Are you still there?"));
    assert_eq!(record.bad_input, 0);
}

#[tokio::test]
async fn a_pcm_agent_for_a_phone_caller_is_refused_by_the_codec() {
    let behaviour = ElevenLabsBehaviour {
        agent_output_audio_format: "pcm_16000".into(),
        ..ElevenLabsBehaviour::default()
    };
    let fake = FakeElevenLabs::start(behaviour).await.unwrap();
    let mut client = Client::connect(&fake, CallSettings::default()).await;
    let seen = client.until(|_| true).await;
    assert_eq!(
        seen,
        vec![Seen::Error {
            fatal: true,
            code: "audio_format_mismatch".into()
        }]
    );
}

#[tokio::test]
async fn web_callers_get_pcm16_audio_at_the_agent_rate() {
    let behaviour = ElevenLabsBehaviour {
        user_input_audio_format: "pcm_16000".into(),
        agent_output_audio_format: "pcm_16000".into(),
        first_message: "Hi!".into(),
        ..ElevenLabsBehaviour::default()
    };
    let fake = FakeElevenLabs::start(behaviour).await.unwrap();
    let mut client = Client::connect(&fake, CallSettings::default()).await;
    client.decoder = el::ElevenLabsDecoder::new(AudioFormat::Opus48k);
    let seen = client.until(|e| matches!(e, Seen::Audio { .. })).await;
    assert_eq!(seen[0], Seen::Connected);
    // 100 ms of PCM16 at 16 kHz.
    assert!(matches!(seen.last(), Some(Seen::Audio { bytes: 3200, .. })));
}

#[tokio::test]
async fn failure_modes() {
    // Refused upgrade.
    let fake =
        FakeElevenLabs::start(ElevenLabsBehaviour::default().with_failure(Failure::Refuse(403)))
            .await
            .unwrap();
    let request = el::connect_url(&fake.url(), "agent_test");
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(fake.wait_until(WAIT, |s| s.len() == 1 && s[0].closed).await);

    // Metadata, then a 1011 close.
    let fake = FakeElevenLabs::start(
        ElevenLabsBehaviour::default().with_failure(Failure::CloseAfterSetup),
    )
    .await
    .unwrap();
    let mut client = Client::connect(&fake, CallSettings::default()).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    let close = tokio::time::timeout(WAIT, client.ws.next()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected a close frame, got {other:?}"),
    }

    // Death mid-call: the socket ends with no close frame.
    let fake =
        FakeElevenLabs::start(ElevenLabsBehaviour::default().with_failure(Failure::DieAfterMs(50)))
            .await
            .unwrap();
    let mut client = Client::connect(&fake, CallSettings::default()).await;
    let mut ended_without_close = false;
    while let Ok(Some(message)) = tokio::time::timeout(WAIT, client.ws.next()).await {
        match message {
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
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
async fn ready_waits_for_the_delay_and_audio_before_it_is_not_heard() {
    let behaviour = ElevenLabsBehaviour {
        ready_delay_ms: 1000,
        ..ElevenLabsBehaviour::default()
    };
    let fake = FakeElevenLabs::start(behaviour).await.unwrap();
    let mut client = Client::connect(&fake, no_greeting()).await;
    // Speech sent before the metadata is counted but not answered.
    client.send_audio(&caller_turn()).await;
    assert_eq!(client.until(|_| true).await, vec![Seen::Connected]);
    assert!(
        fake.wait_until(WAIT, |s| s[0].audio_bytes_in == caller_turn().len() as u64)
            .await
    );
    let record = &fake.sessions()[0];
    assert_eq!(record.speech_started, 0);
    assert_eq!(record.turns_started, 0);
}
