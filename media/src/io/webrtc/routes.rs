//! WHIP-style signalling for browser calls:
//!
//! - `POST /media/webrtc/{public_key}` with the offer as `application/sdp` → `201 Created`,
//!   the answer SDP, and `Location: /media/webrtc/sessions/{id}`.
//! - `DELETE /media/webrtc/sessions/{id}` → `204`: the visitor hung up.
//!
//! Every refusal is a JSON error with a 4xx status (see [`super::signalling`]) and leaves
//! nothing behind: the offer is checked and the peer built and answered *before* the
//! control plane is asked for a call, so a bad offer writes no call record, and a refused
//! call closes the peer it had built. CORS is open: the widget runs on customers' sites.

use super::call;
use super::peer::{self, WebRtcConfig};
use super::signalling::{self, Refusal};
use crate::io::node::NodeState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tower_http::cors::{Any, CorsLayer};
use tracing::{Instrument, info, info_span};
use vocalized_shared::link::ControlLink;

/// Largest offer accepted; browsers send 3–6 KB.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

struct Shared<L> {
    link: Arc<L>,
    node: NodeState,
    config: WebRtcConfig,
    /// Live calls by their hang-up id, each with the sender that ends it.
    sessions: DashMap<String, oneshot::Sender<()>>,
}

/// The signalling routes, with open CORS.
pub fn router<L: ControlLink>(link: Arc<L>, node: NodeState, config: WebRtcConfig) -> Router {
    let shared = Arc::new(Shared {
        link,
        node,
        config,
        sessions: DashMap::new(),
    });
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::LOCATION]);
    Router::new()
        .route("/media/webrtc/{public_key}", post(offer::<L>))
        .route("/media/webrtc/sessions/{id}", delete(hang_up::<L>))
        .layer(cors)
        .with_state(shared)
}

fn refuse(refusal: &Refusal) -> Response {
    (refusal.status, axum::Json(refusal.body())).into_response()
}

fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trust_forwarded: bool) -> String {
    // The right-most entry of the last header line: what our proxy appended (M3).
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok());
    vocalized_shared::client_ip::client_ip(forwarded_for, trust_forwarded, peer.map(|a| a.ip()))
}

async fn offer<L: ControlLink>(
    State(shared): State<Arc<Shared<L>>>,
    Path(public_key): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Err(refusal) = signalling::check_content_type(content_type) {
        return refuse(&refusal);
    }
    if body.len() > MAX_OFFER_BYTES {
        return refuse(&Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "offer_too_large",
            format!("the offer is larger than {MAX_OFFER_BYTES} bytes"),
        ));
    }
    let Ok(sdp) = String::from_utf8(body.to_vec()) else {
        return refuse(&Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_offer",
            "the offer is not UTF-8 text",
        ));
    };
    let payload_type = match signalling::check_offer(&sdp) {
        Ok(pt) => pt,
        Err(refusal) => return refuse(&refusal),
    };
    if shared.node.is_draining() {
        return refuse(&Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this node is shutting down; try again",
        ));
    }
    let mut peer = match peer::answer(&shared.config, sdp, payload_type).await {
        Ok(peer) => peer,
        Err(refusal) => return refuse(&refusal),
    };
    let ip = client_ip(
        &headers,
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a),
        shared.config.trust_forwarded_for,
    );
    let plan = match shared.link.plan_web_call(&public_key, &ip).await {
        Ok(plan) => plan,
        Err(e) => {
            peer.close().await;
            return refuse(&signalling::plan_refusal(&e));
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (hangup_tx, hangup_rx) = oneshot::channel();
    shared.sessions.insert(id.clone(), hangup_tx);
    let answer = std::mem::take(&mut peer.answer);
    let span = info_span!("call", call_id = %plan.call_id, workspace_id = %plan.workspace_id,
                          provider = plan.providers.first().map_or("none", |p| p.kind.as_str()),
                          source = "web");
    let task_shared = Arc::clone(&shared);
    let task_id = id.clone();
    tokio::spawn(
        async move {
            let _active = task_shared.node.track_call();
            info!("browser call started");
            call::run(
                plan,
                peer,
                Arc::clone(&task_shared.link),
                hangup_rx,
                task_shared.config.connect_timeout,
                task_shared.config.provider_connect_timeout,
            )
            .await;
            task_shared.sessions.remove(&task_id);
        }
        .instrument(span),
    );
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("/media/webrtc/sessions/{id}")),
        ],
        answer,
    )
        .into_response()
}

async fn hang_up<L: ControlLink>(
    State(shared): State<Arc<Shared<L>>>,
    Path(id): Path<String>,
) -> Response {
    match shared.sessions.remove(&id) {
        Some((_, hangup)) => {
            let _ = hangup.send(());
            StatusCode::NO_CONTENT.into_response()
        }
        None => refuse(&Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no call has this session id (it may have ended already)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_address_comes_from_the_socket_unless_a_proxy_is_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
        assert_eq!(client_ip(&headers, peer, false), "192.0.2.1");
        assert_eq!(client_ip(&headers, peer, true), "203.0.113.9");
        assert_eq!(client_ip(&HeaderMap::new(), None, true), "unknown");
    }
}
