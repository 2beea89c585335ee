//! Provider failover over real sockets: the phone driver (`/media/twilio`) with a
//! stand-in control plane handing out a chain of providers, the fake Twilio as the
//! caller and fake providers that refuse, stall or die mid-call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vocalized_bench::audio;
use vocalized_bench::fakes::openai::{Failure, FakeOpenAi, OpenAiBehaviour};
use vocalized_bench::fakes::twilio::{CallOptions, FakeTwilio, TwilioCallRecord};
use vocalized_media::io::NodeState;
use vocalized_media::io::twilio_call::{self, APOLOGY_ULAW, TwilioCallConfig};
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::ids::{AgentId, CallId, WorkspaceId};
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::{CallPlan, CallSource, ProviderKind, ProviderTarget, Secret};

/// The control plane, reduced to one plan with a provider chain.
struct ChainLink {
    providers: Vec<ProviderTarget>,
    events: Mutex<Vec<CallEvent>>,
}

impl ChainLink {
    fn kinds(&self) -> Vec<CallEventKind> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    }
}

impl ControlLink for ChainLink {
    async fn plan_twilio_call(&self, _token: &str, _sid: &str) -> Result<CallPlan, PlanError> {
        let settings = CallSettings {
            call_greeting: "Hello, thanks for calling.".into(),
            ..CallSettings::default()
        };
        Ok(CallPlan {
            call_id: CallId("call_failover".into()),
            workspace_id: WorkspaceId("ws_1".into()),
            agent_id: AgentId("agt_1".into()),
            source: CallSource::Twilio,
            instructions: "You are the front desk.".into(),
            settings,
            tools: vec![],
            providers: self.providers.clone(),
        })
    }

    async fn plan_web_call(&self, _: &str, _: &str) -> Result<CallPlan, PlanError> {
        Err(PlanError::InvalidToken)
    }

    fn emit(&self, _call_id: &CallId, event: CallEvent) {
        self.events.lock().unwrap().push(event);
    }
}

fn openai(fake: &FakeOpenAi, key: &str) -> ProviderTarget {
    ProviderTarget {
        kind: ProviderKind::Openai,
        url: fake.url(),
        api_key: Secret(key.into()),
        model: "gpt-realtime".into(),
    }
}

/// Nothing listens there: the connection is refused at once.
fn dead() -> ProviderTarget {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ProviderTarget {
        kind: ProviderKind::Openai,
        url: format!("ws://127.0.0.1:{port}/v1/realtime"),
        api_key: Secret("sk-dead".into()),
        model: "gpt-realtime".into(),
    }
}

