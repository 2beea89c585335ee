//! The socket driver around [`Session`]: accept, upgrade (or refuse), pump events.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::session::{Output, Session};
use super::{Failure, OpenAiBehaviour, SessionRecord};

/// A running fake Realtime server. Dropping it stops the server and every session.
pub struct FakeOpenAi {
    addr: SocketAddr,
    handle: OpenAiHandle,
    accept_task: JoinHandle<()>,
}

/// A cheap cloneable view of the fake's recordings.
#[derive(Clone)]
pub struct OpenAiHandle {
    sessions: Arc<Mutex<Vec<Arc<Mutex<SessionRecord>>>>>,
    /// Bumped after every recorded change, so waiters re-check without polling.
    changed: Arc<watch::Sender<u64>>,
}

impl FakeOpenAi {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(behaviour: OpenAiBehaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handle = OpenAiHandle {
            sessions: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        };
        let behaviour = Arc::new(behaviour);
        let accept_handle = handle.clone();
        let accept_task = tokio::spawn(async move {
            // Sessions live in the set so that stopping the server aborts all of them.
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let _ = tcp.set_nodelay(true);
                        sessions.spawn(serve(tcp, behaviour.clone(), accept_handle.clone()));
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            handle,
            accept_task,
        })
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`; the gateway appends `?model=…`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> OpenAiHandle {
        self.handle.clone()
    }

    /// A snapshot of every session so far, in connection order.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.handle.sessions()
    }

    /// Waits until at least `n` sessions have connected; false on timeout.
    pub async fn wait_for_sessions(&self, n: usize, timeout: Duration) -> bool {
        self.handle.wait_for_sessions(n, timeout).await
    }

    /// Waits until `check` holds for the recorded sessions; false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        check: impl FnMut(&[SessionRecord]) -> bool,
    ) -> bool {
        self.handle.wait_until(timeout, check).await
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl OpenAiHandle {
    pub fn sessions(&self) -> Vec<SessionRecord> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    pub async fn wait_for_sessions(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.len() >= n).await
    }

    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[SessionRecord]) -> bool,
    ) -> bool {
        let mut changes = self.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.sessions()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the sender is gone (cannot happen while `self` holds it).
                _ => return check(&self.sessions()),
            }
        }
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn register(&self, record: Arc<Mutex<SessionRecord>>) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        self.notify();
    }
}

fn refusal(status: u16) -> ErrorResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // The body mirrors the API's JSON error envelope.
    let body = format!(
        r#"{{"error":{{"message":"Refused by the fake (HTTP {}).","type":"invalid_request_error","code":null,"param":null}}}}"#,
        status.as_u16()
    );
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
}

/// How long a `StallMidFrame` server holds its wedged socket open.
const STALL_HOLD: Duration = Duration::from_secs(60);

/// The `n`th garbage frame of a `Garbage` server: each kind in turn.
fn garbage_frame(n: usize) -> Message {
    match n % 4 {
        0 => Message::text("}{ this is not JSON"),
        1 => Message::binary(vec![0xFFu8, 0x00, 0x13, 0x37]),
        2 => Message::text(r#"{"type":"response.made_up_event","event_id":"event_x"}"#),
        _ => Message::text(
            r#"{"type":"response.output_audio.delta","event_id":"event_y","response_id":"resp_x","item_id":"item_x","output_index":0,"content_index":0,"delta":"%%% not base64 %%%"}"#,
        ),
    }
}

// tungstenite fixes the callback's error type (an HTTP response); it is built once per
// refused connection, so its size does not matter.
#[allow(clippy::result_large_err)]
async fn serve(tcp: TcpStream, behaviour: Arc<OpenAiBehaviour>, handle: OpenAiHandle) {
    let record = Arc::new(Mutex::new(SessionRecord::default()));
    let refuse = match behaviour.failure {
        Some(Failure::RefuseHandshake(status)) => Some(status),
        _ => None,
    };
    let callback = |request: &Request, response: Response| {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        r.path = request.uri().path().to_owned();
        r.query = request.uri().query().map(str::to_owned);
        r.model = r.query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "model")
                .map(|(_, v)| v.into_owned())
        });
        for (name, value) in request.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == "authorization" {
                r.authorization = Some(value.clone());
            }
            r.headers.insert(name.as_str().to_owned(), value);
        }
        drop(r);
        match refuse {
            Some(status) => Err(refusal(status)),
            None => Ok(response),
        }
    };
    let upgraded = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        callback,
        Some(crate::fakes::ws_config()),
    )
    .await;
    let model = record
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .model
        .clone()
        .unwrap_or_else(|| "gpt-realtime".into());
    let mut ws = match upgraded {
        Ok(ws) => ws,
        Err(_) => {
            // Refused or not a WebSocket: still a session attempt worth recording.
            record.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            handle.register(record);
            return;
        }
    };
    handle.register(record.clone());
    let garbage = matches!(behaviour.failure, Some(Failure::Garbage));
    let mut garbage_sent = 0usize;
    let mut session = Session::new(behaviour, record.clone(), &model);
    'session: loop {
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(event) => {
                    if garbage {
                        garbage_sent += 1;
                        if ws.send(garbage_frame(garbage_sent)).await.is_err() {
                            break 'session;
                        }
                    }
                    if ws.send(Message::text(event.to_string())).await.is_err() {
                        break 'session;
                    }
                }
                Output::StallMidFrame => {
                    // A text frame announcing 4 096 bytes, of which 100 come. Then
                    // silence, and no reads either: not even a pong goes out.
                    use tokio::io::AsyncWriteExt;
                    let mut partial = vec![0x81u8, 126, 0x10, 0x00];
                    partial.extend(std::iter::repeat_n(b' ', 100));
                    let _ = ws.get_mut().write_all(&partial).await;
                    let _ = ws.get_mut().flush().await;
                    tokio::time::sleep(STALL_HOLD).await;
                    break 'session;
                }
                Output::Close { code, reason } => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    break 'session;
                }
                Output::Drop => {
                    // RST rather than FIN: the peer sees the connection reset, as when a
                    // load balancer or the server process dies.
                    let _ = ws.get_ref().set_zero_linger();
                    break 'session;
                }
            }
        }
        handle.notify();
        let deadline = session.poll_timeout().map(Instant::from_std);
        let due = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => session.handle_client_text(text.as_str(), std::time::Instant::now()),
                Some(Ok(Message::Binary(_))) => session.handle_binary(std::time::Instant::now()),
                // tungstenite answers pings itself; the reply goes out with the next send.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break 'session,
            },
            () = due => session.handle_timeout(std::time::Instant::now()),
        }
    }
    record.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    handle.notify();
}
