//! The agent's provider as a call driver sees it: the plan's chain of providers, one of
//! them connected at a time, with failover (ARCHITECTURE.md §4, issue 6).
//!
//! [`ProviderChain`] connects the first provider in the plan that answers, and when the
//! one in use fails (its socket drops, it sends a fatal error, or a send fails) the next
//! one, re-seeded with the agent's instructions and the conversation so far; the session
//! is switched to the new provider's formats and records a `failover` event each time it
//! moves on. When none is left the session ends the call `all_providers_failed`.
//! Gemini's `goAway` rolls the session over to a new connection of the same provider
//! with its resumption handle.
//!
//! The driver `select!`s on [`ProviderChain::wake`] (cancel-safe: it reads one frame or
//! waits for a deadline), hands what woke it to [`ProviderChain::deliver`], and calls
//! [`ProviderChain::recover`] with any failure that reports.
//!
//! A provider can also hang without closing: its process wedged, or a frame cut off
//! mid-way with the rest never coming (issue 19). A quiet provider is pinged; one that
//! has sent nothing at all, not even the pong, for the stall timeout has failed
//! (`provider_stalled`), and the call moves on as for any other failure.

use super::provider_ws::{self, ProviderSocket};
use crate::core::echo::{self, EchoProvider};
use crate::core::session::{CallSession, Input, ProviderCommand, ProviderEvent};
use crate::core::wire::{deepgram, elevenlabs, gemini, openai};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::events::{CallEvent, CallEventKind, Role};
use vocalized_shared::plan::{CallPlan, ProviderKind, ProviderTarget};

/// PCM16 at 24 kHz: the echo provider's format, and OpenAI's for non-telephone callers.
const PCM24: AudioFormat = AudioFormat::Pcm16 {
    sample_rate_hz: echo::SAMPLE_RATE,
};

/// The error code a call ends with when every provider in its chain failed.
pub const ALL_PROVIDERS_FAILED: &str = "all_providers_failed";

/// The formats a provider speaks for a caller leg: `(caller audio in, agent audio out)`.
pub fn formats(kind: ProviderKind, caller: AudioFormat) -> (AudioFormat, AudioFormat) {
    match kind {
        ProviderKind::Echo => (PCM24, PCM24),
        ProviderKind::Openai => {
            let f = openai::provider_format(caller);
            (f, f)
        }
        ProviderKind::Gemini => gemini::provider_format(),
        ProviderKind::Elevenlabs => elevenlabs::provider_format(caller),
        ProviderKind::Deepgram => deepgram::provider_format(caller),
    }
}

/// What woke the driver.
pub enum Wake {
    /// A text or binary frame from a WebSocket provider.
    Frame(Message),
    /// The provider's connection is gone (with its close code, if it sent one).
    Closed(Option<u16>, String),
    /// The in-process provider has events due.
    Due,
    /// The provider's session is near its time cap: roll over to a new one.
    SessionCap,
    /// A ping or pong came in: the provider is alive, nothing to deliver.
    Alive,
    /// Nothing came in, not even a pong, for the stall timeout.
    Stalled,
}

/// Why the provider in use can no longer serve the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It failed: the code becomes the failover's reason.
    Failed(String),
    /// It asked us to reconnect (Gemini `goAway`), or its session is near its time cap
    /// (OpenAI's 60 minutes): roll over to a new session of the same provider.
    Rollover,
}

/// One connected provider.
enum Provider {
    Echo(EchoProvider),
    OpenAi {
        socket: ProviderSocket,
        decoder: openai::OpenAiDecoder,
        text: String,
        /// When to roll over to a new session, ahead of the session time cap.
        rollover_at: tokio::time::Instant,
    },
    Gemini {
        socket: ProviderSocket,
        decoder: gemini::GeminiDecoder,
        text: String,
    },
    ElevenLabs {
        socket: ProviderSocket,
        decoder: elevenlabs::ElevenLabsDecoder,
        text: String,
        /// Replies the protocol asks for (pongs), sent before the next read.
        replies: VecDeque<String>,
    },
    Deepgram {
        socket: ProviderSocket,
        decoder: deepgram::DeepgramDecoder,
        text: String,
        /// Messages the protocol asks for (`Settings` after `Welcome`).
        replies: VecDeque<String>,
        keep_alive: deepgram::KeepAlive,
    },
}

