//! A fake Deepgram Voice Agent server speaking the v1 WebSocket protocol (protocols.md §5).
//!
//! - `session.rs`: one agent session as a sans-IO state machine: `Welcome` on connect,
//!   `Settings` checked and answered with `SettingsApplied` (after an optional delay),
//!   the greeting spoken, an energy VAD on the binary caller audio, each caller turn
//!   answered with `ConversationText`, `AgentStartedSpeaking`, binary agent audio and
//!   `AgentAudioDone`; `UserStartedSpeaking` (and the agent stops) when the caller talks
//!   over it; the session closes when neither audio nor `KeepAlive` arrives in time.
//! - The socket driver is the ElevenLabs fake's (`fakes::elevenlabs::ws`).
//!
//! [`FakeDeepgram::start`] binds 127.0.0.1:0; [`FakeDeepgram::url`] is the endpoint.

mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fakes::elevenlabs::ws::{self, Admission, Upgrade};
use crate::fakes::openai::VadConfig;
use session::Session;

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer the upgrade with this HTTP status instead of 101.
    Refuse(u16),
    /// Send `SettingsApplied`, then close with code 1011.
    CloseAfterSetup,
    /// Cut the TCP connection (no close frame) this long after the upgrade.
    DieAfterMs(u64),
}

/// A client-side function the agent calls on the first caller turn, before it answers.
#[derive(Debug, Clone)]
pub struct FunctionScript {
    pub name: String,
    /// The JSON arguments, as a string (as Deepgram sends them).
    pub arguments: String,
}

/// Everything a test can tune about the fake.
#[derive(Debug, Clone)]
pub struct DeepgramBehaviour {
    /// Transcripts of the caller's turns, in order (cycled).
    pub caller_lines: Vec<String>,
    /// The agent's replies, in order (cycled).
    pub agent_lines: Vec<String>,
    /// The µ-law 8 kHz audio of every agent turn (converted to the output encoding).
    pub agent_audio: Arc<[u8]>,
    /// Audio per binary frame, in ms.
    pub chunk_ms: u32,
    /// Delay between binary frames; 0 sends a whole turn at once.
    pub chunk_interval_ms: u64,
    /// Delay between `Settings` and `SettingsApplied`.
    pub ready_delay_ms: u64,
    /// The session closes when neither audio nor `KeepAlive` arrives for this long
    /// (counted from `SettingsApplied`); 0 never closes.
    pub idle_timeout_ms: u64,
    pub function_call: Option<FunctionScript>,
    pub vad: VadConfig,
    pub failure: Option<Failure>,
}

impl Default for DeepgramBehaviour {
    fn default() -> Self {
        Self {
            caller_lines: vec!["Hello, I would like to check my order.".into()],
            agent_lines: vec!["Sure, what is your order number?".into()],
            agent_audio: crate::audio::agent_reply_ms(1500).into(),
            chunk_ms: 100,
            chunk_interval_ms: 0,
            ready_delay_ms: 0,
            idle_timeout_ms: 10_000,
            function_call: None,
            vad: VadConfig::default(),
            failure: None,
        }
    }
}

impl DeepgramBehaviour {
    /// The default reply audio cut or looped to `ms`.
    pub fn with_agent_audio_ms(mut self, ms: u32) -> Self {
        self.agent_audio = crate::audio::agent_reply_ms(ms).into();
        self
    }

    pub fn with_failure(mut self, failure: Failure) -> Self {
        self.failure = Some(failure);
        self
    }
}

/// What one WebSocket session saw and did.
#[derive(Debug, Clone, Default)]
pub struct DeepgramRecord {
    pub path: String,
    pub query: Option<String>,
    /// The `Authorization` header of the upgrade (`Token …` or `Bearer …`).
    pub authorization: Option<String>,
    /// Every header of the upgrade, lowercased names.
    pub headers: BTreeMap<String, String>,
    /// The `Settings` message, whole.
    pub settings: Option<Value>,
    /// Client text message types in order.
    pub messages: Vec<String>,
    pub keep_alives: u32,
    pub audio_frames_in: u64,
    pub audio_bytes_in: u64,
    /// Agent audio bytes sent.
    pub audio_bytes_out: u64,
    /// `InjectAgentMessage.message`s.
    pub injected_agent_messages: Vec<String>,
    /// `InjectUserMessage.content`s.
    pub injected_user_messages: Vec<String>,
    /// `FunctionCallResponse` messages, whole.
    pub function_responses: Vec<Value>,
    pub speech_started: u32,
    pub turns_started: u32,
    pub turns_completed: u32,
    /// Agent turns cut short by the caller.
    pub interruptions: u32,
    /// The session was closed for lack of audio or KeepAlive.
    pub idle_closed: bool,
    /// Client messages the fake could not accept.
    pub bad_input: u32,
    pub closed: bool,
}

/// A running fake. Dropping it stops the server and every session.
pub struct FakeDeepgram {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Arc<Mutex<DeepgramRecord>>>>>,
    changed: ws::Changed,
    task: JoinHandle<()>,
}

impl FakeDeepgram {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(behaviour: DeepgramBehaviour) -> std::io::Result<Self> {
        let records: Arc<Mutex<Vec<Arc<Mutex<DeepgramRecord>>>>> = Arc::default();
        let changed: ws::Changed = Arc::new(watch::channel(0).0);
        let behaviour = Arc::new(behaviour);
        let list = records.clone();
        let make = move |upgrade: Upgrade| {
            let record = Arc::new(Mutex::new(DeepgramRecord {
                authorization: upgrade.headers.get("authorization").cloned(),
                path: upgrade.path,
                query: upgrade.query,
                headers: upgrade.headers,
                ..DeepgramRecord::default()
            }));
            list.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record.clone());
            if let Some(Failure::Refuse(status)) = behaviour.failure {
                record.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
                return Admission::Refuse {
                    status,
                    body: r#"{"err_code":"INVALID_AUTH","err_msg":"Refused by the fake."}"#.into(),
                };
            }
            Admission::Accept(Session::new(
                behaviour.clone(),
                record,
                std::time::Instant::now(),
            ))
        };
        let (addr, task) = ws::start(make, changed.clone()).await?;
        Ok(Self {
            addr,
            records,
            changed,
            task,
        })
    }

    /// `ws://127.0.0.1:PORT/v1/agent/converse`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/agent/converse", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every session so far, in connection order.
    pub fn sessions(&self) -> Vec<DeepgramRecord> {
        let list = self.records.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Waits until `check` holds for the recorded sessions; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[DeepgramRecord]) -> bool,
    ) -> bool {
        ws::wait_until(&self.changed, timeout, || check(&self.sessions())).await
    }
}

impl Drop for FakeDeepgram {
    fn drop(&mut self) {
        self.task.abort();
    }
}
