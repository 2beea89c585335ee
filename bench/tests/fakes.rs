//! The fakes themselves, driven from the other side: a raw GA Realtime client against
//! `FakeOpenAi`, and a tiny stand-in gateway against `FakeTwilio`. If these pass, the fakes
//! speak the protocols as protocols.md describes them, so gateway tests can trust them.

mod openai {
    use std::time::Duration;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
    use vocalized_bench::audio;
    use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};

    type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const WAIT: Duration = Duration::from_secs(10);

    async fn connect(fake: &FakeOpenAi) -> Ws {
        let mut request = format!("{}?model=gpt-realtime", fake.url())
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", "Bearer sk-test-123".parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }

    async fn send(ws: &mut Ws, event: Value) {
        ws.send(Message::text(event.to_string())).await.unwrap();
    }

    /// The next server event; panics (fails the test) after `WAIT`.
    async fn next(ws: &mut Ws) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("no server event in time")
                .expect("socket ended")
                .expect("socket error");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    /// Every event up to and including the first of type `kind`.
    async fn until(ws: &mut Ws, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = next(ws).await;
            let done = event["type"] == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    fn pcmu_session_update() -> Value {
        json!({"type": "session.update", "event_id": "evt_upd", "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"},
                          "transcription": {"model": "gpt-4o-mini-transcribe"}},
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}
            }
        }})
    }

    async fn append(ws: &mut Ws, ulaw: &[u8]) {
        for frame in ulaw.chunks(160) {
            send(
                ws,
                json!({"type": "input_audio_buffer.append", "audio": B64.encode(frame)}),
            )
            .await;
        }
    }

    fn delta_bytes(events: &[Value]) -> usize {
        events
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta")
            .map(|e| B64.decode(e["delta"].as_str().unwrap()).unwrap().len())
            .sum()
    }

    #[tokio::test]
    async fn session_update_is_echoed_and_the_handshake_recorded() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        let created = next(&mut ws).await;
        assert_eq!(created["type"], "session.created");
        assert_eq!(created["session"]["model"], "gpt-realtime");
        send(&mut ws, pcmu_session_update()).await;
        let updated = next(&mut ws).await;
        assert_eq!(updated["type"], "session.updated");
        // The full effective config: our fields merged over the defaults.
        assert_eq!(
            updated["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(updated["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(updated["session"]["instructions"], "Be brief.");
        assert_eq!(
            updated["session"]["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );

        assert!(
            fake.wait_until(WAIT, |s| s.len() == 1 && s[0].session_updates.len() == 1)
                .await
        );
        let record = &fake.sessions()[0];
        assert_eq!(record.authorization.as_deref(), Some("Bearer sk-test-123"));
        assert_eq!(record.model.as_deref(), Some("gpt-realtime"));
        assert_eq!(record.path, "/v1/realtime");
        assert_eq!(record.events, vec!["session.update"]);
        assert!(!record.headers.contains_key("openai-beta"));
    }

    #[tokio::test]
    async fn caller_speech_gets_transcribed_and_answered_with_usage() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        send(&mut ws, pcmu_session_update()).await;
        until(&mut ws, "session.updated").await;

        // Audio is sent faster than real time: the VAD runs on the audio clock.
        let mut speech = audio::silence(500);
        speech.extend(audio::tone_bursts(1500));
        speech.extend(audio::silence(1000));
        append(&mut ws, &speech).await;

        let events = until(&mut ws, "response.done").await;
        let order = types(&events);
        let position = |t: &str| {
            order
                .iter()
                .position(|x| *x == t)
                .unwrap_or_else(|| panic!("no {t} in {order:?}"))
        };
        assert!(
            position("input_audio_buffer.speech_started")
                < position("input_audio_buffer.speech_stopped")
        );
        assert!(
            position("input_audio_buffer.speech_stopped")
                < position("input_audio_buffer.committed")
        );
        assert!(position("input_audio_buffer.committed") < position("response.created"));
        assert!(position("response.created") < position("response.output_audio.delta"));
        assert!(position("response.output_audio.delta") < position("response.output_audio.done"));
        assert!(position("response.output_audio_transcript.done") < position("response.done"));
        assert!(order.contains(&"response.output_audio_transcript.delta"));
        assert!(
            !order.iter().any(|t| t.starts_with("response.audio")),
            "beta names leaked: {order:?}"
        );

        let started = &events[position("input_audio_buffer.speech_started")];
        // Onset at 500 ms of audio, minus the 300 ms prefix padding.
        assert_eq!(started["audio_start_ms"], 200);
        let stopped = &events[position("input_audio_buffer.speech_stopped")];
        // Six 240 ms syllable+gap cycles: the last syllable ends at 500 + 5 × 240 + 180 =
        // 1880 ms; 500 ms of quiet later the turn is over.
        assert_eq!(stopped["audio_end_ms"], 2380);
        assert_eq!(started["item_id"], stopped["item_id"]);

        let transcript = &events[position("conversation.item.input_audio_transcription.completed")];
        assert_eq!(
            transcript["transcript"],
            "Hello, I would like to check my order."
        );
        assert_eq!(transcript["item_id"], started["item_id"]);
        assert_eq!(transcript["usage"]["type"], "duration");

        // 1.5 s of µ-law in 100 ms deltas.
        assert_eq!(delta_bytes(&events), 12_000);
        let deltas: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta")
            .collect();
        assert_eq!(deltas.len(), 15);
        let done = events.last().unwrap();
        assert_eq!(done["response"]["status"], "completed");
        assert_eq!(done["response"]["id"], deltas[0]["response_id"]);
        assert_eq!(done["response"]["output"][0]["id"], deltas[0]["item_id"]);
        let usage = &done["response"]["usage"];
        assert_eq!(usage["total_tokens"], 1520);
        assert_eq!(usage["input_tokens"], 1320);
        assert_eq!(usage["output_tokens"], 200);
        assert_eq!(usage["input_token_details"]["cached_tokens"], 640);
        assert_eq!(
            usage["input_token_details"]["cached_tokens_details"]["audio_tokens"],
            240
        );
        assert_eq!(usage["output_token_details"]["audio_tokens"], 160);
        let spoken = &events[position("response.output_audio_transcript.done")];
        assert_eq!(spoken["transcript"], "Sure, what is your order number?");

        assert!(
            fake.wait_until(WAIT, |s| s[0].audio_bytes_in == speech.len() as u64)
                .await
        );
        assert_eq!(fake.sessions()[0].responses_completed, 1);
    }

    #[tokio::test]
    async fn the_checked_in_caller_fixture_is_exactly_one_turn() {
        // espeak-ng speech has pauses between words; none may end the turn early.
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        send(&mut ws, pcmu_session_update()).await;
        until(&mut ws, "session.updated").await;
        append(&mut ws, &audio::caller_hello()).await;
        let events = until(&mut ws, "response.done").await;
        let order = types(&events);
        let starts = order
            .iter()
            .filter(|t| **t == "input_audio_buffer.speech_started")
            .count();
        assert_eq!(starts, 1, "{order:?}");
        let stopped = events
            .iter()
            .find(|e| e["type"] == "input_audio_buffer.speech_stopped")
            .unwrap();
        let end_ms = stopped["audio_end_ms"].as_u64().unwrap();
        assert!((1500..=3200).contains(&end_ms), "{end_ms}");
        assert!(fake.wait_until(WAIT, |s| s[0].speech_started == 1).await);
    }

    #[tokio::test]
    async fn without_transcription_configured_no_transcript_is_sent() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        let mut update = pcmu_session_update();
        update["session"]["audio"]["input"]["transcription"] = Value::Null;
        send(&mut ws, update).await;
        until(&mut ws, "session.updated").await;
        let mut speech = audio::tone_bursts(800);
        speech.extend(audio::silence(700));
        append(&mut ws, &speech).await;
        let events = until(&mut ws, "response.done").await;
        assert!(!types(&events).contains(&"conversation.item.input_audio_transcription.completed"));
    }

    #[tokio::test]
    async fn truncate_within_the_sent_audio_works_and_beyond_it_errors() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        send(
            &mut ws,
            json!({"type": "response.create", "response": {"instructions": "Greet."}}),
        )
        .await;
        let events = until(&mut ws, "response.done").await;
        let item_id = events.last().unwrap()["response"]["output"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();

        send(
            &mut ws,
            json!({"type": "conversation.item.truncate", "item_id": item_id,
                             "content_index": 0, "audio_end_ms": 1000}),
        )
        .await;
        let ok = next(&mut ws).await;
        assert_eq!(ok["type"], "conversation.item.truncated");
        assert_eq!(ok["audio_end_ms"], 1000);

        send(
            &mut ws,
            json!({"type": "conversation.item.truncate", "event_id": "evt_7", "item_id": item_id,
                             "content_index": 0, "audio_end_ms": 1501}),
        )
        .await;
        let err = next(&mut ws).await;
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["event_id"], "evt_7");

        send(
            &mut ws,
            json!({"type": "conversation.item.truncate", "item_id": "item_nope",
                             "content_index": 0, "audio_end_ms": 0}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "error");

        assert!(fake.wait_until(WAIT, |s| s[0].truncates.len() == 3).await);
        let record = &fake.sessions()[0];
        assert_eq!(record.truncates[0].item_id, item_id);
        assert_eq!(record.truncates[1].audio_end_ms, 1501);
        assert_eq!(record.response_creates[0]["instructions"], "Greet.");
    }

    #[tokio::test]
    async fn speech_during_a_paced_response_cancels_it() {
        let behaviour = OpenAiBehaviour {
            delta_interval_ms: 100,
            ..OpenAiBehaviour::default()
        };
        let fake = FakeOpenAi::start(behaviour).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        send(&mut ws, pcmu_session_update()).await;
        until(&mut ws, "session.updated").await;
        send(&mut ws, json!({"type": "response.create"})).await;
        until(&mut ws, "response.output_audio.delta").await;
        // A second response.create while one runs is refused, like the real API.
        send(&mut ws, json!({"type": "response.create"})).await;
        append(&mut ws, &audio::tone(300.0, -20.0, 200)).await;

        let events = until(&mut ws, "response.done").await;
        let order = types(&events);
        let started = order
            .iter()
            .position(|t| *t == "input_audio_buffer.speech_started")
            .unwrap();
        assert!(order.contains(&"error"), "{order:?}");
        assert!(
            !order[started..].contains(&"response.output_audio.delta"),
            "{order:?}"
        );
        let done = events.last().unwrap();
        assert_eq!(done["response"]["status"], "cancelled");
        assert_eq!(
            done["response"]["status_details"]["reason"],
            "turn_detected"
        );
        assert!(done["response"]["usage"]["total_tokens"].as_u64().unwrap() > 0);
        // Most of the 1.5 s never went out.
        assert!(delta_bytes(&events) < 12_000);
        assert!(
            fake.wait_until(WAIT, |s| s[0].responses_cancelled == 1)
                .await
        );
    }

    #[tokio::test]
    async fn bad_client_input_gets_error_events_and_the_session_survives() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
        let mut ws = connect(&fake).await;
        until(&mut ws, "session.created").await;
        ws.send(Message::text("{not json")).await.unwrap();
        assert_eq!(next(&mut ws).await["error"]["code"], "invalid_json");
        ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(next(&mut ws).await["type"], "error");
        send(&mut ws, json!({"no_type": true})).await;
        assert_eq!(next(&mut ws).await["error"]["param"], "type");
        send(&mut ws, json!({"type": "response.audio.delta"})).await;
        assert_eq!(next(&mut ws).await["error"]["code"], "invalid_value");
        send(
            &mut ws,
            json!({"type": "input_audio_buffer.append", "audio": "%%%"}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "error");
        send(
            &mut ws,
            json!({"type": "input_audio_buffer.append", "audio": 5}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "error");
        send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
        assert_eq!(
            next(&mut ws).await["error"]["code"],
            "input_audio_buffer_commit_empty"
        );
        send(&mut ws, json!({"type": "response.cancel"})).await;
        assert_eq!(
            next(&mut ws).await["error"]["code"],
            "response_cancel_not_active"
        );
        // The beta session shape is refused (protocols.md §2.1).
        send(&mut ws, json!({"type": "session.update", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}})).await;
        assert_eq!(next(&mut ws).await["error"]["code"], "unknown_parameter");
        send(
            &mut ws,
            json!({"type": "session.update", "session": {"instructions": "x"}}),
        )
        .await;
        assert_eq!(next(&mut ws).await["error"]["param"], "session.type");
        send(
            &mut ws,
            json!({"type": "conversation.item.truncate", "item_id": 1}),
        )
        .await;
        assert_eq!(next(&mut ws).await["type"], "error");

        // Still alive and sane.
        send(&mut ws, pcmu_session_update()).await;
        assert_eq!(next(&mut ws).await["type"], "session.updated");
        send(
            &mut ws,
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                             "content": [{"type": "input_text", "text": "hi"}]}}),
        )
        .await;
        let added = next(&mut ws).await;
        assert_eq!(added["type"], "conversation.item.added");
        assert!(added["item"]["id"].as_str().unwrap().starts_with("item_"));
        assert!(
            fake.wait_until(WAIT, |s| s[0].errors_sent == 11
                && s[0].item_creates.len() == 1)
                .await,
            "{:?}",
            fake.sessions()
        );
    }

    #[tokio::test]
    async fn refused_handshake_returns_the_http_status() {
        let fake = FakeOpenAi::start(
            OpenAiBehaviour::default().with_failure(Failure::RefuseHandshake(503)),
        )
        .await
        .unwrap();
        let request = format!("{}?model=gpt-realtime", fake.url());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503)
            }
            other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
        }
        assert!(fake.wait_until(WAIT, |s| s.len() == 1 && s[0].closed).await);
    }

    #[tokio::test]
    async fn a_stalled_server_says_nothing_but_listens() {
        let fake = FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::Stall))
            .await
            .unwrap();
        let mut ws = connect(&fake).await;
        send(&mut ws, pcmu_session_update()).await;
        let silent = tokio::time::timeout(Duration::from_millis(400), ws.next()).await;
        assert!(silent.is_err(), "stalled server sent {silent:?}");
        assert!(
            fake.wait_until(WAIT, |s| s[0].session_updates.len() == 1)
                .await
        );
    }

    #[tokio::test]
    async fn error_after_a_response_can_be_fatal_or_not() {
        let fatal = OpenAiBehaviour::default().with_failure(Failure::ErrorAfter {
            responses: 1,
            fatal: true,
        });
        let fake = FakeOpenAi::start(fatal).await.unwrap();
        let mut ws = connect(&fake).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        until(&mut ws, "response.done").await;
        let error = next(&mut ws).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "server_error");
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1011),
            other => panic!("expected close 1011, got {other:?}"),
        }

        let soft = OpenAiBehaviour::default().with_failure(Failure::ErrorAfter {
            responses: 0,
            fatal: false,
        });
        let fake = FakeOpenAi::start(soft).await.unwrap();
        let mut ws = connect(&fake).await;
        assert_eq!(next(&mut ws).await["type"], "session.created");
        assert_eq!(next(&mut ws).await["type"], "error");
        send(&mut ws, pcmu_session_update()).await;
        assert_eq!(next(&mut ws).await["type"], "session.updated");
    }

    #[tokio::test]
    async fn drop_after_cuts_the_connection_mid_response() {
        let fake = FakeOpenAi::start(
            OpenAiBehaviour::default().with_failure(Failure::DropAfter { responses: 1 }),
        )
        .await
        .unwrap();
        let mut ws = connect(&fake).await;
        send(&mut ws, json!({"type": "response.create"})).await;
        let first = until(&mut ws, "response.done").await;
        assert_eq!(delta_bytes(&first), 12_000);
        send(&mut ws, json!({"type": "response.create"})).await;
        let mut bytes = 0;
        let ending = loop {
            match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_ne!(
                        event["type"], "response.done",
                        "the second response must not finish"
                    );
                    if event["type"] == "response.output_audio.delta" {
                        bytes += B64.decode(event["delta"].as_str().unwrap()).unwrap().len();
                    }
                }
                other => break other,
            }
        };
        assert!(
            !matches!(ending, Some(Ok(Message::Close(_)))),
            "no close frame expected: {ending:?}"
        );
        assert!(bytes > 0 && bytes < 12_000, "{bytes}");
        assert!(fake.wait_until(WAIT, |s| s[0].closed).await);
    }
}