impl Provider {
    async fn send(&mut self, cmd: &ProviderCommand<'_>, now: Instant) -> bool {
        if let Provider::Deepgram {
            socket,
            text,
            keep_alive,
            ..
        } = self
        {
            let message = match deepgram::write_command(cmd, text) {
                Some(deepgram::Frame::Binary(audio)) => Message::Binary(audio.to_vec().into()),
                Some(deepgram::Frame::Text(t)) => Message::Text(t.into()),
                None => {
                    if matches!(cmd, ProviderCommand::Close) {
                        let _ = socket.close(None).await;
                    }
                    return true;
                }
            };
            keep_alive.handle_sent(now);
            return socket.send(message).await.is_ok();
        }
        let (socket, text, wrote) = match self {
            Provider::Echo(echo) => {
                echo.handle_command(*cmd, now);
                return true;
            }
            Provider::OpenAi { socket, text, .. } => {
                let wrote = openai::write_command(cmd, text);
                (socket, text, wrote)
            }
            Provider::Gemini { socket, text, .. } => {
                let wrote = gemini::write_command(cmd, text);
                (socket, text, wrote)
            }
            Provider::ElevenLabs { socket, text, .. } => {
                let wrote = elevenlabs::write_command(cmd, text);
                (socket, text, wrote)
            }
            Provider::Deepgram { .. } => unreachable!("handled above"),
        };
        if wrote {
            socket
                .send(Message::Text(text.as_str().into()))
                .await
                .is_ok()
        } else {
            // Nothing to send for this command; `Close` closes.
            if matches!(cmd, ProviderCommand::Close) {
                let _ = socket.close(None).await;
            }
            true
        }
    }

