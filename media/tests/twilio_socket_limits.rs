//! The unauthenticated `/media/twilio` socket only takes messages the Media Streams
//! protocol needs (review M4): a huge frame before `start` ends the socket at once instead
//! of being buffered and parsed.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vocalized_media::io::NodeState;
use vocalized_media::io::twilio_call::{self, TwilioCallConfig};
use vocalized_shared::events::CallEvent;
use vocalized_shared::ids::CallId;
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::CallPlan;

/// A control plane that admits nothing: these tests never get past `start`.
struct NoCalls;

impl ControlLink for NoCalls {
    async fn plan_twilio_call(&self, _: &str, _: &str) -> Result<CallPlan, PlanError> {
        Err(PlanError::InvalidToken)
    }

    async fn plan_web_call(&self, _: &str, _: &str) -> Result<CallPlan, PlanError> {
        Err(PlanError::InvalidToken)
    }

    fn emit(&self, _: &CallId, _: CallEvent) {}
}

async fn serve() -> SocketAddr {
    let app = twilio_call::router(
        Arc::new(NoCalls),
        NodeState::new(),
        TwilioCallConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// What the client sees next: `Some(code)` for a close frame, `None` for the connection
/// ending without one. Panics if the server keeps the socket open.
async fn next_close(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<u16> {
    // Far below the 10 s the server gives a socket to send `start`.
    let wait = Duration::from_secs(3);
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => panic!("the server kept the socket open after an oversized frame"),
            Ok(None | Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn a_one_mebibyte_frame_before_start_closes_the_socket() {
    let addr = serve().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    // Sending may itself fail once the server has hung up mid-frame; either way is fine.
    let _ = socket.send(Message::text("x".repeat(1024 * 1024))).await;
    let code = next_close(&mut socket).await;
    assert!(
        code.is_none() || code == Some(1009),
        "closed with {code:?}; expected 1009 (message too big) or a dropped connection"
    );
}

#[tokio::test]
async fn a_start_sized_frame_is_still_read() {
    let addr = serve().await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media/twilio"))
        .await
        .unwrap();
    // A `start` with a few KiB of custom parameters: read, parsed, and refused for its
    // token (policy violation), not for its size.
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "nope", "padding": "p".repeat(8 * 1024)}
        }
    });
    socket.send(Message::text(start.to_string())).await.unwrap();
    assert_eq!(next_close(&mut socket).await, Some(1008));
}