mod twilio {
    use std::time::Duration;

    use axum::Router;
    use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::{Value, json};
    use tokio::sync::mpsc;
    use tokio::time::Instant;
    use vocalized_bench::audio;
    use vocalized_bench::fakes::twilio::{
        CallEnd, CallOptions, CallParams, FakeTwilio, Garbage, account_sid,
    };
    use vocalized_control::twilio::signature;

    const AUTH_TOKEN: &str = "twilio-auth-token-xyz";
    const PUBLIC_URL: &str = "https://gw.example.com";
    const STREAM_URL: &str = "wss://gw.example.com/media/twilio";

    /// The stand-in gateway: webhooks verified with the control plane's own validator;
    /// each Media Streams socket (with its upgrade headers) is handed to the test body.
    struct Gateway {
        base: String,
        ws_url: String,
        sockets: mpsc::Receiver<(HeaderMap, WebSocket)>,
    }

    async fn gateway() -> Gateway {
        let (tx, sockets) = mpsc::channel(4);
        let app = Router::new()
            .route("/webhooks/calls/inbound", post(inbound))
            .route("/webhooks/calls/status", post(status))
            .route(
                "/media/twilio",
                get(move |headers: HeaderMap, upgrade: WebSocketUpgrade| {
                    let tx = tx.clone();
                    async move {
                        upgrade.on_upgrade(move |socket| async move {
                            let _ = tx.send((headers, socket)).await;
                        })
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Gateway {
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/media/twilio"),
            sockets,
        }
    }

    fn verified(headers: &HeaderMap, path: &str, body: &str) -> bool {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let header = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        signature::is_valid(&format!("{PUBLIC_URL}{path}"), &params, AUTH_TOKEN, header)
    }

    async fn inbound(headers: HeaderMap, body: String) -> Response {
        if !verified(&headers, "/webhooks/calls/inbound", &body)
            || headers.get("content-type").and_then(|v| v.to_str().ok())
                != Some("application/x-www-form-urlencoded")
        {
            return StatusCode::FORBIDDEN.into_response();
        }
        let twiml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{STREAM_URL}"><Parameter name="token" value="tok&amp;1"/></Stream></Connect></Response>"#
        );
        ([("content-type", "text/xml")], twiml).into_response()
    }

    async fn status(headers: HeaderMap, body: String) -> StatusCode {
        let completed = body.contains("CallStatus=completed") && body.contains("CallDuration=42");
        if verified(&headers, "/webhooks/calls/status", &body) && completed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        }
    }

    async fn next_json(socket: &mut WebSocket) -> (Instant, Value) {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.recv())
                .await
                .expect("no Twilio message in time")
                .expect("socket ended")
                .expect("socket error");
            if let AxMessage::Text(text) = message {
                return (Instant::now(), serde_json::from_str(text.as_str()).unwrap());
            }
        }
    }