    async fn wake(&mut self) -> Wake {
        let socket = match self {
            Provider::Echo(echo) => {
                if echo.has_event_due(Instant::now()) {
                    return Wake::Due;
                }
                return match echo.next_deadline() {
                    Some(due) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                        Wake::Due
                    }
                    None => std::future::pending().await,
                };
            }
            Provider::OpenAi {
                socket,
                rollover_at,
                ..
            } => loop {
                tokio::select! {
                    frame = socket.next() => {
                        if let Some(wake) = read_wake(frame) {
                            return wake;
                        }
                    }
                    () = tokio::time::sleep_until(*rollover_at) => return Wake::SessionCap,
                }
            },
            Provider::Gemini { socket, .. } => socket,
            Provider::Deepgram {
                socket,
                replies,
                keep_alive,
                ..
            } => {
                if !send_replies(socket, replies).await {
                    return Wake::Closed(None, String::new());
                }
                // Deepgram closes an idle socket: KeepAlive when no audio has gone out.
                loop {
                    let due = tokio::time::Instant::from_std(keep_alive.poll_timeout());
                    tokio::select! {
                        frame = socket.next() => {
                            if let Some(wake) = read_wake(frame) {
                                return wake;
                            }
                        }
                        () = tokio::time::sleep_until(due) => {
                            if keep_alive.poll_due(Instant::now())
                                && socket.send(Message::Text(deepgram::KEEP_ALIVE.into())).await.is_err()
                            {
                                return Wake::Closed(None, String::new());
                            }
                        }
                    }
                }
            }
            Provider::ElevenLabs {
                socket, replies, ..
            } => {
                if !send_replies(socket, replies).await {
                    return Wake::Closed(None, String::new());
                }
                socket
            }
        };
        loop {
            if let Some(wake) = read_wake(socket.next().await) {
                return wake;
            }
        }
    }

    fn deliver(&mut self, wake: Wake, now: Instant, mut emit: impl FnMut(ProviderEvent<'_>)) {
        match (self, wake) {
            (Provider::Echo(echo), Wake::Due) => {
                while let Some(event) = echo.poll_event(now) {
                    emit(event);
                }
            }
            (Provider::Gemini { decoder, .. }, Wake::Closed(code, reason)) => {
                decoder.handle_close(code, &reason, emit)
            }
            (_, Wake::Closed(..)) => emit(ProviderEvent::Closed),
            (Provider::OpenAi { decoder, .. }, Wake::Frame(Message::Text(t))) => {
                decoder.handle_text(t.as_str(), emit);
            }
            (Provider::Gemini { decoder, .. }, Wake::Frame(Message::Text(t))) => {
                decoder.handle_text(t.as_str(), emit);
            }
            (Provider::Gemini { decoder, .. }, Wake::Frame(Message::Binary(b))) => {
                decoder.handle_binary(&b, emit);
            }
            (
                Provider::ElevenLabs {
                    decoder, replies, ..
                },
                Wake::Frame(Message::Text(t)),
            ) => {
                decoder.handle_text(t.as_str(), emit);
                replies.extend(std::iter::from_fn(|| decoder.poll_reply()));
            }
            (Provider::ElevenLabs { decoder, .. }, Wake::Frame(_)) => decoder.malformed += 1,
            (
                Provider::Deepgram {
                    decoder, replies, ..
                },
                Wake::Frame(frame),
            ) => {
                match frame {
                    Message::Text(t) => decoder.handle_text(t.as_str(), emit),
                    Message::Binary(b) => decoder.handle_binary(&b, emit),
                    _ => {}
                }
                replies.extend(std::iter::from_fn(|| decoder.poll_reply()));
            }
            (Provider::OpenAi { decoder, .. }, Wake::Frame(_)) => decoder.malformed += 1,
            (Provider::Gemini { decoder, .. }, Wake::Frame(_)) => decoder.malformed += 1,
            (_, _) => {}
        }
    }

    fn malformed(&self) -> u64 {
        match self {
            Provider::Echo(_) => 0,
            Provider::OpenAi { decoder, .. } => decoder.malformed,
            Provider::Gemini { decoder, .. } => decoder.malformed,
            Provider::ElevenLabs { decoder, .. } => decoder.malformed,
            Provider::Deepgram { decoder, .. } => decoder.malformed,
        }
    }

    fn socket(&mut self) -> Option<&mut ProviderSocket> {
        match self {
            Provider::Echo(_) => None,
            Provider::OpenAi { socket, .. }
            | Provider::Gemini { socket, .. }
            | Provider::ElevenLabs { socket, .. }
            | Provider::Deepgram { socket, .. } => Some(socket),
        }
    }

    async fn close(&mut self) {
        if let Some(socket) = self.socket() {
            let _ = socket.close(None).await;
        }
    }
}

/// How a connection is opened: what it continues from.
struct Opening<'a> {
    /// The conversation so far (failover, rollover), replayed to the new session.
    turns: &'a [(Role, String)],
    /// Greet the caller: only the call's first provider session does (or a failover at
    /// setup, before anyone was greeted).
    greet: bool,
    /// Gemini's resumption handle, for a rollover after `goAway`.
    resume_handle: Option<String>,
    /// How long an OpenAI session may run before it is rolled over.
    openai_rollover: Duration,
}

/// How long a provider may send nothing at all (it is pinged halfway) before it counts as
/// stalled. Long enough for a slow model's first words; short enough that a caller facing
/// a wedged provider hears the next one (or the apology) instead of dead air.
pub const PROVIDER_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The failover reason (and error code) of a provider that stalled.
pub const PROVIDER_STALLED: &str = "provider_stalled";

/// OpenAI Realtime sessions end after 60 minutes (protocols.md §2.1, §2.6) with no
/// resumption: a call rolls over to a new, re-seeded session a little before that.
pub const OPENAI_SESSION_ROLLOVER: Duration = Duration::from_secs(58 * 60);

