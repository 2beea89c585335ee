//! A fake ElevenLabs Agents server speaking the Conversational AI WebSocket protocol
//! (protocols.md §4).
//!
//! - `session.rs`: one conversation as a sans-IO state machine: waits for
//!   `conversation_initiation_client_data`, answers with metadata (after an optional
//!   delay), speaks the first message, runs an energy VAD on `user_audio_chunk` audio,
//!   answers each caller turn with `user_transcript`, `agent_response` and paced `audio`,
//!   sends `interruption` when the caller talks over it, pings, and records everything.
//! - `ws.rs`: the socket driver (shared with the Deepgram fake).
//!
//! [`FakeElevenLabs::start`] binds 127.0.0.1:0; [`FakeElevenLabs::url`] is the
//! conversation endpoint (the client appends `?agent_id=…`).

mod session;
pub(crate) mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fakes::openai::VadConfig;
use session::Session;
use ws::{Admission, Upgrade};

/// How the fake misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer the upgrade with this HTTP status instead of 101.
    Refuse(u16),
    /// Send the metadata, then close with code 1011.
    CloseAfterSetup,
    /// Cut the TCP connection (no close frame) this long after the upgrade.
    DieAfterMs(u64),
}

/// A client tool the agent calls on the first caller turn, before it answers.
#[derive(Debug, Clone)]
pub struct ToolScript {
    pub tool_name: String,
    pub parameters: Value,
}

/// Everything a test can tune about the fake.
#[derive(Debug, Clone)]
pub struct ElevenLabsBehaviour {
    /// The agent's configured formats, as reported in the metadata (`ulaw_8000`,
    /// `pcm_16000`, …). The fake decodes input and encodes output accordingly.
    pub user_input_audio_format: String,
    pub agent_output_audio_format: String,
    /// Transcripts of the caller's turns, in order (cycled).
    pub caller_lines: Vec<String>,
    /// The agent's replies, in order (cycled).
    pub agent_lines: Vec<String>,
    /// The agent's configured first message, used when the client does not override it;
    /// empty: the agent waits for the caller.
    pub first_message: String,
    /// The µ-law 8 kHz audio of every agent turn (converted to the output format).
    pub agent_audio: Arc<[u8]>,
    /// Audio per `audio` message, in ms.
    pub chunk_ms: u32,
    /// Delay between audio messages; 0 sends a whole turn at once.
    pub chunk_interval_ms: u64,
    /// Delay between the initiation message and the metadata.
    pub ready_delay_ms: u64,
    /// Interval between pings; 0 sends none.
    pub ping_interval_ms: u64,
    /// After an interruption, send one more chunk of the interrupted turn (as a real
    /// server may have in flight), which the client must drop.
    pub late_audio_after_interruption: bool,
    pub tool_call: Option<ToolScript>,
    pub vad: VadConfig,
    pub failure: Option<Failure>,
}

impl Default for ElevenLabsBehaviour {
    fn default() -> Self {
        Self {
            user_input_audio_format: "ulaw_8000".into(),
            agent_output_audio_format: "ulaw_8000".into(),
            caller_lines: vec!["Hello, I would like to check my order.".into()],
            agent_lines: vec!["Sure, what is your order number?".into()],
            first_message: String::new(),
            agent_audio: crate::audio::agent_reply_ms(1500).into(),
            chunk_ms: 100,
            chunk_interval_ms: 0,
            ready_delay_ms: 0,
            ping_interval_ms: 0,
            late_audio_after_interruption: false,
            tool_call: None,
            vad: VadConfig::default(),
            failure: None,
        }
    }
}

impl ElevenLabsBehaviour {
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

/// What one WebSocket conversation saw and did.
#[derive(Debug, Clone, Default)]
pub struct ElevenLabsRecord {
    pub path: String,
    pub query: Option<String>,
    /// The `agent_id` query parameter.
    pub agent_id: Option<String>,
    /// The `xi-api-key` header of the upgrade, if any.
    pub api_key: Option<String>,
    /// Every header of the upgrade, lowercased names.
    pub headers: BTreeMap<String, String>,
    /// The `conversation_initiation_client_data` message, whole.
    pub initiation: Option<Value>,
    /// Client message types in order (`user_audio_chunk` counted, not listed).
    pub messages: Vec<String>,
    pub audio_chunks_in: u64,
    /// Decoded caller audio bytes.
    pub audio_bytes_in: u64,
    /// Agent audio bytes sent.
    pub audio_bytes_out: u64,
    pub pings_sent: Vec<u64>,
    /// `event_id`s of the pongs received.
    pub pongs: Vec<u64>,
    pub contextual_updates: Vec<String>,
    pub user_messages: Vec<String>,
    /// `client_tool_result` messages, whole.
    pub tool_results: Vec<Value>,
    pub user_activity: u32,
    pub speech_started: u32,
    pub turns_started: u32,
    pub turns_completed: u32,
    pub interruptions: u32,
    /// Client messages the fake could not accept (bad JSON, unknown type, bad audio).
    pub bad_input: u32,
    pub closed: bool,
}

/// A running fake. Dropping it stops the server and every conversation.
pub struct FakeElevenLabs {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Arc<Mutex<ElevenLabsRecord>>>>>,
    changed: ws::Changed,
    task: JoinHandle<()>,
}

impl FakeElevenLabs {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(behaviour: ElevenLabsBehaviour) -> std::io::Result<Self> {
        let records: Arc<Mutex<Vec<Arc<Mutex<ElevenLabsRecord>>>>> = Arc::default();
        let changed: ws::Changed = Arc::new(watch::channel(0).0);
        let behaviour = Arc::new(behaviour);
        let list = records.clone();
        let make = move |upgrade: Upgrade| {
            let record = Arc::new(Mutex::new(record_of(upgrade)));
            list.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record.clone());
            if let Some(Failure::Refuse(status)) = behaviour.failure {
                record.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
                let body = r#"{"detail":{"status":"refused","message":"Refused by the fake."}}"#;
                return Admission::Refuse {
                    status,
                    body: body.into(),
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

    /// `ws://127.0.0.1:PORT/v1/convai/conversation`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/convai/conversation", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of every conversation so far, in connection order.
    pub fn sessions(&self) -> Vec<ElevenLabsRecord> {
        let list = self.records.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// Waits until `check` holds for the recorded conversations; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[ElevenLabsRecord]) -> bool,
    ) -> bool {
        ws::wait_until(&self.changed, timeout, || check(&self.sessions())).await
    }
}

impl Drop for FakeElevenLabs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record_of(upgrade: Upgrade) -> ElevenLabsRecord {
    let agent_id = upgrade.query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "agent_id")
            .map(|(_, v)| v.into_owned())
    });
    ElevenLabsRecord {
        api_key: upgrade.headers.get("xi-api-key").cloned(),
        path: upgrade.path,
        query: upgrade.query,
        agent_id,
        headers: upgrade.headers,
        ..ElevenLabsRecord::default()
    }
}
