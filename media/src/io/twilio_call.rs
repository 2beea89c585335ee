//! One phone call: the Twilio Media Streams WebSocket (`/media/twilio`) bridged to the
//! agent's provider, driven by the sans-IO [`CallSession`] (ARCHITECTURE.md §3–4).
//!
//! One task owns the call. It waits for Twilio's `start`, redeems the stream token for the
//! call plan through the [`ControlLink`], connects the provider, then `select!`s over the
//! Twilio socket, the provider socket and the session's next deadline, feeding everything
//! to the session and carrying out what it asks. Malformed frames are counted and skipped;
//! the call goes on.

use super::metrics::{self, Kind};
use super::node::NodeState;
use super::provider::{Failure, ProviderChain};
use crate::core::session::{
    CallSession, CallerOutput, Input, Output, ProviderCommand, SessionConfig,
};
use crate::core::wire::twilio;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, debug, info, info_span, warn};
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::events::EndReason;
use vocalized_shared::link::ControlLink;
use vocalized_shared::plan::CallPlan;

/// What the apology sounds like: played to a caller when the provider fails and nothing
/// can take over (media/assets/README.md).
pub const APOLOGY_ULAW: &[u8] = include_bytes!("../../assets/apology_8k.ulaw");

/// How long Twilio has to send `start` after opening the socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Policy-violation close code: the token was missing, used or expired.
const CLOSE_POLICY: u16 = 1008;
/// Largest WebSocket message (and frame) read from the socket. Twilio's frames are under
/// 1 KiB and `start` a few KiB; the socket is unauthenticated until `start` is redeemed, so
/// tungstenite's defaults (64 MiB messages, 16 MiB frames) would let anyone make the server
/// buffer tens of MiB per socket. A larger frame fails the read at its header and ends
/// the socket before its payload is buffered.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Tunables of the phone path.
#[derive(Clone, Debug)]
pub struct TwilioCallConfig {
    /// Longest wait for a provider to connect and accept its session; past it the call
    /// moves on to the next provider in its chain.
    pub provider_connect_timeout: Duration,
    /// How long an OpenAI session runs before the call rolls over to a new one.
    pub openai_session_rollover: Duration,
}

impl Default for TwilioCallConfig {
    fn default() -> Self {
        Self {
            provider_connect_timeout: Duration::from_secs(3),
            openai_session_rollover: super::provider::OPENAI_SESSION_ROLLOVER,
        }
    }
}

struct Shared<L> {
    link: Arc<L>,
    node: NodeState,
    config: TwilioCallConfig,
}

/// `GET /media/twilio` (WebSocket upgrade).
pub fn router<L: ControlLink>(link: Arc<L>, node: NodeState, config: TwilioCallConfig) -> Router {
    let shared = Arc::new(Shared { link, node, config });
    Router::new()
        .route("/media/twilio", get(upgrade::<L>))
        .with_state(shared)
}

async fn upgrade<L: ControlLink>(
    State(shared): State<Arc<Shared<L>>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.read_buffer_size(super::provider_ws::READ_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _active = shared.node.track_call();
            run(socket, shared).await;
        })
}

fn parse(text: &str, bad_frames: &mut u64) -> Option<twilio::Inbound> {
    match twilio::Inbound::parse(text) {
        Ok(m) => Some(m),
        Err(e) => {
            *bad_frames += 1;
            debug!(error = %e, "malformed Twilio frame skipped");
            None
        }
    }
}

