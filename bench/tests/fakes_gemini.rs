//! `FakeGemini` driven from the client side over a real socket, with the gateway's own
//! Gemini codec (`vocalized_media::core::wire::gemini`): setup, a spoken turn, barge-in,
//! tool calls, goAway and resumption, and each failure mode. If these pass, the fake and
//! the adapter agree on protocols.md §3, and gateway tests can use the fake.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vocalized_bench::audio;
use vocalized_bench::fakes::gemini::{
    Failure, FakeGemini, GeminiBehaviour, PATH, ScriptedToolCall, pcm,
};
use vocalized_media::core::session::{ProviderCommand, ProviderEvent};
use vocalized_media::core::wire::gemini::{self as wire, GeminiDecoder, GeminiSetup};
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{Role, Usage};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "AIza-test-key";
const MODEL: &str = "gemini-live-2.5-flash-preview";

/// A provider event, owned, so tests can keep it.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Connected,
    Audio {
        item: String,
        bytes: usize,
    },
    Interrupted,
    Transcript {
        role: Role,
        text: String,
        is_final: bool,
        item: Option<String>,
    },
    Tool {
        id: String,
        name: String,
        args: String,
    },
    Usage(Usage),
    Error {
        fatal: bool,
        code: String,
    },
    Closed,
    Other(String),
}

impl Ev {
    fn of(e: ProviderEvent<'_>) -> Self {
        match e {
            ProviderEvent::Connected => Ev::Connected,
            ProviderEvent::AudioDelta { item_id, audio } => Ev::Audio {
                item: item_id.to_owned(),
                bytes: audio.len(),
            },
            ProviderEvent::Interrupted => Ev::Interrupted,
            ProviderEvent::Transcript {
                role,
                text,
                is_final,
                item_id,
                ..
            } => Ev::Transcript {
                role,
                text: text.to_owned(),
                is_final,
                item: item_id.map(str::to_owned),
            },
            ProviderEvent::ToolCall {
                call_id,
                name,
                arguments,
            } => Ev::Tool {
                id: call_id.to_owned(),
                name: name.to_owned(),
                args: arguments.to_owned(),
            },
            ProviderEvent::Usage { usage, .. } => Ev::Usage(usage.clone()),
            ProviderEvent::Error { fatal, code, .. } => Ev::Error {
                fatal,
                code: code.to_owned(),
            },
            ProviderEvent::Closed => Ev::Closed,
            other => Ev::Other(format!("{other:?}")),
        }
    }

    fn is_final(&self, want: Role) -> bool {
        matches!(self, Ev::Transcript { role, is_final: true, .. } if *role == want)
    }
}

/// The gateway's side: a socket and the adapter's codec.
struct Client {
    ws: Ws,
    decoder: GeminiDecoder,
    text: String,
    closed: bool,
    /// Events decoded but not yet looked at (a frame can carry several).
    pending: VecDeque<Ev>,
}

impl Client {
    async fn connect(fake: &FakeGemini) -> Self {
        let url = wire::connect_url(&fake.url(), KEY);
        let ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
        Self {
            ws,
            decoder: GeminiDecoder::new(MODEL),
            text: String::new(),
            closed: false,
            pending: VecDeque::new(),
        }
    }