    async fn send(socket: &mut WebSocket, value: Value) {
        socket
            .send(AxMessage::text(value.to_string()))
            .await
            .unwrap();
    }

    /// Reads `connected` and `start`, returning the streamSid.
    async fn handshake(socket: &mut WebSocket) -> String {
        assert_eq!(next_json(socket).await.1["event"], "connected");
        let (_, start) = next_json(socket).await;
        assert_eq!(start["event"], "start");
        start["streamSid"].as_str().unwrap().to_owned()
    }

    fn options(gw: &Gateway) -> CallOptions {
        CallOptions {
            connect_to: Some(gw.ws_url.clone()),
            auth_token: Some(AUTH_TOKEN.into()),
            ..CallOptions::default()
        }
    }

    #[tokio::test]
    async fn webhooks_are_signed_over_the_public_url() {
        let gw = gateway().await;
        let call = CallParams::new(&account_sid(), "+15550001111", "+15550002222");
        let reply = FakeTwilio::voice_webhook(&gw.base, PUBLIC_URL, AUTH_TOKEN, &call)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.twiml.stream_url.as_deref(), Some(STREAM_URL));
        assert!(reply.twiml.bidirectional);
        assert_eq!(reply.twiml.parameter("token"), Some("tok&1"));

        // The gateway really checks: a wrong token or a local URL fails verification.
        let wrong = FakeTwilio::voice_webhook(&gw.base, PUBLIC_URL, "other-token", &call)
            .await
            .unwrap();
        assert_eq!(wrong.status, 403);
        let local = FakeTwilio::voice_webhook(&gw.base, &gw.base, AUTH_TOKEN, &call)
            .await
            .unwrap();
        assert_eq!(local.status, 403);

