//! Phone calls end to end, over real sockets against the running `vocalized` binary: a
//! fake Twilio signs the voice webhook and plays a recorded caller over Media Streams at
//! real-time pace; a fake OpenAI Realtime answers. The outcome is read back through the
//! REST API the way a customer would see it.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Process, vocalized};
use vocalized_bench::audio;
use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};
use vocalized_bench::fakes::twilio::{
    CallEnd, CallOptions, CallParams, FakeTwilio, Garbage, TwilioCall, TwilioCallRecord,
};
use vocalized_control::testing::TempDir;

const PUBLIC_URL: &str = "https://gw.example.test";
const TWILIO_SID: &str = "ACe2e0000000000000000000000000000";
const TWILIO_TOKEN: &str = "e2e-twilio-auth-token";
const NUMBER: &str = "+14155550123";
const ADMIN_EMAIL: &str = "ops@e2e.example";
const ADMIN_PASSWORD: &str = "e2e-admin-password";

/// The running gateway and an owner account with a live agent on NUMBER.
struct Gateway {
    _process: Process,
    _dir: TempDir,
    base: String,
    http: reqwest::Client,
    token: String,
    workspace: String,
}

impl Gateway {
    async fn start(openai: &FakeOpenAi, agent_config: Value) -> Self {
        let dir = TempDir::new("vz-e2e");
        // A platform admin, to verify the agent's number: calls through the platform's
        // Twilio account route only to verified numbers.
        let mut admin = vocalized(&dir.0);
        admin
            .args(["admin", "create", "--email", ADMIN_EMAIL, "--name", "Ops"])
            .args(["--role", "admin", "--data-dir", "data"])
            .env("VOCALIZED_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let created = support::finish(admin);
        assert!(created.status.success(), "{created:?}");
        let mut command = vocalized(&dir.0);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                "data",
                "--public-url",
                PUBLIC_URL,
            ])
            .env("VOCALIZED_TWILIO_ACCOUNT_SID", TWILIO_SID)
            .env("VOCALIZED_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
            .env("VOCALIZED_OPENAI_REALTIME_URL", openai.url())
            .env("VOCALIZED_OPENAI_API_KEY", "sk-e2e-platform-key");
        let mut process = Process::spawn(&mut command);
        let addr = tokio::task::block_in_place(|| process.wait_listening());
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let mut gw = Gateway {
            _process: process,
            _dir: dir,
            base,
            http,
            token: String::new(),
            workspace: String::new(),
        };
        let signup = gw
            .post(
                "/api/v1/auth/signup",
                json!({"email": "owner@e2e.example", "password": "password123", "name": "Owner"}),
            )
            .await;
        gw.token = signup["token"].as_str().expect("token").to_owned();
        let ws = gw
            .post("/api/v1/workspaces", json!({"name": "E2E Salon"}))
            .await;
        gw.workspace = ws["workspace"]["id"].as_str().unwrap().to_owned();
        let number = gw
            .post(
                &gw.ws_path("/phone-numbers"),
                json!({"phone_number": NUMBER}),
            )
            .await;
        let number_id = number["phone_number"]["id"].as_str().unwrap().to_owned();
        gw.verify_number(&number_id).await;
        let agent = gw
            .post(&gw.ws_path("/agents"), json!({"name": "Front desk", "voice_provider": "openai",
                                                  "phone_number_id": number_id, "config": agent_config}))
            .await;
        let agent_id = agent["agent"]["id"].as_str().expect("agent").to_owned();
        gw.post(
            &gw.ws_path(&format!("/agents/{agent_id}/activate")),
            json!({}),
        )
        .await;
        gw
    }

