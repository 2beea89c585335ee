//! The call widget's public configuration (`GET /widget/{public_key}/config`), read by
//! `widget.js` on any customer's site: whether calling is on (workspace switch AND agent
//! capability AND agent live), the button's look, the greeting and the ICE servers. No
//! secrets here: the public key is meant to be embedded in pages. CORS is open for these
//! routes only.
//!
//! TURN (security review L7): a TURN server's long-term credential is the operator's and
//! never leaves the server, or anyone could relay through it. With a TURN shared secret
//! configured, each config carries credentials of the TURN REST API that coturn checks
//! (`use-auth-secret`): username `<expiry unix s>:<id>`, credential
//! base64(HMAC-SHA1(secret, username)), valid for [`TURN_CREDENTIAL_TTL_S`]. Without
//! one, browsers get the STUN servers only (a TURN URL without credentials would make
//! `RTCPeerConnection` throw).

use super::error::{ApiError, ApiResult};
use crate::config::{ControlConfig, IceServer};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};
use vocalized_shared::call_settings::CallSettings;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/widget/{public_key}/config", get(config))
        .layer(cors())
}

/// Any origin may read the widget's config and post an SDP offer; no cookies are involved.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .expose_headers([header::LOCATION])
}

async fn config(
    State(state): State<AppState>,
    Path(public_key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row: Option<(String, String, String, i64, String, i64, String)> = sqlx::query_as(
        "SELECT a.name, a.config, a.status, a.enabled_call, a.voice_provider, w.call_enabled, w.status
         FROM voice_agents a JOIN workspaces w ON w.id = a.workspace_id
         WHERE a.widget_public_key = $1",
    )
    .bind(&public_key)
    .fetch_optional(&state.db.pool)
    .await?;
    let (name, config, status, enabled_call, voice_provider, ws_call, ws_status) =
        row.ok_or(ApiError::NotFound("widget"))?;
    let settings: CallSettings = serde_json::from_str::<serde_json::Value>(&config)
        .ok()
        .and_then(|c| serde_json::from_value(c["call"].clone()).ok())
        .unwrap_or_default();
    let call_enabled = enabled_call == 1
        && ws_call == 1
        && status == "live"
        && ["active", "trial"].contains(&ws_status.as_str());
    let body = json!({
        "agentName": name,
        "callEnabled": call_enabled,
        "buttonText": settings.call_button_text,
        "buttonColor": settings.call_button_color,
        "buttonPosition": settings.call_button_position,
        "greeting": settings.call_greeting,
        "echoCancellation": settings.echo_cancellation,
        "noiseSuppression": settings.noise_suppression,
        "maxCallDuration": settings.max_call_duration,
        "iceServers": browser_ice_servers(&state.config, now_unix_s()),
        "offerUrl": format!("{}/media/webrtc/{public_key}", state.config.public_url),
        "testProvider": voice_provider == "echo",
    });
    // Short cache: an admin switching calling off should take effect within a minute.
    Ok((
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=30"),
        )],
        axum::Json(body),
    ))
}

/// How long the TURN credentials of one widget config stay valid.
pub const TURN_CREDENTIAL_TTL_S: u64 = 3600;

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_turn(server: &IceServer) -> bool {
    server
        .urls
        .iter()
        .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
}

/// Whether some TURN server would reach browsers only with its long-term credential, so
/// it is used server-side only (logged once at startup).
pub fn turn_is_server_side_only(config: &ControlConfig) -> bool {
    config.turn_shared_secret.is_none() && config.ice_servers.iter().any(is_turn)
}

/// The ICE servers a browser gets: STUN as configured; TURN with fresh REST credentials
/// expiring `TURN_CREDENTIAL_TTL_S` after `now_s`, or left out without a shared secret.
/// Never a configured `credential`.
pub fn browser_ice_servers(config: &ControlConfig, now_s: u64) -> Vec<IceServer> {
    config
        .ice_servers
        .iter()
        .filter_map(|server| {
            if !is_turn(server) {
                return Some(IceServer {
                    urls: server.urls.clone(),
                    username: None,
                    credential: None,
                });
            }
            let secret = config.turn_shared_secret.as_ref()?;
            let username = format!(
                "{}:{}",
                now_s + TURN_CREDENTIAL_TTL_S,
                crate::util::new_id("vz")
            );
            let credential = turn_rest_credential(secret.expose(), &username);
            Some(IceServer {
                urls: server.urls.clone(),
                username: Some(username),
                credential: Some(credential),
            })
        })
        .collect()
}

/// base64(HMAC-SHA1(secret, username)), the TURN REST API's password.
fn turn_rest_credential(secret: &str, username: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same value coturn computes from `static-auth-secret`.
    #[test]
    fn turn_rest_credential_matches_openssl() {
        // printf %s "1700000000:vz" | openssl dgst -sha1 -hmac north -binary | base64
        assert_eq!(
            turn_rest_credential("north", "1700000000:vz"),
            "TdNeV46cc5L23xugK+yHRP80J6U="
        );
    }
}
