//! What the provider tests share: a stand-in control plane handing out a chain of
//! providers, the phone driver served on a free port, and the fake Twilio caller.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vocalized_bench::audio;
use vocalized_bench::fakes::openai::FakeOpenAi;
use vocalized_bench::fakes::twilio::{CallOptions, FakeTwilio, TwilioCallRecord};
use vocalized_media::io::NodeState;
use vocalized_media::io::twilio_call::{self, TwilioCallConfig};
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind};
use vocalized_shared::ids::{AgentId, CallId, WorkspaceId};
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::{CallPlan, CallSource, ProviderKind, ProviderTarget, Secret};

/// The control plane, reduced to one plan with a provider chain.
pub struct ChainLink {
    pub providers: Vec<ProviderTarget>,
    pub events: Mutex<Vec<CallEvent>>,
}

impl ChainLink {
    /// The call's events once it has ended (the gateway may still be finishing when the
    /// caller's side returns).
    pub async fn ended_kinds(&self) -> Vec<CallEventKind> {
        for _ in 0..100 {
            let kinds = self.kinds();
            if matches!(kinds.last(), Some(CallEventKind::Ended(_))) {
                return kinds;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the call never ended: {:?}", self.kinds());
    }

    pub fn new(providers: Vec<ProviderTarget>) -> Arc<Self> {
        Arc::new(Self {
            providers,
            events: Mutex::default(),
        })
    }
}

impl ChainLink {
    pub fn kinds(&self) -> Vec<CallEventKind> {
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

pub fn openai(fake: &FakeOpenAi, key: &str) -> ProviderTarget {
    ProviderTarget {
        kind: ProviderKind::Openai,
        url: fake.url(),
        api_key: Secret(key.into()),
        model: "gpt-realtime".into(),
    }
}

/// Nothing listens there: the connection is refused at once.
pub fn dead() -> ProviderTarget {
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

pub async fn gateway(link: Arc<ChainLink>, timeout: Duration) -> SocketAddr {
    gateway_with(
        link,
        TwilioCallConfig {
            provider_connect_timeout: timeout,
            ..TwilioCallConfig::default()
        },
    )
    .await
}

pub async fn gateway_with(link: Arc<ChainLink>, config: TwilioCallConfig) -> SocketAddr {
    let app = twilio_call::router(link, NodeState::new(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// ~1 s of silence, the caller's line, then `trailing_ms` of silence.
pub fn caller_turn(trailing_ms: u32) -> Vec<u8> {
    let mut a = audio::silence(1_000);
    a.extend(audio::caller_hello());
    a.extend(audio::silence(trailing_ms));
    a
}

pub async fn call(addr: SocketAddr, caller: Vec<u8>) -> TwilioCallRecord {
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
pub fn silence_before_first_audio(record: &TwilioCallRecord) -> Duration {
    record
        .first_media_at()
        .expect("the caller heard the agent")
        .duration_since(record.started_at)
}