async fn gateway(link: Arc<ChainLink>, timeout: Duration) -> SocketAddr {
    let config = TwilioCallConfig {
        provider_connect_timeout: timeout,
    };
    let app = twilio_call::router(link, NodeState::new(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// ~1 s of silence, the caller's line, then `trailing_ms` of silence.
fn caller_turn(trailing_ms: u32) -> Vec<u8> {
    let mut a = audio::silence(1_000);
    a.extend(audio::caller_hello());
    a.extend(audio::silence(trailing_ms));
    a
}

async fn call(addr: SocketAddr, caller: Vec<u8>) -> TwilioCallRecord {
    let options = CallOptions {
        connect_to: Some(format!("ws://{addr}/media/twilio")),
        max_duration: Duration::from_secs(30),
        ..CallOptions::default()
    };
    let url = format!("ws://{addr}/media/twilio");
    let call = FakeTwilio::connect(&url, "token", "CA1", caller, options)
        .await
        .expect("media stream");
    call.finish().await
}

/// How long the caller waited, from `start`, for the agent's first audio.
fn silence_before_first_audio(record: &TwilioCallRecord) -> Duration {
    record
        .first_media_at()
        .expect("the caller heard the agent")
        .duration_since(record.started_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusing_first_provider_costs_the_caller_no_more_than_the_second_ones_setup() {
    // Baseline: the healthy provider alone.
    let healthy = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let alone = Arc::new(ChainLink {
        providers: vec![openai(&healthy, "sk-second")],
        events: Mutex::default(),
    });
    let addr = gateway(Arc::clone(&alone), Duration::from_secs(3)).await;
    let baseline = silence_before_first_audio(&call(addr, caller_turn(1_500)).await);

    // The same provider behind one that refuses the handshake, and one nobody runs.
    let refusing =
        FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::RefuseHandshake(503)))
            .await
            .unwrap();
    let chain = Arc::new(ChainLink {
        providers: vec![
            openai(&refusing, "sk-first"),
            dead(),
            openai(&healthy, "sk-second"),
        ],
        events: Mutex::default(),
    });
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(3)).await;
    let record = call(addr, caller_turn(1_500)).await;
    let waited = silence_before_first_audio(&record);
    assert!(
        waited <= baseline + Duration::from_secs(1),
        "the caller waited {waited:?} for the greeting; {baseline:?} with the healthy provider alone"
    );

    let kinds = chain.kinds();
    let failovers: Vec<&str> = kinds
        .iter()
        .filter_map(|k| match k {
            CallEventKind::Failover { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        failovers,
        ["provider_connect_failed", "provider_connect_failed"],
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup))
    );
    // The serving provider greeted and answered, with the second key.
    let served = healthy.sessions();
    let last = served.last().unwrap();
    assert_eq!(last.authorization.as_deref(), Some("Bearer sk-second"));
    assert!(last.responses_completed >= 2, "greeting and answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_provider_is_skipped_after_the_setup_timeout() {
    let stalled = FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::Stall))
        .await
        .unwrap();
    let healthy = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = Arc::new(ChainLink {
        providers: vec![openai(&stalled, "sk-a"), openai(&healthy, "sk-b")],
        events: Mutex::default(),
    });
    let addr = gateway(Arc::clone(&chain), Duration::from_millis(600)).await;
    let record = call(addr, caller_turn(1_000)).await;
    let waited = silence_before_first_audio(&record);
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_millis(2_500),
        "{waited:?}"
    );
    assert!(chain.kinds().iter().any(|k| matches!(k,
        CallEventKind::Failover { reason, .. } if reason == "provider_timeout")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_dying_mid_call_hands_the_conversation_to_the_next() {
    // The first provider greets, then dies halfway through its answer to the caller.
    let dying = FakeOpenAi::start(
        OpenAiBehaviour::default().with_failure(Failure::DropAfter { responses: 1 }),
    )
    .await
    .unwrap();
    let next = FakeOpenAi::start(OpenAiBehaviour::default()).await.unwrap();
    let chain = Arc::new(ChainLink {
        providers: vec![openai(&dying, "sk-a"), openai(&next, "sk-b")],
        events: Mutex::default(),
    });
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(3)).await;
    // The caller speaks, hears half an answer, then speaks again.
    let mut caller = caller_turn(3_000);
    caller.extend(caller_turn(3_000));
    let record = call(addr, caller).await;

    let kinds = chain.kinds();
    assert!(
        kinds.iter().any(|k| matches!(k,
            CallEventKind::Failover { from, to, reason }
                if from == "openai" && to == "openai" && reason == "provider_closed")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last(),
        Some(&CallEventKind::Ended(EndReason::CallerHangup)),
        "the call went on to the caller's hang-up"
    );
    // The next provider was told the conversation so far (the greeting and the caller's
    // first line), did not greet again, and answered the caller's second line.
    let taken_over = next.sessions();
    assert_eq!(taken_over.len(), 1);
    let s = &taken_over[0];
    let seeded: Vec<String> = s
        .item_creates
        .iter()
        .map(|item| item["content"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        seeded.iter().any(|t| t.contains("check my order")),
        "the caller's earlier turn was replayed: {seeded:?}"
    );
    assert!(
        s.session_updates[0]["instructions"]
            .as_str()
            .unwrap()
            .contains("front desk")
    );
    assert!(s.responses_completed >= 1, "the next provider answered");
    // Audio kept reaching the caller after the switch.
    let switched_at = record.started_at
        + Duration::from_millis(
            chain
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| matches!(e.kind, CallEventKind::Failover { .. }))
                .unwrap()
                .at_ms,
        );
    assert!(
        record
            .received
            .iter()
            .any(|r| r.at > switched_at && r.text.contains(r#""event":"media""#)),
        "no agent audio after the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_provider_fails_the_caller_hears_an_apology_and_the_call_ends() {
    let refusing =
        FakeOpenAi::start(OpenAiBehaviour::default().with_failure(Failure::RefuseHandshake(401)))
            .await
            .unwrap();
    let chain = Arc::new(ChainLink {
        providers: vec![openai(&refusing, "sk-a"), dead()],
        events: Mutex::default(),
    });
    let addr = gateway(Arc::clone(&chain), Duration::from_secs(2)).await;
    let record = call(addr, caller_turn(3_000)).await;
    assert!(
        record.played_bytes() >= APOLOGY_ULAW.len(),
        "the caller heard the apology"
    );
    assert_eq!(
        chain.kinds().last(),
        Some(&CallEventKind::Ended(EndReason::ProviderError {
            code: "all_providers_failed".into()
        }))
    );
}