/// Connects `target` and sets its session up, waiting until the provider has accepted
/// it: a refused connection, a timeout or a rejected session is an error (the call's
/// `error_code` or the failover's reason). The whole exchange has `timeout`.
async fn connect(
    plan: &CallPlan,
    target: &ProviderTarget,
    caller: AudioFormat,
    timeout: Duration,
    opening: Opening<'_>,
) -> Result<Provider, String> {
    let rollover_after = opening.openai_rollover;
    let deadline = tokio::time::Instant::now() + timeout;
    let fresh = opening.greet;
    let (mut provider, first): (Provider, Vec<String>) = match target.kind {
        ProviderKind::Echo => {
            // The echo reports `Connected` itself; the chain reports it for every provider.
            let mut echo = EchoProvider::new();
            let _connected = echo.poll_event(Instant::now());
            return Ok(Provider::Echo(echo));
        }
        ProviderKind::Openai => {
            let url = openai::connect_url(&target.url, &target.model);
            let auth = format!("Bearer {}", target.api_key.expose());
            let socket = open(&url, &[("authorization", auth.as_str())], timeout).await?;
            let setup = openai::OpenAiSetup {
                model: target.model.clone(),
                instructions: plan.instructions.clone(),
                settings: plan.settings.clone(),
                tools: plan.tools.clone(),
                format: caller,
            };
            let provider = Provider::OpenAi {
                socket,
                decoder: openai::OpenAiDecoder::new(target.model.clone()),
                text: String::with_capacity(2048),
                rollover_at: tokio::time::Instant::now() + rollover_after,
            };
            (provider, vec![openai::session_update(&setup)])
        }
        ProviderKind::Gemini => {
            let url = gemini::connect_url(&target.url, target.api_key.expose());
            let socket = open(&url, &[], timeout).await?;
            let setup = gemini::GeminiSetup {
                model: target.model.clone(),
                instructions: plan.instructions.clone(),
                settings: plan.settings.clone(),
                tools: plan.tools.clone(),
                resume_handle: opening.resume_handle.clone(),
            };
            let provider = Provider::Gemini {
                socket,
                decoder: gemini::GeminiDecoder::new(target.model.clone()),
                text: String::with_capacity(2048),
            };
            (provider, vec![gemini::setup_message(&setup)])
        }
        ProviderKind::Elevenlabs => {
            // The plan's model is the ElevenLabs agent id.
            let url = elevenlabs::connect_url(&target.url, &target.model);
            let (name, key) = elevenlabs::api_key_header(target.api_key.expose());
            let socket = open(&url, &[(name, key.as_str())], timeout).await?;
            let mut settings = plan.settings.clone();
            if !fresh {
                // Taking over a conversation: no second greeting.
                settings.call_greeting.clear();
            }
            let setup = elevenlabs::ElevenLabsSetup {
                agent_id: target.model.clone(),
                instructions: plan.instructions.clone(),
                settings,
                tools: plan.tools.clone(),
                format: caller,
            };
            let provider = Provider::ElevenLabs {
                socket,
                decoder: elevenlabs::ElevenLabsDecoder::new(caller),
                text: String::with_capacity(2048),
                replies: VecDeque::new(),
            };
            (provider, vec![elevenlabs::initiation(&setup)])
        }
        ProviderKind::Deepgram => {
            let url = deepgram::connect_url(&target.url);
            let (name, key) = deepgram::api_key_header(target.api_key.expose());
            let socket = open(&url, &[(name, key.as_str())], timeout).await?;
            // The plan's model names the agent's "think" LLM as `provider/model`.
            let (think_provider, think_model) = target
                .model
                .split_once('/')
                .unwrap_or(("open_ai", target.model.as_str()));
            let setup = deepgram::DeepgramSetup {
                think_provider: think_provider.to_owned(),
                think_model: think_model.to_owned(),
                instructions: plan.instructions.clone(),
                settings: plan.settings.clone(),
                tools: plan.tools.clone(),
                format: caller,
            };
            // Nothing may be sent before `Welcome`: the decoder queues `Settings` then.
            let settings = if fresh {
                deepgram::settings(&setup)
            } else {
                deepgram::seed_history(&setup, opening.turns)
            };
            let provider = Provider::Deepgram {
                socket,
                decoder: deepgram::DeepgramDecoder::new(caller, settings),
                text: String::with_capacity(256),
                replies: VecDeque::new(),
                keep_alive: deepgram::KeepAlive::new(Instant::now()),
            };
            (provider, Vec::new())
        }
    };
    let accepted = async {
        for text in first {
            send_text(&mut provider, text).await?;
        }
        // Wait for the provider to accept the session (OpenAI `session.updated`, Gemini
        // `setupComplete`); an error first means it was rejected.
        loop {
            let wake = provider.wake().await;
            let mut outcome: Option<Result<(), String>> = None;
            provider.deliver(wake, Instant::now(), |event| match event {
                ProviderEvent::Connected => outcome = Some(Ok(())),
                ProviderEvent::Error { code, .. } if outcome.is_none() => {
                    outcome = Some(Err(code.to_owned()));
                }
                ProviderEvent::Closed if outcome.is_none() => {
                    outcome = Some(Err("provider_closed".to_owned()));
                }
                _ => {}
            });
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    };
    match tokio::time::timeout_at(deadline, accepted).await {
        Err(_) => {
            provider.close().await;
            return Err("provider_timeout".into());
        }
        Ok(Err(code)) => {
            provider.close().await;
            return Err(code);
        }
        Ok(Ok(())) => {}
    }
    let mut then = Vec::new();
    match &provider {
        Provider::OpenAi { .. } if fresh => then.extend(openai::greeting(&plan.settings)),
        Provider::OpenAi { .. } => then.extend(openai::seed_history(opening.turns)),
        // A resumed Gemini session remembers the conversation itself.
        Provider::Gemini { .. } if opening.resume_handle.is_some() => {}
        Provider::Gemini { .. } if fresh => then.extend(gemini::greeting(&plan.settings)),
        Provider::Gemini { .. } => then.extend(gemini::seed_history(opening.turns)),
        // The greeting went in the initiation (`first_message`).
        Provider::ElevenLabs { .. } => then.extend(elevenlabs::seed_history(opening.turns)),
        // Greeting and history went in `Settings`.
        Provider::Deepgram { .. } => {}
        Provider::Echo(_) => {}
    }
    for text in then {
        send_text(&mut provider, text).await?;
    }
    Ok(provider)
}

async fn open(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<ProviderSocket, String> {
    provider_ws::connect(url, headers, timeout)
        .await
        .map_err(|e| {
            warn!(error = %e, "provider connect failed");
            e.code().to_owned()
        })
}

/// Sends queued protocol replies; each is popped only once sent, so a cancelled wake
/// sends it again rather than losing it. `false` when the socket is gone.
async fn send_replies(socket: &mut ProviderSocket, replies: &mut VecDeque<String>) -> bool {
    while let Some(reply) = replies.front() {
        if socket
            .send(Message::Text(reply.as_str().into()))
            .await
            .is_err()
        {
            return false;
        }
        replies.pop_front();
    }
    true
}

/// What one read from a provider socket means; `None` for control frames to skip.
fn read_wake(
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Option<Wake> {
    match frame {
        Some(Ok(Message::Close(frame))) => Some(match frame {
            Some(f) => Wake::Closed(Some(f.code.into()), f.reason.to_string()),
            None => Wake::Closed(None, String::new()),
        }),
        None | Some(Err(_)) => Some(Wake::Closed(None, String::new())),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Some(Wake::Alive),
        Some(Ok(Message::Frame(_))) => None,
        Some(Ok(m)) => Some(Wake::Frame(m)),
    }
}

async fn send_text(provider: &mut Provider, text: String) -> Result<(), String> {
    if let Some(socket) = provider.socket() {
        socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| "provider_closed".to_owned())?;
    }
    Ok(())
}

/// The plan's providers, one connected at a time. See the module notes.
pub struct ProviderChain<'p> {
    plan: &'p CallPlan,
    caller: AudioFormat,
    timeout: Duration,
    /// The target in use (or last tried), as an index into `plan.providers`.
    index: usize,
    current: Option<Provider>,
    /// Final transcripts so far, to re-seed a provider taking over.
    turns: Vec<(Role, String)>,
    /// Frames earlier providers sent that could not be understood.
    malformed: u64,
    /// A provider session has been up in this call (the caller was greeted).
    connected_once: bool,
    openai_rollover: Duration,
    stall_timeout: Duration,
    /// When the provider in use last sent anything (a frame, a ping, a pong).
    last_heard: tokio::time::Instant,
    /// A ping is out since `last_heard`.
    pinged: bool,
}

impl<'p> ProviderChain<'p> {
    pub fn new(plan: &'p CallPlan, caller: AudioFormat, timeout: Duration) -> Self {
        Self {
            plan,
            caller,
            timeout,
            index: 0,
            current: None,
            turns: Vec::new(),
            malformed: 0,
            connected_once: false,
            openai_rollover: OPENAI_SESSION_ROLLOVER,
            stall_timeout: PROVIDER_STALL_TIMEOUT,
            last_heard: tokio::time::Instant::now(),
            pinged: false,
        }
    }

    /// Counts a provider as stalled after `timeout` without a frame, instead of
    /// [`PROVIDER_STALL_TIMEOUT`].
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Puts a freshly connected provider in use.
    fn use_provider(&mut self, provider: Provider) {
        self.current = Some(provider);
        self.last_heard = tokio::time::Instant::now();
        self.pinged = false;
    }

    /// Rolls OpenAI sessions over after `after` instead of [`OPENAI_SESSION_ROLLOVER`].
    pub fn with_openai_rollover(mut self, after: Duration) -> Self {
        self.openai_rollover = after;
        self
    }

    /// The formats to build the session with: those of the first provider in the chain;
    /// `None` for an empty chain.
    pub fn initial_formats(&self) -> Option<(AudioFormat, AudioFormat)> {
        let first = self.plan.providers.first()?;
        Some(formats(first.kind, self.caller))
    }

    /// Connects the first provider that answers. `false` when none did: the session has
    /// been told and is ending the call.
    pub async fn start(&mut self, session: &mut CallSession) -> bool {
        self.connect_from(0, session).await
    }

    /// Handles a failure of the provider in use: a new session of the same provider
    /// after `goAway`, otherwise the next provider in the chain. `false` when no
    /// provider is left (the session is ending the call).
    pub async fn recover(&mut self, failure: Failure, session: &mut CallSession) -> bool {
        let failed = self.current.take();
        if let Some(mut p) = failed {
            self.malformed += p.malformed();
            let resume_handle = match &p {
                Provider::Gemini { decoder, .. } => {
                    decoder.latest_resume_handle().map(str::to_owned)
                }
                _ => None,
            };
            p.close().await;
            if failure == Failure::Rollover {
                let target = &self.plan.providers[self.index];
                let opening = Opening {
                    turns: &self.turns,
                    greet: false,
                    resume_handle,
                    openai_rollover: self.openai_rollover,
                };
                match connect(self.plan, target, self.caller, self.timeout, opening).await {
                    Ok(p) => {
                        info!(
                            provider = target.kind.as_str(),
                            "provider session rolled over"
                        );
                        let (input, output) = session_formats(session);
                        let name = target.kind.as_str();
                        let now = Instant::now();
                        let _ =
                            session.switch_provider(name, input, output, "session_rollover", now);
                        self.use_provider(p);
                        return true;
                    }
                    Err(code) => return self.move_on(code, session).await,
                }
            }
        }
        let reason = match failure {
            Failure::Failed(code) => code,
            Failure::Rollover => "go_away".to_owned(),
        };
        self.move_on(reason, session).await
    }

    /// Records the move past the provider that failed with `reason`, then connects the
    /// next one that answers.
    async fn move_on(&mut self, reason: String, session: &mut CallSession) -> bool {
        let next = self.index + 1;
        if !self.switch_to(next, &reason, session) {
            return self.give_up(session);
        }
        self.connect_from(next, session).await
    }

    /// Points the session at target `index` (recording the failover); `false` when
    /// there is no such target.
    fn switch_to(&mut self, index: usize, reason: &str, session: &mut CallSession) -> bool {
        let mut index = index;
        while let Some(target) = self.plan.providers.get(index) {
            let (input, output) = formats(target.kind, self.caller);
            if session
                .switch_provider(target.kind.as_str(), input, output, reason, Instant::now())
                .is_ok()
            {
                self.index = index;
                return true;
            }
            index += 1;
        }
        false
    }

    async fn connect_from(&mut self, start: usize, session: &mut CallSession) -> bool {
        let mut index = start;
        self.index = start;
        loop {
            let Some(target) = self.plan.providers.get(index) else {
                return self.give_up(session);
            };
            let opening = Opening {
                turns: &self.turns,
                greet: !self.connected_once,
                resume_handle: None,
                openai_rollover: self.openai_rollover,
            };
            match connect(self.plan, target, self.caller, self.timeout, opening).await {
                Ok(provider) => {
                    self.use_provider(provider);
                    self.connected_once = true;
                    session.handle_input(Input::Provider(ProviderEvent::Connected), Instant::now());
                    return true;
                }
                Err(code) => {
                    warn!(provider = target.kind.as_str(), %code, "provider failed at setup");
                    if !self.switch_to(index + 1, &code, session) {
                        return self.give_up(session);
                    }
                    index = self.index;
                }
            }
        }
    }

    fn give_up(&mut self, session: &mut CallSession) -> bool {
        self.current = None;
        let event = ProviderEvent::Error {
            fatal: true,
            code: ALL_PROVIDERS_FAILED,
            message: "no provider in the chain could serve the call",
        };
        session.handle_input(Input::Provider(event), Instant::now());
        false
    }

    /// Remembers final transcripts, for re-seeding a provider that takes over.
    pub fn observe(&mut self, event: &CallEvent) {
        if let CallEventKind::Transcript { role, text, .. } = &event.kind {
            self.turns.push((*role, text.clone()));
        }
    }

    /// Sends one command to the provider in use; `false` when it is gone.
    pub async fn send(&mut self, cmd: &ProviderCommand<'_>, now: Instant) -> bool {
        match self.current.as_mut() {
            Some(p) => p.send(cmd, now).await,
            None => true,
        }
    }

    /// Waits until the provider in use has something, or has stalled. Cancel-safe (the
    /// liveness state lives in `self`); never returns when there is no provider.
    pub async fn wake(&mut self) -> Wake {
        let stall_timeout = self.stall_timeout;
        loop {
            let Some(p) = self.current.as_mut() else {
                return std::future::pending().await;
            };
            if matches!(p, Provider::Echo(_)) {
                return p.wake().await;
            }
            let stalled_at = self.last_heard + stall_timeout;
            let ping_at = self.last_heard + stall_timeout / 2;
            tokio::select! {
                wake = p.wake() => {
                    self.last_heard = tokio::time::Instant::now();
                    self.pinged = false;
                    if !matches!(wake, Wake::Alive) {
                        return wake;
                    }
                }
                () = tokio::time::sleep_until(if self.pinged { stalled_at } else { ping_at }) => {
                    if self.pinged {
                        return Wake::Stalled;
                    }
                    if let Some(socket) = p.socket() {
                        // Bounded: a provider that stopped reading must not hang the call.
                        let ping = socket.send(Message::Ping(Vec::new().into()));
                        match tokio::time::timeout_at(stalled_at, ping).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return Wake::Closed(None, String::new()),
                            Err(_) => return Wake::Stalled,
                        }
                    }
                    self.pinged = true;
                }
            }
        }
    }

    /// Hands what woke the driver to the session. A failure of the provider is not
    /// passed on (the session would end the call): it is returned for [`Self::recover`],
    /// after the error is recorded as a non-fatal error event.
    pub fn deliver(
        &mut self,
        wake: Wake,
        now: Instant,
        session: &mut CallSession,
    ) -> Option<Failure> {
        let provider = self.current.as_mut()?;
        match wake {
            Wake::SessionCap => return Some(Failure::Rollover),
            Wake::Stalled => {
                warn!("provider sent nothing, not even a pong: stalled");
                let recorded = ProviderEvent::Error {
                    fatal: false,
                    code: PROVIDER_STALLED,
                    message: "the provider stopped answering",
                };
                session.handle_input(Input::Provider(recorded), now);
                return Some(Failure::Failed(PROVIDER_STALLED.into()));
            }
            _ => {}
        }
        let mut failure = None;
        provider.deliver(wake, now, |event| match event {
            ProviderEvent::Closed if failure.is_none() => {
                let recorded = ProviderEvent::Error {
                    fatal: false,
                    code: "provider_closed",
                    message: "the provider closed the connection",
                };
                session.handle_input(Input::Provider(recorded), now);
                failure = Some(Failure::Failed("provider_closed".into()));
            }
            ProviderEvent::Closed => {}
            ProviderEvent::Error {
                fatal: true,
                code,
                message,
            } => {
                let recorded = ProviderEvent::Error {
                    fatal: false,
                    code,
                    message,
                };
                session.handle_input(Input::Provider(recorded), now);
                failure = Some(Failure::Failed(code.to_owned()));
            }
            event if failure.is_none() => session.handle_input(Input::Provider(event), now),
            _ => {}
        });
        if failure.is_none()
            && let Provider::Gemini { decoder, .. } = provider
            && decoder.take_go_away().is_some()
        {
            failure = Some(Failure::Rollover);
        }
        failure
    }

    /// Frames providers sent that could not be understood, over the whole call.
    pub fn malformed(&self) -> u64 {
        self.malformed + self.current.as_ref().map_or(0, Provider::malformed)
    }

    /// Closes the provider in use.
    pub async fn close(&mut self) {
        if let Some(mut p) = self.current.take() {
            self.malformed += p.malformed();
            p.close().await;
        }
    }
}