    /// Connects and sends the setup built from `settings` (and `resume_handle`).
    async fn set_up(fake: &FakeGemini, settings: CallSettings, resume: Option<String>) -> Self {
        let mut client = Self::connect(fake).await;
        let setup = GeminiSetup {
            model: MODEL.into(),
            instructions: "Be brief.".into(),
            settings,
            tools: vec![],
            resume_handle: resume,
        };
        client.send_text(wire::setup_message(&setup)).await;
        client
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn command(&mut self, cmd: ProviderCommand<'_>) {
        // `false`: nothing to send (Gemini needs no message for truncates and cancels).
        if wire::write_command(&cmd, &mut self.text) {
            let text = self.text.clone();
            self.send_text(text).await;
        }
    }

    /// PCM16 16 kHz in 20 ms frames, as a call driver sends it.
    async fn send_audio(&mut self, pcm16k: &[u8]) {
        for frame in pcm16k.chunks(640) {
            self.command(ProviderCommand::Audio(frame)).await;
        }
    }

    /// The events of the next frame (a close or a broken socket included).
    async fn next_events(&mut self) -> Vec<Ev> {
        assert!(!self.closed, "read after the socket ended");
        let mut out = Vec::new();
        let message = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("no server message in time");
        let mut push = |e: ProviderEvent<'_>| out.push(Ev::of(e));
        match message {
            Some(Ok(Message::Text(t))) => self.decoder.handle_text(t.as_str(), &mut push),
            Some(Ok(Message::Binary(b))) => self.decoder.handle_binary(&b, &mut push),
            Some(Ok(Message::Close(frame))) => {
                self.closed = true;
                let (code, reason) = frame.map_or((None, String::new()), |f| {
                    (Some(u16::from(f.code)), f.reason.to_string())
                });
                self.decoder.handle_close(code, &reason, &mut push);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                self.closed = true;
                self.decoder.handle_close(None, "", &mut push);
            }
        }
        out
    }

    /// Every event up to and including the first that `done` accepts.
    async fn until(&mut self, mut done: impl FnMut(&Ev) -> bool) -> Vec<Ev> {
        let mut seen = Vec::new();
        loop {
            if self.pending.is_empty() {
                let events = self.next_events().await;
                self.pending.extend(events);
            }
            while let Some(e) = self.pending.pop_front() {
                let stop = done(&e);
                seen.push(e);
                if stop {
                    return seen;
                }
            }
        }
    }
}

fn audio_bytes(events: &[Ev]) -> usize {
    events
        .iter()
        .map(|e| match e {
            Ev::Audio { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum()
}

fn items(events: &[Ev]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for e in events {
        if let Ev::Audio { item, .. } = e
            && !ids.contains(item)
        {
            ids.push(item.clone());
        }
    }
    ids
}

fn final_text(events: &[Ev], want: Role) -> String {
    events
        .iter()
        .find_map(|e| match e {
            Ev::Transcript {
                role,
                text,
                is_final: true,
                ..
            } if *role == want => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no final {want:?} transcript in {events:?}"))
}

/// Half a second of quiet, 1.5 s of speech-like bursts, 1 s of quiet, at 16 kHz.
fn caller_turn() -> Vec<u8> {
    let mut ulaw = audio::silence(500);
    ulaw.extend(audio::tone_bursts(1500));
    ulaw.extend(audio::silence(1000));
    pcm::pcm16k_from_ulaw(&ulaw)
}

#[tokio::test]
async fn setup_gets_setup_complete_and_the_handshake_is_recorded() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    let events = client.until(|e| *e == Ev::Connected).await;
    assert_eq!(events, [Ev::Connected]);
    // Resumption was asked for: a resumable handle follows at once.
    client.next_events().await;
    let handle = client.decoder.latest_resume_handle().map(str::to_owned);
    assert!(handle.is_some());

    let record = &fake.sessions()[0];
    assert_eq!(record.path, PATH);
    assert_eq!(record.key.as_deref(), Some(KEY));
    assert_eq!(record.messages, ["setup"]);
    assert_eq!(
        record.close_sent, None,
        "the adapter's setup passes every check"
    );
    let setup = record.setup.as_ref().unwrap();
    assert_eq!(setup["model"], format!("models/{MODEL}"));
    assert!(setup.get("inputAudioTranscription").is_some());
    assert_eq!(record.handles_issued.first(), handle.as_ref());
    assert!(client.decoder.session_id().is_some());
}

#[tokio::test]
async fn caller_speech_is_transcribed_and_answered_with_24k_audio_and_usage() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    let speech = caller_turn();
    client.send_audio(&speech).await;

    let events = client.until(|e| matches!(e, Ev::Usage(_))).await;
    assert_eq!(
        final_text(&events, Role::User),
        "Hello, I would like to check my order."
    );
    assert_eq!(
        final_text(&events, Role::Assistant),
        "Sure, what is your order number?"
    );
    // 1.5 s of 24 kHz PCM16 in 40 ms messages: 37 full ones and a half.
    assert_eq!(audio_bytes(&events), 72_000);
    let chunks = events
        .iter()
        .filter(|e| matches!(e, Ev::Audio { .. }))
        .count();
    assert_eq!(chunks, 38);
    let turn = items(&events);
    assert_eq!(turn.len(), 1, "one model turn, one item id");
    let partial_user = events
        .iter()
        .position(|e| {
            matches!(
                e,
                Ev::Transcript {
                    role: Role::User,
                    is_final: false,
                    ..
                }
            )
        })
        .unwrap();
    let first_audio = events
        .iter()
        .position(|e| matches!(e, Ev::Audio { .. }))
        .unwrap();
    assert!(partial_user < first_audio, "{events:?}");
    let agent_final = events.iter().find(|e| e.is_final(Role::Assistant)).unwrap();
    assert!(matches!(agent_final, Ev::Transcript { item: Some(i), .. } if *i == turn[0]));
    assert_eq!(
        events.last(),
        Some(&Ev::Usage(Usage {
            input_text_tokens: 330,
            input_audio_tokens: 1500,
            output_audio_tokens: 210,
            ..Usage::default()
        }))
    );
    assert_eq!(client.decoder.malformed, 0);

    assert!(
        fake.wait_until(WAIT, |s| s[0].audio_bytes_in == speech.len() as u64)
            .await
    );
    let record = &fake.sessions()[0];
    assert_eq!(record.audio_mime_types, ["audio/pcm;rate=16000"]);
    assert_eq!(record.speech_started, 1);
    assert_eq!(record.turns_completed, 1);
    assert_eq!(record.audio_bytes_out, 72_000);
    assert_eq!(record.handles_issued.len(), 2, "one at setup, one per turn");
}

#[tokio::test]
async fn the_greeting_is_a_client_turn_the_model_answers() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let settings = CallSettings::default();
    let mut client = Client::set_up(&fake, settings.clone(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_text(wire::greeting(&settings).unwrap()).await;
    let events = client.until(|e| e.is_final(Role::Assistant)).await;
    assert_eq!(audio_bytes(&events), 72_000);

    let record = &fake.sessions()[0];
    assert_eq!(record.client_turn_completes, 1);
    assert_eq!(record.client_turns[0]["role"], "user");
    let said = record.client_turns[0]["parts"][0]["text"].as_str().unwrap();
    assert!(said.contains(&settings.call_greeting), "{said}");
}

#[tokio::test]
async fn speaking_over_the_agent_interrupts_it_and_the_next_turn_has_a_new_id() {
    let behaviour = GeminiBehaviour {
        chunk_interval_ms: 40,
        ..GeminiBehaviour::default()
    };
    let fake = FakeGemini::start(behaviour).await.unwrap();
    let settings = CallSettings::default();
    let mut client = Client::set_up(&fake, settings.clone(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_text(wire::greeting(&settings).unwrap()).await;
    let mut events = client.until(|e| matches!(e, Ev::Audio { .. })).await;
    let mut barge_in = audio::tone(300.0, -20.0, 300);
    barge_in.extend(audio::silence(700));
    client.send_audio(&pcm::pcm16k_from_ulaw(&barge_in)).await;
    events.extend(client.until(|e| *e == Ev::Interrupted).await);
    assert!(audio_bytes(&events) < 72_000, "the reply was cut short");
    let first = items(&events);
    assert_eq!(first.len(), 1);
    // The caller's words, once they end, start the next turn.
    let after = client.until(|e| matches!(e, Ev::Usage(_))).await;
    assert!(!after.contains(&Ev::Interrupted));
    let next = items(&after);
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], first[0]);
    assert_eq!(
        final_text(&after, Role::User),
        "Hello, I would like to check my order."
    );

    let record = &fake.sessions()[0];
    assert_eq!(record.interruptions, 1);
    assert_eq!(record.turns_started, 2);
}

#[tokio::test]
async fn without_interruption_the_agent_talks_over_the_caller() {
    let behaviour = GeminiBehaviour {
        chunk_interval_ms: 20,
        ..GeminiBehaviour::default()
    };
    let fake = FakeGemini::start(behaviour).await.unwrap();
    let settings = CallSettings {
        interruption_enabled: false,
        ..CallSettings::default()
    };
    let mut client = Client::set_up(&fake, settings.clone(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_text(wire::greeting(&settings).unwrap()).await;
    client.until(|e| matches!(e, Ev::Audio { .. })).await;
    client
        .send_audio(&pcm::pcm16k_from_ulaw(&audio::tone(300.0, -20.0, 300)))
        .await;
    let events = client.until(|e| matches!(e, Ev::Usage(_))).await;
    assert!(!events.contains(&Ev::Interrupted));
    let record = &fake.sessions()[0];
    assert_eq!(record.speech_started, 1);
    assert_eq!(record.interruptions, 0);
}

#[tokio::test]
async fn a_tool_call_waits_for_its_response_then_the_reply_is_spoken() {
    let behaviour = GeminiBehaviour {
        tool_call: Some(ScriptedToolCall {
            reply: 1,
            name: "lookup_order".into(),
            args: json!({"id": "42"}),
        }),
        ..GeminiBehaviour::default()
    };
    let fake = FakeGemini::start(behaviour).await.unwrap();
    let settings = CallSettings::default();
    let mut client = Client::set_up(&fake, settings.clone(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_text(wire::greeting(&settings).unwrap()).await;
    let events = client.until(|e| matches!(e, Ev::Tool { .. })).await;
    let Some(Ev::Tool { id, name, args }) = events.last().cloned() else {
        unreachable!()
    };
    assert_eq!(name, "lookup_order");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"id": "42"})
    );
    assert!(
        audio_bytes(&events) == 0,
        "no audio before the tool answers"
    );

    client
        .send_text(wire::tool_response(&id, &name, &json!("shipped")))
        .await;
    let events = client.until(|e| matches!(e, Ev::Usage(_))).await;
    assert_eq!(audio_bytes(&events), 72_000);
    let record = &fake.sessions()[0];
    assert_eq!(
        record.tool_responses,
        [json!({"id": id, "name": "lookup_order", "response": {"result": "shipped"}})]
    );
}

#[tokio::test]
async fn go_away_then_close_and_the_session_resumes_with_the_handle() {
    let behaviour = GeminiBehaviour::default().with_failure(Failure::GoAwayAfterMs {
        after_ms: 50,
        time_left_ms: 200,
    });
    let fake = FakeGemini::start(behaviour).await.unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    let mut go_away = None;
    while go_away.is_none() {
        assert!(client.next_events().await.is_empty());
        go_away = client.decoder.take_go_away();
    }
    assert_eq!(go_away, Some(Duration::from_millis(200)));
    // The connection then ends normally: no error, just closed.
    assert_eq!(client.until(|e| *e == Ev::Closed).await, [Ev::Closed]);
    let handle = client.decoder.latest_resume_handle().unwrap().to_owned();

    let mut resumed = Client::set_up(&fake, CallSettings::default(), Some(handle.clone())).await;
    resumed.until(|e| *e == Ev::Connected).await;
    let sessions = fake.sessions();
    assert!(sessions[0].go_away_sent);
    assert_eq!(sessions[0].close_sent.as_ref().map(|c| c.0), Some(1000));
    assert_eq!(sessions[1].resumed_from.as_deref(), Some(handle.as_str()));
    assert_eq!(
        sessions[1].setup.as_ref().unwrap()["sessionResumption"]["handle"],
        handle.as_str()
    );
}

#[tokio::test]
async fn an_unknown_resume_handle_or_a_bad_key_is_refused() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), Some("CiQnope".into())).await;
    let events = client.until(|e| *e == Ev::Closed).await;
    assert_eq!(
        events,
        [
            Ev::Error {
                fatal: true,
                code: "close_1007".into()
            },
            Ev::Closed
        ]
    );

    let keyed = FakeGemini::start(GeminiBehaviour {
        api_key: Some("another-key".into()),
        ..GeminiBehaviour::default()
    })
    .await
    .unwrap();
    let mut client = Client::set_up(&keyed, CallSettings::default(), None).await;
    let events = client.until(|e| *e == Ev::Closed).await;
    assert_eq!(
        events[0],
        Ev::Error {
            fatal: true,
            code: "close_1008".into()
        }
    );
}

#[tokio::test]
async fn a_refused_handshake_fails_the_connect() {
    let fake =
        FakeGemini::start(GeminiBehaviour::default().with_failure(Failure::RefuseHandshake(503)))
            .await
            .unwrap();
    let url = wire::connect_url(&fake.url(), KEY);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 503)
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.wait_for_sessions(1, WAIT).await);
    assert!(fake.sessions()[0].closed);
}

#[tokio::test]
async fn close_after_setup_is_a_resumable_error() {
    let fake = FakeGemini::start(
        GeminiBehaviour::default().with_failure(Failure::CloseAfterSetup { code: 1011 }),
    )
    .await
    .unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    let events = client.until(|e| *e == Ev::Closed).await;
    assert_eq!(events.first(), Some(&Ev::Connected));
    assert_eq!(
        &events[events.len() - 2..],
        [
            Ev::Error {
                fatal: false,
                code: "close_1011".into()
            },
            Ev::Closed
        ]
    );
}

#[tokio::test]
async fn dying_mid_call_resets_the_connection() {
    let behaviour = GeminiBehaviour {
        chunk_interval_ms: 40,
        ..GeminiBehaviour::default()
    }
    .with_failure(Failure::DieAfterMs(200));
    let fake = FakeGemini::start(behaviour).await.unwrap();
    let settings = CallSettings::default();
    let mut client = Client::set_up(&fake, settings.clone(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_text(wire::greeting(&settings).unwrap()).await;
    let events = client.until(|e| *e == Ev::Closed).await;
    assert!(audio_bytes(&events) > 0, "it died mid-reply");
    assert!(audio_bytes(&events) < 72_000);
    assert_eq!(
        &events[events.len() - 2..],
        [
            Ev::Error {
                fatal: false,
                code: "connection_lost".into()
            },
            Ev::Closed
        ]
    );
    assert!(fake.wait_until(WAIT, |s| s[0].closed).await);
    assert_eq!(fake.sessions()[0].close_sent, None, "no close frame");
}

#[tokio::test]
async fn setup_complete_can_be_delayed_and_early_messages_are_recorded() {
    let fake = FakeGemini::start(GeminiBehaviour {
        setup_delay_ms: 300,
        ..GeminiBehaviour::default()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    // A driver that does not wait for setupComplete: the fake notes it.
    client
        .send_audio(&pcm::pcm16k_from_ulaw(&audio::silence(20)))
        .await;
    client.until(|e| *e == Ev::Connected).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(fake.wait_until(WAIT, |s| s[0].early_messages == 1).await);
    assert_eq!(fake.sessions()[0].audio_bytes_in, 0, "dropped, not heard");
}

#[tokio::test]
async fn binary_frames_decode_like_text() {
    let fake = FakeGemini::start(GeminiBehaviour {
        binary_frames: true,
        ..GeminiBehaviour::default()
    })
    .await
    .unwrap();
    let mut client = Client::set_up(&fake, CallSettings::default(), None).await;
    client.until(|e| *e == Ev::Connected).await;
    client.send_audio(&caller_turn()).await;
    let events = client.until(|e| matches!(e, Ev::Usage(_))).await;
    assert_eq!(audio_bytes(&events), 72_000);
    assert_eq!(client.decoder.malformed, 0);
}

#[tokio::test]
async fn a_setup_with_an_unknown_field_is_closed_with_the_reason() {
    let fake = FakeGemini::start(GeminiBehaviour::default()).await.unwrap();
    let mut client = Client::connect(&fake).await;
    client
        .send_text(
            json!({"setup": {"model": format!("models/{MODEL}"), "voice": "Aoede"}}).to_string(),
        )
        .await;
    let events = client.until(|e| *e == Ev::Closed).await;
    assert_eq!(
        events[0],
        Ev::Error {
            fatal: true,
            code: "close_1007".into()
        }
    );
    let (code, reason) = fake.sessions()[0].close_sent.clone().unwrap();
    assert_eq!(code, 1007);
    assert!(reason.contains("Unknown name \"voice\""), "{reason}");
}