        let done = FakeTwilio::status_callback(
            &gw.base,
            PUBLIC_URL,
            AUTH_TOKEN,
            &call,
            "completed",
            Some(42),
            3,
        )
        .await
        .unwrap();
        assert_eq!(done.status, 204);
    }

    #[tokio::test]
    async fn caller_audio_arrives_at_real_time_pace_in_twilio_framing() {
        let mut gw = gateway().await;
        let caller = audio::tone(440.0, -20.0, 1000);
        let call = FakeTwilio::connect(STREAM_URL, "tok-1", "CA123", caller.clone(), options(&gw))
            .await
            .unwrap();
        let (headers, mut socket) = gw.sockets.recv().await.unwrap();
        // The upgrade is signed over the TwiML's wss:// URL with no parameters.
        let upgrade_signature = headers.get("x-twilio-signature").unwrap().to_str().unwrap();
        assert!(signature::is_valid(
            STREAM_URL,
            &[],
            AUTH_TOKEN,
            upgrade_signature
        ));

        let (_, connected) = next_json(&mut socket).await;
        assert_eq!(
            connected,
            json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        );
        let (_, start) = next_json(&mut socket).await;
        assert_eq!(start["sequenceNumber"], "1");
        assert!(start["streamSid"].as_str().unwrap().starts_with("MZ"));
        assert_eq!(start["start"]["streamSid"], start["streamSid"]);
        assert_eq!(start["start"]["callSid"], "CA123");
        assert_eq!(start["start"]["tracks"], json!(["inbound"]));
        assert_eq!(
            start["start"]["customParameters"],
            json!({"token": "tok-1"})
        );
        assert_eq!(
            start["start"]["mediaFormat"],
            json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        );

        let mut arrivals = Vec::new();
        let mut received = Vec::new();
        let stop = loop {
            let (at, event) = next_json(&mut socket).await;
            if event["event"] != "media" {
                break event;
            }
            let n = arrivals.len() as u64;
            assert_eq!(event["sequenceNumber"], (n + 2).to_string());
            assert_eq!(event["media"]["chunk"], (n + 1).to_string());
            assert_eq!(event["media"]["timestamp"], (n * 20).to_string());
            assert_eq!(event["media"]["track"], "inbound");
            let payload = B64
                .decode(event["media"]["payload"].as_str().unwrap())
                .unwrap();
            assert_eq!(payload.len(), 160);
            received.extend(payload);
            arrivals.push(at);
        };
        assert_eq!(stop["event"], "stop");
        assert_eq!(stop["stop"]["callSid"], "CA123");
        assert_eq!(stop["sequenceNumber"], "52");
        assert_eq!(received, caller);
        // 50 frames 20 ms apart: the 49 gaps span ~980 ms. Bounds allow for a loaded box;
        // sent all at once they would span a few ms.
        let span = arrivals[49] - arrivals[0];
        assert!(
            span >= Duration::from_millis(900) && span <= Duration::from_millis(1300),
            "{span:?}"
        );
        let record = call.finish().await;
        assert_eq!(record.end, Some(CallEnd::HungUp));
        assert_eq!(record.media_sent_at.len(), 50);
    }

    #[tokio::test]
    async fn marks_are_echoed_when_their_audio_has_played() {
        let mut gw = gateway().await;
        let call = FakeTwilio::connect(STREAM_URL, "t", "CA1", audio::silence(3000), options(&gw))
            .await
            .unwrap();
        let (_, mut socket) = gw.sockets.recv().await.unwrap();
        let sid = handshake(&mut socket).await;
        // A mark with nothing queued comes straight back.
        let asked = Instant::now();
        send(
            &mut socket,
            json!({"event": "mark", "streamSid": sid, "mark": {"name": "idle"}}),
        )
        .await;
        // 500 ms of agent audio in two chunks, then a mark.
        let sent = Instant::now();
        for part in audio::tone(300.0, -20.0, 500).chunks(2000) {
            send(
                &mut socket,
                json!({"event": "media", "streamSid": sid, "media": {"payload": B64.encode(part)}}),
            )
            .await;
        }
        send(
            &mut socket,
            json!({"event": "mark", "streamSid": sid, "mark": {"name": "item_a:1"}}),
        )
        .await;
        let mut echoes = Vec::new();
        while echoes.len() < 2 {
            let (at, event) = next_json(&mut socket).await;
            if event["event"] == "mark" {
                assert_eq!(event["streamSid"], sid.as_str());
                assert!(
                    event["sequenceNumber"]
                        .as_str()
                        .unwrap()
                        .parse::<u64>()
                        .is_ok()
                );
                echoes.push((at, event["mark"]["name"].as_str().unwrap().to_owned()));
            }
        }
        assert_eq!(echoes[0].1, "idle");
        assert!(
            echoes[0].0 - asked < Duration::from_millis(150),
            "{:?}",
            echoes[0].0 - asked
        );
        assert_eq!(echoes[1].1, "item_a:1");
        let waited = echoes[1].0 - sent;
        assert!(
            waited >= Duration::from_millis(480) && waited <= Duration::from_millis(800),
            "{waited:?}"
        );

        call.hang_up().await;
        let record = call.finish().await;
        assert_eq!(record.played_bytes(), 4000);
        assert_eq!(record.marks_echoed.len(), 2);
        assert!(record.bad_messages.is_empty(), "{:?}", record.bad_messages);
    }

    #[tokio::test]
    async fn clear_drops_queued_audio_and_echoes_pending_marks_at_once() {
        let mut gw = gateway().await;
        let call = FakeTwilio::connect(STREAM_URL, "t", "CA1", audio::silence(3000), options(&gw))
            .await
            .unwrap();
        let (_, mut socket) = gw.sockets.recv().await.unwrap();
        let sid = handshake(&mut socket).await;
        let agent = audio::tone(300.0, -20.0, 2000);
        send(
            &mut socket,
            json!({"event": "media", "streamSid": sid, "media": {"payload": B64.encode(&agent)}}),
        )
        .await;
        send(
            &mut socket,
            json!({"event": "mark", "streamSid": sid, "mark": {"name": "m1"}}),
        )
        .await;
        send(
            &mut socket,
            json!({"event": "mark", "streamSid": sid, "mark": {"name": "m2"}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cleared = Instant::now();
        send(&mut socket, json!({"event": "clear", "streamSid": sid})).await;
        let mut names = Vec::new();
        while names.len() < 2 {
            let (at, event) = next_json(&mut socket).await;
            if event["event"] == "mark" {
                assert!(
                    at - cleared < Duration::from_millis(150),
                    "{:?}",
                    at - cleared
                );
                names.push(event["mark"]["name"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(names, ["m1", "m2"]);
        call.hang_up().await;
        let record = call.finish().await;
        assert_eq!(record.clears.len(), 1);
        // ~300 ms heard (2400 bytes) of the 2 s; the rest was dropped.
        let heard = record.played_bytes();
        assert!((2000..=3600).contains(&heard), "{heard}");
        assert!(record.played.iter().all(|c| c.cut_by_clear));
        assert_eq!(record.played_audio(), agent[..heard].to_vec());
    }

    #[tokio::test]
    async fn garbage_and_early_media_are_sent_when_asked() {
        let mut gw = gateway().await;
        let opts = CallOptions {
            media_before_start: true,
            garbage: vec![
                (Duration::from_millis(30), Garbage::NonJsonText),
                (Duration::from_millis(60), Garbage::UnknownEvent),
                (Duration::from_millis(90), Garbage::BadBase64Media),
                (Duration::from_millis(120), Garbage::Binary),
            ],
            ..options(&gw)
        };
        let call = FakeTwilio::connect(STREAM_URL, "t", "CA1", audio::silence(300), opts)
            .await
            .unwrap();
        let (_, mut socket) = gw.sockets.recv().await.unwrap();
        let mut seen = Vec::new();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), socket.recv()).await
        {
            match message {
                AxMessage::Text(t) => seen.push(match serde_json::from_str::<Value>(t.as_str()) {
                    Ok(v)
                        if v["event"] == "media"
                            && B64.decode(v["media"]["payload"].as_str().unwrap()).is_err() =>
                    {
                        "bad-media".to_string()
                    }
                    Ok(v) => v["event"].as_str().unwrap().to_owned(),
                    Err(_) => "not-json".to_string(),
                }),
                AxMessage::Binary(_) => seen.push("binary".into()),
                AxMessage::Close(_) => break,
                _ => {}
            }
        }
        assert_eq!(&seen[..3], ["connected", "media", "start"]);
        for expected in ["not-json", "surprise", "bad-media", "binary", "stop"] {
            assert!(
                seen.contains(&expected.to_string()),
                "{expected} missing from {seen:?}"
            );
        }
        assert_eq!(call.finish().await.end, Some(CallEnd::HungUp));
    }

    #[tokio::test]
    async fn bad_gateway_frames_are_counted_and_a_gateway_close_ends_the_call() {
        let mut gw = gateway().await;
        let call = FakeTwilio::connect(STREAM_URL, "t", "CA1", audio::silence(5000), options(&gw))
            .await
            .unwrap();
        let (_, mut socket) = gw.sockets.recv().await.unwrap();
        let sid = handshake(&mut socket).await;
        socket.send(AxMessage::text("nope")).await.unwrap();
        send(
            &mut socket,
            json!({"event": "media", "streamSid": "MZwrong", "media": {"payload": ""}}),
        )
        .await;
        send(
            &mut socket,
            json!({"event": "media", "streamSid": sid, "media": {"payload": "***"}}),
        )
        .await;
        send(&mut socket, json!({"event": "dance", "streamSid": sid})).await;
        socket
            .send(AxMessage::Binary(vec![0u8; 4].into()))
            .await
            .unwrap();
        socket.send(AxMessage::Close(None)).await.unwrap();
        let record = call.finish().await;
        assert_eq!(record.end, Some(CallEnd::GatewayClosed));
        assert_eq!(record.bad_messages.len(), 5, "{:?}", record.bad_messages);
        assert_eq!(record.media_bytes_received, 0);
    }
}