    /// Verifies phone number `number_id` as the platform admin.
    async fn verify_number(&self, number_id: &str) {
        let login: Value = self
            .http
            .post(format!("{}/api/v1/admin/auth/login", self.base))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin = login["token"].as_str().expect("admin token");
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/admin/phone-numbers/{number_id}/verify",
                self.base
            ))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "verify: {}", resp.status());
    }

    fn ws_path(&self, rest: &str) -> String {
        format!("/api/v1/workspaces/{}{rest}", self.workspace)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {value}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Places a call: the signed webhook, then the Media Streams socket.
    async fn dial(
        &self,
        caller_audio: Vec<u8>,
        options: CallOptions,
    ) -> (CallParams, String, TwilioCall) {
        let params = CallParams::new(TWILIO_SID, "+12349013030", NUMBER);
        let reply = FakeTwilio::voice_webhook(&self.base, PUBLIC_URL, TWILIO_TOKEN, &params)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let stream_url = reply
            .twiml
            .stream_url
            .clone()
            .expect("a <Stream> in the TwiML");
        assert_eq!(stream_url, "wss://gw.example.test/media/twilio");
        let token = reply
            .twiml
            .parameter("token")
            .expect("token parameter")
            .to_owned();
        let options = CallOptions {
            connect_to: Some(format!(
                "{}/media/twilio",
                self.base.replacen("http", "ws", 1)
            )),
            account_sid: TWILIO_SID.into(),
            ..options
        };
        let call =
            FakeTwilio::connect(&stream_url, &token, &params.call_sid, caller_audio, options)
                .await
                .expect("media socket");
        (params, token, call)
    }

    /// The call with this CallSid, once it has reached a final status.
    async fn finished_call(&self, call_sid: &str) -> Value {
        for _ in 0..200 {
            let list = self.get(&self.ws_path("/calls")).await;
            let call = list["calls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"].is_string())
                .cloned();
            if let Some(id) = call.as_ref().and_then(|c| c["id"].as_str()) {
                let detail = self.get(&self.ws_path(&format!("/calls/{id}"))).await;
                let status = detail["call"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if detail["call"]["provider_call_sid"] == call_sid
                    && ["completed", "failed"].contains(&status.as_str())
                {
                    return detail;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("call {call_sid} never finished");
    }

    async fn calls(&self) -> Vec<Value> {
        self.get(&self.ws_path("/calls")).await["calls"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// ~1 s of silence, the caller's line, then silence long enough for the agent's reply.
fn caller_turn(trailing_ms: u32) -> Vec<u8> {
    let mut a = audio::silence(1_000);
    a.extend(audio::caller_hello());
    a.extend(audio::silence(trailing_ms));
    a
}

fn turns(transcript: &Value) -> Vec<(String, String, i64, i64)> {
    transcript["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().to_owned(),
                t["content"].as_str().unwrap().to_owned(),
                t["start_ms"].as_i64().unwrap(),
                t["end_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_call_from_webhook_to_hang_up() {
    let openai = FakeOpenAi::start(OpenAiBehaviour {
        agent_lines: vec![
            "Thanks for calling the salon.".into(),
            "Sure, what day suits you?".into(),
        ],
        caller_lines: vec!["I would like to book a manicure.".into()],
        ..OpenAiBehaviour::default()
    })
    .await
    .unwrap();
    let gw = Gateway::start(&openai, json!({"instructions": "You answer for a salon.",
                                             "call": {"callGreeting": "Thanks for calling the salon."}})).await;
    let caller = caller_turn(4_000);
    let caller_ms = caller.len() as i64 / 8;
    let (params, _, call) = gw.dial(caller, CallOptions::default()).await;
    let record = call.finish().await;
    assert_eq!(
        record.end,
        Some(CallEnd::HungUp),
        "the caller hung up at the end of the audio"
    );
    assert!(
        record.played_bytes() > 8 * 1000,
        "the caller heard the agent: {} bytes",
        record.played_bytes()
    );
    assert!(
        record.marks_received.len() >= 2,
        "every agent chunk is followed by a mark"
    );
    assert!(
        record.bad_messages.is_empty(),
        "the gateway spoke valid Twilio: {:?}",
        record.bad_messages
    );

    let call = gw.finished_call(&params.call_sid).await;
    let c = &call["call"];
    assert_eq!(c["status"], "completed", "{call}");
    assert_eq!(c["source"], "twilio");
    assert_eq!(c["end_reason"], "caller_hangup");
    let duration = c["duration_seconds"].as_i64().unwrap();
    assert!(
        (duration - caller_ms / 1000).abs() <= 2,
        "duration {duration}s for a {caller_ms} ms call"
    );
    assert!(
        c["cost_total_micros"].as_i64().unwrap() > 0,
        "usage was priced: {c}"
    );

    let id = c["id"].as_str().unwrap();
    let transcript = gw
        .get(&gw.ws_path(&format!("/calls/{id}/transcription")))
        .await;
    let t = turns(&transcript);
    let roles: Vec<&str> = t.iter().map(|(r, ..)| r.as_str()).collect();
    assert_eq!(roles, ["assistant", "user", "assistant"], "{transcript}");
    assert_eq!(t[1].1, "I would like to book a manicure.");
    assert!(
        t.windows(2).all(|w| w[0].2 <= w[1].2),
        "turns in order of time: {t:?}"
    );
    assert!(
        t[1].2 >= 900,
        "the caller spoke after ~1 s of silence: {t:?}"
    );

    let events = gw.get(&gw.ws_path(&format!("/calls/{id}/events"))).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"answered"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"ended"), "{kinds:?}");
    assert!(
        kinds.contains(&"usage") && kinds.contains(&"provider_audio_started"),
        "{kinds:?}"
    );
    let seqs: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // The provider saw the GA session with µ-law both ways and the platform key.
    let session = &openai.sessions()[0];
    assert_eq!(
        session.authorization.as_deref(),
        Some("Bearer sk-e2e-platform-key")
    );
    assert_eq!(
        session.session_updates[0]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );
    assert!(
        session.audio_bytes_in > 8 * 3000,
        "caller audio passed through: {}",
        session.audio_bytes_in
    );

    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "vocalized_media_active_calls",
        "vocalized_media_call_setup_seconds_count",
        "vocalized_media_provider_time_to_first_audio_seconds_count",
        "vocalized_media_gateway_added_latency_seconds_count{direction=\"caller_to_provider\"}",
        "vocalized_media_gateway_added_latency_seconds_count{direction=\"provider_to_caller\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn barge_in_clears_twilio_and_truncates_at_what_was_heard() {
    // A long greeting the caller talks over after ~1.5 s.
    let openai = FakeOpenAi::start(OpenAiBehaviour::default().with_agent_audio_ms(6_000))
        .await
        .unwrap();
    let gw = Gateway::start(
        &openai,
        json!({"call": {"callGreeting": "Welcome to a very long greeting."}}),
    )
    .await;
    let mut caller = audio::silence(1_500);
    caller.extend(audio::caller_hello());
    caller.extend(audio::silence(2_500));
    let (params, _, call) = gw.dial(caller, CallOptions::default()).await;
    let record = call.finish().await;
    assert!(!record.clears.is_empty(), "the gateway sent clear");
    let cleared_at = record.clears[0];
    // What the caller had heard of the greeting when Twilio cleared it.
    let heard_bytes: usize = record
        .played
        .iter()
        .filter(|c| c.started_at < cleared_at.into_std())
        .map(|c| c.bytes.len())
        .sum();
    let heard_ms = heard_bytes as i64 / 8;
    let session = &openai.sessions()[0];
    assert_eq!(session.truncates.len(), 1, "{:?}", session.truncates);
    let truncated = session.truncates[0].audio_end_ms as i64;
    assert!(
        (truncated - heard_ms).abs() <= 20,
        "truncated at {truncated} ms, caller heard {heard_ms} ms"
    );
    assert!(
        heard_ms < 6_000 && heard_ms > 1_000,
        "cut mid-greeting: {heard_ms}"
    );

    let call = gw.finished_call(&params.call_sid).await;
    let id = call["call"]["id"].as_str().unwrap();
    let transcript = gw
        .get(&gw.ws_path(&format!("/calls/{id}/transcription")))
        .await;
    assert_eq!(transcript["turns"][0]["truncated"], true, "{transcript}");
    let events = gw.get(&gw.ws_path(&format!("/calls/{id}/events"))).await;
    let barge = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "barge_in")
        .cloned()
        .expect("barge_in event");
    assert_eq!(barge["event_data"]["heard_ms"].as_i64().unwrap(), truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_signatures_and_reused_tokens_are_refused() {
    let openai = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let gw = Gateway::start(&openai, json!({})).await;
    let params = CallParams::new(TWILIO_SID, "+12349013030", NUMBER);
    let forged = FakeTwilio::voice_webhook(&gw.base, PUBLIC_URL, "not-the-token", &params)
        .await
        .unwrap();
    assert_eq!(forged.status, 403);
    assert!(
        gw.calls().await.is_empty(),
        "nothing written for a forged webhook"
    );

    let (params, token, call) = gw.dial(caller_turn(2_000), CallOptions::default()).await;
    call.finish().await;
    gw.finished_call(&params.call_sid).await;
    // The same token again: the socket is closed at start; the finished call stays as it was.
    let replay = FakeTwilio::connect(
        "wss://gw.example.test/media/twilio",
        &token,
        &params.call_sid,
        audio::silence(3_000),
        CallOptions {
            connect_to: Some(format!(
                "{}/media/twilio",
                gw.base.replacen("http", "ws", 1)
            )),
            ..CallOptions::default()
        },
    )
    .await
    .unwrap()
    .finish()
    .await;
    assert_eq!(replay.end, Some(CallEnd::GatewayClosed));
    assert_eq!(replay.media_bytes_received, 0);
    let calls = gw.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_out_of_order_frames_do_not_stop_the_call() {
    let openai = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let gw = Gateway::start(&openai, json!({})).await;
    let options = CallOptions {
        media_before_start: true,
        garbage: vec![
            (Duration::from_millis(200), Garbage::NonJsonText),
            (Duration::from_millis(400), Garbage::UnknownEvent),
            (Duration::from_millis(600), Garbage::BadBase64Media),
            (Duration::from_millis(800), Garbage::Binary),
        ],
        ..CallOptions::default()
    };
    let (params, _, call) = gw.dial(caller_turn(3_000), options).await;
    let record: TwilioCallRecord = call.finish().await;
    assert_eq!(record.end, Some(CallEnd::HungUp));
    let call = gw.finished_call(&params.call_sid).await;
    assert_eq!(call["call"]["status"], "completed");
    let id = call["call"]["id"].as_str().unwrap();
    let transcript = gw
        .get(&gw.ws_path(&format!("/calls/{id}/transcription")))
        .await;
    assert!(
        turns(&transcript).iter().any(|(role, ..)| role == "user"),
        "the caller was still heard: {transcript}"
    );
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vocalized_media_malformed_frames_total{kind=\"twilio\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_drops_mid_call_ends_it_cleanly_with_an_apology() {
    // The greeting plays, then the provider cuts the TCP connection mid-reply.
    let openai = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::DropAfter { responses: 1 }),
    )
    .await
    .unwrap();
    let gw = Gateway::start(&openai, json!({})).await;
    let (params, _, call) = gw.dial(caller_turn(8_000), CallOptions::default()).await;
    let record = call.finish().await;
    assert_eq!(
        record.end,
        Some(CallEnd::GatewayClosed),
        "the gateway hung up"
    );
    let apology_bytes = vocalized_media::io::twilio_call::APOLOGY_ULAW.len();
    assert!(
        record.played_bytes() >= apology_bytes,
        "the caller heard the apology"
    );

    let call = gw.finished_call(&params.call_sid).await;
    let c = &call["call"];
    assert_eq!(c["status"], "failed");
    // Its only provider failed: the chain is exhausted.
    assert_eq!(c["error_code"], "all_providers_failed");
    // The response that completed before the drop was still billed.
    assert!(c["cost_total_micros"].as_i64().unwrap() > 0, "{c}");
    let id = c["id"].as_str().unwrap();
    let events = gw.get(&gw.ws_path(&format!("/calls/{id}/events"))).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"ended"), "{kinds:?}");
    let why = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "error")
        .expect("the provider's failure is recorded");
    assert!(why.to_string().contains("provider_closed"), "{why}");
}