fn session_formats(session: &CallSession) -> (AudioFormat, AudioFormat) {
    let c = session.config();
    (c.provider_input, c.provider_output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_per_provider_and_caller() {
        let ulaw = AudioFormat::Mulaw8k;
        assert_eq!(formats(ProviderKind::Openai, ulaw), (ulaw, ulaw));
        let web = crate::core::session::WEB_CALLER_FORMAT;
        assert_eq!(formats(ProviderKind::Openai, web), (PCM24, PCM24));
        assert_eq!(formats(ProviderKind::Echo, ulaw), (PCM24, PCM24));
        assert_eq!(
            formats(ProviderKind::Gemini, ulaw),
            gemini::provider_format()
        );
        assert_eq!(formats(ProviderKind::Deepgram, ulaw), (ulaw, ulaw));
        assert_eq!(formats(ProviderKind::Elevenlabs, ulaw), (ulaw, ulaw));
    }

    #[tokio::test]
    async fn the_echo_wakes_when_its_playback_is_due() {
        let mut p = Provider::Echo(EchoProvider::new());
        let mut seen = Vec::new();
        // `Connected` is due at once.
        let wake = p.wake().await;
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert_eq!(seen, ["Connected"]);
        // 100 ms of loud 24 kHz audio: speech now, its echo half a second later.
        let loud: Vec<u8> = (0..2_400).flat_map(|_| 8_000i16.to_le_bytes()).collect();
        assert!(p.send(&ProviderCommand::Audio(&loud), Instant::now()).await);
        let started = Instant::now();
        let wake = p.wake().await;
        seen.clear();
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert_eq!(seen, ["SpeechStarted"]);
        let wake = p.wake().await;
        assert!(
            started.elapsed() >= echo::ECHO_DELAY,
            "woke before the echo was due"
        );
        seen.clear();
        p.deliver(wake, Instant::now(), |e| seen.push(format!("{e:?}")));
        assert!(seen[0].starts_with("AudioDelta"), "{seen:?}");
    }
}
