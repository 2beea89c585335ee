//! The HTTP surface of a media node: `/healthz`, `/readyz`, `/metrics`.
//!
//! A load balancer in front of M media nodes needs two different answers: "is the process
//! alive" (`/healthz`, restart it if not) and "may it take a new call" (`/readyz`). They
//! differ while a node drains on SIGTERM: calls already on it keep running until they end,
//! so it stays alive but must stop receiving new ones. [`NodeState`] is the cheap,
//! cloneable handle the call driver and these handlers share.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the node's HTTP endpoints report; shared by every call task on the node.
#[derive(Clone, Debug)]
pub struct NodeState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started_at: Instant,
    draining: AtomicBool,
    active_calls: AtomicU64,
    calls_started_total: AtomicU64,
    webrtc_peers_open: AtomicU64,
    webrtc_peers_built_total: AtomicU64,
    webrtc_setups_refused_total: AtomicU64,
}

/// Proof that a WebRTC peer (its sockets, certificate and ICE agent) exists on this node;
/// the peer holds it, so dropping the peer takes it off `webrtc_peers_open`.
#[derive(Debug)]
#[must_use = "the peer counts as open only while this guard lives"]
pub struct OpenPeer {
    inner: Arc<Inner>,
}

/// Proof that a call is running on this node; dropping it (however the call task ends,
/// including by panic) takes the call off the `active_calls` gauge.
#[derive(Debug)]
#[must_use = "the call counts as active only while this guard lives"]
pub struct ActiveCall {
    inner: Arc<Inner>,
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeState {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                started_at: Instant::now(),
                draining: AtomicBool::new(false),
                active_calls: AtomicU64::new(0),
                calls_started_total: AtomicU64::new(0),
                webrtc_peers_open: AtomicU64::new(0),
                webrtc_peers_built_total: AtomicU64::new(0),
                webrtc_setups_refused_total: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a call as running until the returned guard is dropped.
    pub fn track_call(&self) -> ActiveCall {
        self.inner.active_calls.fetch_add(1, Ordering::Relaxed);
        self.inner
            .calls_started_total
            .fetch_add(1, Ordering::Relaxed);
        ActiveCall {
            inner: self.inner.clone(),
        }
    }

    /// Counts a WebRTC peer being built, open until the returned guard is dropped.
    pub fn track_peer(&self) -> OpenPeer {
        self.inner.webrtc_peers_open.fetch_add(1, Ordering::Relaxed);
        self.inner
            .webrtc_peers_built_total
            .fetch_add(1, Ordering::Relaxed);
        OpenPeer {
            inner: self.inner.clone(),
        }
    }

    /// WebRTC peers built since the process started.
    pub fn webrtc_peers_built(&self) -> u64 {
        self.inner.webrtc_peers_built_total.load(Ordering::Relaxed)
    }

    /// WebRTC peers that exist now.
    pub fn webrtc_peers_open(&self) -> u64 {
        self.inner.webrtc_peers_open.load(Ordering::Relaxed)
    }

    /// Counts a browser offer turned away because the node was setting up as many peers
    /// as it may at once.
    pub fn count_setup_refused(&self) {
        self.inner
            .webrtc_setups_refused_total
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn active_calls(&self) -> u64 {
        self.inner.active_calls.load(Ordering::Relaxed)
    }

    /// Stops advertising readiness so the load balancer sends new calls elsewhere, while
    /// calls already here finish. There is no way back: a draining node is shutting down.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus text format. Names are prefixed by subsystem
    /// (`vocalized_media_`) so one scrape config serves control and media nodes alike.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(1_536);
        let mut metric = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
            // Writing into a String cannot fail.
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "vocalized_media_active_calls",
            "gauge",
            "Calls currently running on this node.",
            &self.active_calls(),
        );
        metric(
            "vocalized_media_calls_started_total",
            "counter",
            "Calls started on this node since the process started.",
            &self.inner.calls_started_total.load(Ordering::Relaxed),
        );
        metric(
            "vocalized_media_webrtc_peers_open",
            "gauge",
            "WebRTC peers (sockets, certificate, ICE agent) that exist on this node.",
            &self.webrtc_peers_open(),
        );
        metric(
            "vocalized_media_webrtc_peers_built_total",
            "counter",
            "WebRTC peers built since the process started.",
            &self.webrtc_peers_built(),
        );
        metric(
            "vocalized_media_webrtc_setups_refused_total",
            "counter",
            "Browser offers answered 503 because the node was setting up as many peers as it may.",
            &self
                .inner
                .webrtc_setups_refused_total
                .load(Ordering::Relaxed),
        );
        metric(
            "vocalized_media_draining",
            "gauge",
            "1 while the node is shutting down and takes no new calls.",
            &u8::from(self.is_draining()),
        );
        metric(
            "vocalized_media_uptime_seconds",
            "gauge",
            "Seconds since the media node started.",
            &self.inner.started_at.elapsed().as_secs(),
        );
        out
    }
}

impl Drop for OpenPeer {
    fn drop(&mut self) {
        self.inner.webrtc_peers_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.inner.active_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The media node's routes. Call routes (Twilio stream, WebRTC offers) merge in here later.
pub fn router(state: NodeState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<NodeState>) -> (StatusCode, &'static str) {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics(State(state): State<NodeState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        state.render_metrics(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Serves the router on a free port and returns its address.
    async fn spawn_node(state: NodeState) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        addr
    }

    /// One HTTP/1.1 GET over a raw socket: (status, headers+body text).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        (status, response)
    }

    fn body(response: &str) -> &str {
        response.split("\r\n\r\n").nth(1).unwrap_or("")
    }

    #[tokio::test]
    async fn healthz_and_readyz_answer_ok_on_a_fresh_node() {
        let addr = spawn_node(NodeState::new()).await;
        let (status, response) = get(addr, "/healthz").await;
        assert_eq!((status, body(&response)), (200, "ok\n"));
        let (status, response) = get(addr, "/readyz").await;
        assert_eq!((status, body(&response)), (200, "ready\n"));
    }

    #[tokio::test]
    async fn draining_node_is_alive_but_not_ready() {
        let state = NodeState::new();
        let addr = spawn_node(state.clone()).await;
        state.begin_drain();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        let (status, response) = get(addr, "/readyz").await;
        assert_eq!((status, body(&response)), (503, "draining\n"));
        assert!(body(&get(addr, "/metrics").await.1).contains("\nvocalized_media_draining 1\n"));
    }

    #[tokio::test]
    async fn metrics_follow_calls_as_their_guards_live_and_drop() {
        let state = NodeState::new();
        let addr = spawn_node(state.clone()).await;
        let first = state.track_call();
        let second = state.track_call();
        drop(first);

        let (status, response) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            response
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        let text = body(&response);
        assert!(
            text.contains("\nvocalized_media_active_calls 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nvocalized_media_calls_started_total 2\n"),
            "{text}"
        );
        assert!(text.contains("\nvocalized_media_draining 0\n"), "{text}");

        drop(second);
        assert_eq!(state.active_calls(), 0);
        let text = get(addr, "/metrics").await.1;
        assert!(
            text.contains("\nvocalized_media_active_calls 0\n"),
            "{text}"
        );
    }

    #[test]
    fn every_metric_has_help_and_type_lines() {
        let text = NodeState::new().render_metrics();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 7);
        for sample in samples {
            let name = sample.split(' ').next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let addr = spawn_node(NodeState::new()).await;
        assert_eq!(get(addr, "/twilio/stream").await.0, 404);
    }
}
