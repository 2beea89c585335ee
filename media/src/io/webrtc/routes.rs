//! WHIP-style signalling for browser calls:
//!
//! - `POST /media/webrtc/{public_key}` with the offer as `application/sdp` → `201 Created`,
//!   the answer SDP, and `Location: /media/webrtc/sessions/{id}`.
//! - `DELETE /media/webrtc/sessions/{id}` → `204`: the visitor hung up.
//!
//! Every refusal is a JSON error with a 4xx status (see [`super::signalling`]), or a 503
//! when the node is busy or the control plane is down. The order keeps anonymous offers
//! cheap (review M5): the offer is checked, the node takes it only if it has room to set
//! up another peer (`max_peer_setups`, else 503 with `Retry-After`), the control plane
//! plans the call (widget key, limits, call record), and only then is a peer built and
//! answered. An unknown key or a refused call costs no peer. Planning and building run in
//! a task of their own, so a caller who goes away mid-answer cancels nothing half-done:
//! the task notices nobody is waiting, closes the peer and ends the call as not connected.
//! CORS is open: the widget runs on customers' sites.

use super::call;
use super::peer::{self, WebRtcConfig};
use super::signalling::{self, Refusal};
use crate::io::node::ActiveCall;
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tower_http::cors::{Any, CorsLayer};
use tracing::{Instrument, info, info_span, warn};
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::CallPlan;

/// Largest offer accepted; browsers send 3–6 KB.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

struct Shared<L> {
    link: Arc<L>,
    node: NodeState,
    config: WebRtcConfig,
    /// Live calls by their hang-up id, each with the sender that ends it.
    sessions: DashMap<String, oneshot::Sender<()>>,
    /// Places for calls being set up (planned and their peer built) at once.
    setups: Arc<Semaphore>,
}

/// How long a caller turned away for a busy node is asked to wait before offering again.
const BUSY_RETRY_AFTER_SECONDS: u32 = 1;

/// The signalling routes, with open CORS.
pub fn router<L: ControlLink>(link: Arc<L>, node: NodeState, config: WebRtcConfig) -> Router {
    let shared = Arc::new(Shared {
        link,
        node,
        setups: Arc::new(Semaphore::new(config.max_peer_setups)),
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
    // Room to set up one more call, taken before anything costly: a flood of offers
    // waits for nothing and builds nothing.
    let Ok(setup) = Arc::clone(&shared.setups).try_acquire_owned() else {
        shared.node.count_setup_refused();
        return busy();
    };
    let ip = client_ip(
        &headers,
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a),
        shared.config.trust_forwarded_for,
    );
    let (answered_tx, answered_rx) = oneshot::channel();
    tokio::spawn(set_up(
        Arc::clone(&shared),
        Offer {
            public_key,
            client_ip: ip,
            sdp,
            payload_type,
        },
        setup,
        answered_tx,
    ));
    match answered_rx.await {
        Ok(Ok(answered)) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (
                    header::LOCATION,
                    format!("/media/webrtc/sessions/{}", answered.session_id),
                ),
            ],
            answered.sdp,
        )
            .into_response(),
        Ok(Err(refusal)) => refuse(&refusal),
        // The set-up task panicked: it left nothing behind (its guards dropped).
        Err(_) => refuse(&Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the call could not be set up; try again",
        )),
    }
}

/// 503 for an offer the node has no room to set up now.
fn busy() -> Response {
    let refusal = Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "this node is setting up as many calls as it can; try again shortly",
    );
    let mut response = refuse(&refusal);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(BUSY_RETRY_AFTER_SECONDS),
    );
    response
}

/// A checked offer, waiting for its call to be planned.
struct Offer {
    public_key: String,
    client_ip: String,
    sdp: String,
    /// Opus's payload type in the offer.
    payload_type: u8,
}

/// What the caller gets back: its hang-up id and the answer SDP.
struct Answered {
    session_id: String,
    sdp: String,
}

type AnswerTx = oneshot::Sender<Result<Answered, Refusal>>;

/// Plans the call, builds and answers its peer, hands the answer to the waiting request
/// and runs the call. Whatever fails is undone here before the refusal is sent, so the
/// caller's response never races the cleanup.
async fn set_up<L: ControlLink>(
    shared: Arc<Shared<L>>,
    offer: Offer,
    setup: OwnedSemaphorePermit,
    answered: AnswerTx,
) {
    let plan = match shared
        .link
        .plan_web_call(&offer.public_key, &offer.client_ip)
        .await
    {
        Ok(plan) => plan,
        Err(e) => {
            if let PlanError::Unavailable(why) = &e {
                // The caller gets a generic 503; the reason stays in the logs (review L6).
                warn!(error = %why, "a browser call could not be planned");
            }
            drop(setup);
            let _ = answered.send(Err(signalling::plan_refusal(&e)));
            return;
        }
    };
    let span = info_span!("call", call_id = %plan.call_id, workspace_id = %plan.workspace_id,
                          provider = plan.providers.first().map_or("none", |p| p.kind.as_str()),
                          source = "web");
    let active = shared.node.track_call();
    answer_and_run(shared, plan, offer, setup, answered, active)
        .instrument(span)
        .await;
}

async fn answer_and_run<L: ControlLink>(
    shared: Arc<Shared<L>>,
    plan: CallPlan,
    offer: Offer,
    setup: OwnedSemaphorePermit,
    answered: AnswerTx,
    active: ActiveCall,
) {
    let built = peer::answer(
        &shared.config,
        offer.sdp,
        offer.payload_type,
        shared.node.track_peer(),
    )
    .await;
    // The peer is built and gathered: its setup place is free for the next offer.
    drop(setup);
    let mut peer = match built {
        Ok(peer) => peer,
        Err(refusal) => {
            // `peer::answer` closed what it had built.
            end_not_connected(&*shared.link, &plan);
            drop(active);
            let _ = answered.send(Err(refusal));
            return;
        }
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (hangup_tx, hangup_rx) = oneshot::channel();
    shared.sessions.insert(id.clone(), hangup_tx);
    let sdp = std::mem::take(&mut peer.answer);
    let reply = Answered {
        session_id: id.clone(),
        sdp,
    };
    if answered.send(Ok(reply)).is_err() {
        info!("the caller left before its answer; closing the peer");
        shared.sessions.remove(&id);
        peer.close().await;
        drop(peer);
        end_not_connected(&*shared.link, &plan);
        return;
    }
    info!("browser call started");
    call::run(
        plan,
        peer,
        Arc::clone(&shared.link),
        hangup_rx,
        shared.config.connect_timeout,
        shared.config.provider_connect_timeout,
    )
    .await;
    shared.sessions.remove(&id);
    drop(active);
}

/// Ends a planned call whose peer never came to be (or whose caller left before the
/// answer): its only event is `ended`, which also gives back its place in the limits.
fn end_not_connected<L: ControlLink>(link: &L, plan: &CallPlan) {
    link.emit(
        &plan.call_id,
        CallEvent {
            seq: 1,
            at_ms: 0,
            kind: CallEventKind::Ended(EndReason::NotConnected),
        },
    );
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
        // The right-most entry is the one our proxy appended; the client wrote the rest.
        assert_eq!(client_ip(&headers, peer, true), "10.0.0.1");
        assert_eq!(client_ip(&HeaderMap::new(), None, true), "unknown");
    }
}
