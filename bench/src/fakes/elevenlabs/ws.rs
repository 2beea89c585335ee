//! A small WebSocket server driver around a sans-IO fake session (text and binary frames,
//! timers, refusals, clean closes and hard drops). The Deepgram fake uses it too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What a fake session asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Text(String),
    Binary(Vec<u8>),
    /// Send a close frame and end the session.
    Close {
        code: u16,
        reason: String,
    },
    /// Drop the TCP connection with no close frame (a crashed server).
    Drop,
}

/// A fake session: frames and the time go in, [`Out`]s come out.
pub trait Machine: Send + 'static {
    fn handle_text(&mut self, text: &str, now: Instant);
    fn handle_binary(&mut self, bytes: &[u8], now: Instant);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_output(&mut self) -> Option<Out>;
    fn poll_timeout(&self) -> Option<Instant>;
    /// The socket is gone.
    fn closed(&mut self);
}

/// The upgrade request, as the session factory sees it.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    pub path: String,
    pub query: Option<String>,
    /// Lowercased header names.
    pub headers: BTreeMap<String, String>,
}

/// A factory's answer: refuse with an HTTP status and body, or run a session.
pub enum Admission<M> {
    Refuse { status: u16, body: String },
    Accept(M),
}

/// Bumped after every change a test may wait for.
pub type Changed = Arc<watch::Sender<u64>>;

/// Binds 127.0.0.1:0 and serves every connection with a session from `make`. Aborting
/// the returned task stops the server and every session.
pub async fn start<M: Machine>(
    make: impl Fn(Upgrade) -> Admission<M> + Send + Sync + 'static,
    changed: Changed,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let make = Arc::new(make);
    let task = tokio::spawn(async move {
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    sessions.spawn(serve(tcp, make.clone(), changed.clone()));
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
    });
    Ok((addr, task))
}

// tungstenite fixes the callback's error type (an HTTP response); it is built once per
// refused connection, so its size does not matter.
#[allow(clippy::result_large_err)]
async fn serve<M: Machine>(
    tcp: TcpStream,
    make: Arc<impl Fn(Upgrade) -> Admission<M> + Send + Sync + 'static>,
    changed: Changed,
) {
    let mut machine = None;
    let callback = |request: &Request, response: Response| {
        let upgrade = Upgrade {
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        };
        match make(upgrade) {
            Admission::Accept(m) => {
                machine = Some(m);
                Ok(response)
            }
            Admission::Refuse { status, body } => {
                let mut refusal = ErrorResponse::new(Some(body));
                *refusal.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err(refusal)
            }
        }
    };
    let upgraded = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        callback,
        Some(crate::fakes::ws_config()),
    )
    .await;
    changed.send_modify(|v| *v += 1);
    let (Ok(mut ws), Some(mut machine)) = (upgraded, machine) else {
        return;
    };
    'session: loop {
        while let Some(out) = machine.poll_output() {
            let message = match out {
                Out::Text(text) => Message::text(text),
                Out::Binary(bytes) => Message::binary(bytes),
                Out::Close { code, reason } => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    break 'session;
                }
                Out::Drop => {
                    // RST rather than FIN, as when the server process dies.
                    let _ = ws.get_ref().set_zero_linger();
                    break 'session;
                }
            };
            if ws.send(message).await.is_err() {
                break 'session;
            }
        }
        changed.send_modify(|v| *v += 1);
        let deadline = machine.poll_timeout().map(tokio::time::Instant::from_std);
        let due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => machine.handle_text(text.as_str(), Instant::now()),
                Some(Ok(Message::Binary(bytes))) => machine.handle_binary(&bytes, Instant::now()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'session,
            },
            () = due => machine.handle_timeout(Instant::now()),
        }
    }
    machine.closed();
    changed.send_modify(|v| *v += 1);
}

/// Waits until `check` holds, re-checking after every change; false on timeout.
pub async fn wait_until(
    changed: &Changed,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> bool,
) -> bool {
    let mut changes = changed.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return check(),
        }
    }
}

/// The fakes' agent audio (µ-law 8 kHz) in another format: µ-law as is, or PCM16 LE at
/// `rate` by nearest-sample resampling (a fake needs plausible audio, not hi-fi).
pub fn agent_audio_as(ulaw: &[u8], pcm_rate_hz: Option<u32>) -> Vec<u8> {
    let Some(rate) = pcm_rate_hz else {
        return ulaw.to_vec();
    };
    let mut pcm = Vec::with_capacity(ulaw.len());
    vocalized_media::core::g711::ulaw_to_pcm(ulaw, &mut pcm);
    let n = pcm.len() as u64 * u64::from(rate) / 8000;
    (0..n)
        .flat_map(|i| pcm[(i * 8000 / u64::from(rate)) as usize].to_le_bytes())
        .collect()
}
