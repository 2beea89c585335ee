//! The call widget's public configuration (`GET /widget/{public_key}/config`), read by
//! `widget.js` on any customer's site: whether calling is on (workspace switch AND agent
//! capability AND agent live), the button's look, the greeting and the ICE servers. No
//! secrets here: the public key is meant to be embedded in pages. CORS is open for these
//! routes only.

use super::error::{ApiError, ApiResult};
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
        "iceServers": state.config.ice_servers,
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