/// Waits for `start`; media before it is dropped (and counted), never a crash.
async fn wait_for_start(socket: &mut WebSocket, bad_frames: &mut u64) -> Option<twilio::Inbound> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .ok()??
            .ok()?;
        match frame {
            Message::Text(text) => match parse(text.as_str(), bad_frames) {
                Some(start @ twilio::Inbound::Start { .. }) => return Some(start),
                Some(twilio::Inbound::Stop { .. }) => return None,
                Some(twilio::Inbound::Media { .. }) => debug!("media before start dropped"),
                _ => {}
            },
            Message::Close(_) => return None,
            Message::Binary(_) => *bad_frames += 1,
            _ => {}
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn run<L: ControlLink>(mut socket: WebSocket, shared: Arc<Shared<L>>) {
    let mut bad_frames = 0u64;
    let Some(start) = wait_for_start(&mut socket, &mut bad_frames).await else {
        debug!("Twilio socket closed before start");
        return;
    };
    let twilio::Inbound::Start {
        stream_sid,
        start: info,
        ..
    } = &start
    else {
        unreachable!("wait_for_start returns a start message");
    };
    let token = info
        .custom_parameters
        .get("token")
        .cloned()
        .unwrap_or_default();
    let plan = match shared.link.plan_twilio_call(&token, stream_sid).await {
        Ok(plan) => plan,
        Err(e) => {
            warn!(error = %e, "stream refused");
            close(&mut socket, CLOSE_POLICY, "stream token refused").await;
            return;
        }
    };
    let span = info_span!("call", call_id = %plan.call_id, workspace_id = %plan.workspace_id,
                          provider = plan.providers.first().map_or("none", |p| p.kind.as_str()));
    async move {
        info!("phone call started");
        bridge(socket, start, plan, shared, bad_frames).await;
        info!("phone call finished");
    }
    .instrument(span)
    .await;
}

async fn bridge<L: ControlLink>(
    mut socket: WebSocket,
    start: twilio::Inbound,
    plan: CallPlan,
    shared: Arc<Shared<L>>,
    mut bad_frames: u64,
) {
    let call_id = plan.call_id.clone();
    let caller = AudioFormat::Mulaw8k;
    let mut chain = ProviderChain::new(&plan, caller, shared.config.provider_connect_timeout)
        .with_openai_rollover(shared.config.openai_session_rollover);
    let Some((input, output)) = chain.initial_formats() else {
        warn!("the call plan names no provider");
        close(&mut socket, 1011, "provider unavailable").await;
        return;
    };
    let config = SessionConfig::for_plan(&plan, input, output);
    let mut session = match CallSession::new(config) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot set up the call's audio path");
            close(&mut socket, 1011, "internal error").await;
            return;
        }
    };
    session.handle_input(Input::Twilio(&start), Instant::now());
    let mut text = String::with_capacity(2048);
    let mut apologise = false;

    let setup_started = Instant::now();
    if chain.start(&mut session).await {
        metrics::get()
            .setup
            .observe(setup_started.elapsed().as_secs_f64());
    }
    // What the last input was and when it arrived, for the added-latency metric.
    let mut arrived: Option<(Instant, &'static str)> = None;
    loop {
        let mut provider_lost = false;
        // Carry out everything the session wants before waiting again.
        while let Some(out) = session.poll_output() {
            match out {
                Output::Caller(CallerOutput::Twilio(msg)) => {
                    text.clear();
                    msg.write_json(&mut text);
                    if socket
                        .send(Message::Text(text.as_str().into()))
                        .await
                        .is_err()
                    {
                        debug!("Twilio socket gone while sending");
                    }
                    if let (twilio::Outbound::Media { .. }, Some((at, "provider_to_caller"))) =
                        (msg, arrived)
                    {
                        metrics::get().observe_added("provider_to_caller", at.elapsed());
                        arrived = None;
                    }
                }
                Output::Caller(CallerOutput::Hangup) => {
                    apologise = matches!(
                        session.state(),
                        crate::core::session::CallState::Ended(EndReason::ProviderError { .. })
                    );
                }
                Output::Caller(_) => {}
                Output::Provider(cmd) => {
                    if !chain.send(&cmd, Instant::now()).await {
                        provider_lost = true;
                    }
                    if let (ProviderCommand::Audio(_), Some((at, "caller_to_provider"))) =
                        (cmd, arrived)
                    {
                        metrics::get().observe_added("caller_to_provider", at.elapsed());
                        arrived = None;
                    }
                }
                Output::Event(event) => {
                    metrics::observe_event(&event.kind);
                    chain.observe(&event);
                    shared.link.emit(&call_id, event);
                }
            }
        }
        if provider_lost && !session.is_ended() {
            chain
                .recover(Failure::Failed("provider_closed".into()), &mut session)
                .await;
            continue;
        }
        if session.is_ended() {
            break;
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    if let Some(msg) = parse(t.as_str(), &mut bad_frames) {
                        if matches!(msg, twilio::Inbound::Media { .. }) {
                            arrived = Some((now, "caller_to_provider"));
                        }
                        session.handle_input(Input::Twilio(&msg), now);
                    }
                }
                Some(Ok(Message::Binary(_))) => bad_frames += 1,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Twilio hung up without a `stop`: the same as one.
                    let stop = twilio::Inbound::Stop { sequence_number: None, stream_sid: String::new(), stop: Default::default() };
                    session.handle_input(Input::Twilio(&stop), Instant::now());
                }
                Some(Ok(_)) => {}
            },
            wake = chain.wake() => {
                let now = Instant::now();
                arrived = Some((now, "provider_to_caller"));
                if let Some(failure) = chain.deliver(wake, now, &mut session)
                    && !session.is_ended()
                {
                    chain.recover(failure, &mut session).await;
                }
            }
            _ = sleep_until(deadline) => session.handle_input(Input::Timeout, Instant::now()),
        }
    }
    let m = metrics::get();
    m.malformed_frames
        .get_or_create(&Kind { kind: "twilio" })
        .inc_by(bad_frames);
    let provider_malformed = chain.malformed();
    m.malformed_frames
        .get_or_create(&Kind { kind: "provider" })
        .inc_by(provider_malformed);
    if bad_frames > 0 || provider_malformed > 0 {
        info!(
            bad_twilio_frames = bad_frames,
            bad_provider_frames = provider_malformed,
            "malformed frames were skipped"
        );
    }
    chain.close().await;
    if apologise {
        play_apology(&mut socket, &start).await;
    }
    close(&mut socket, 1000, "call ended").await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Plays the apology and waits (bounded) for Twilio to have played it before hanging up.
async fn play_apology(socket: &mut WebSocket, start: &twilio::Inbound) {
    let twilio::Inbound::Start { stream_sid, .. } = start else {
        return;
    };
    let mut text = String::new();
    twilio::Outbound::Media {
        stream_sid,
        payload: APOLOGY_ULAW,
    }
    .write_json(&mut text);
    if socket
        .send(Message::Text(text.as_str().into()))
        .await
        .is_err()
    {
        return;
    }
    text.clear();
    twilio::Outbound::Mark {
        stream_sid,
        name: "apology",
    }
    .write_json(&mut text);
    if socket
        .send(Message::Text(text.as_str().into()))
        .await
        .is_err()
    {
        return;
    }
    let played_ms = APOLOGY_ULAW.len() as u64 / 8;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(played_ms + 2_000);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.recv()).await {
        if let Message::Text(t) = frame
            && let Ok(twilio::Inbound::Mark { mark, .. }) = twilio::Inbound::parse(t.as_str())
            && mark.name == "apology"
        {
            break;
        }
    }
}
