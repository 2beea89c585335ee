//! Platform admin authentication (seed Phase II "Admin Authentication").

use super::auth::{LoginBody, Problems, RefreshBody, check_password};
use super::error::{ApiError, ApiResult};
use super::extract::{ClientIp, CurrentAdmin};
use super::json::Json;
use crate::auth::sessions;
use crate::auth::tokens::Audience;
use crate::state::AppState;
use crate::util::now_ms;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/auth/login", post(login))
        .route("/api/v1/admin/auth/logout", post(logout))
        .route("/api/v1/admin/auth/me", get(me))
        .route("/api/v1/admin/auth/refresh", post(refresh))
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let (email, password) = body.attempt(&state, &ip, "admin:")?;
    let row: Option<(String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, email, name, role, password_hash, is_active FROM platform_admins WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.db.pool)
    .await?;
    check_password(&password, row.as_ref().map(|r| (r.4.as_str(), r.5))).await?;
    let (id, email, name, role, _, _) = row.expect("checked above");
    LoginBody::remember(&state, &ip, "admin:", &email);
    sqlx::query("UPDATE platform_admins SET last_login = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    let tokens = sessions::start(&state.db, &state.keys, Audience::Admin, &id).await?;
    Ok(axum::Json(json!({
        "token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "admin": { "id": id, "email": email, "name": name, "role": role },
    })))
}

async fn logout(State(state): State<AppState>, admin: CurrentAdmin) -> ApiResult<StatusCode> {
    sessions::end(&state.db, &admin.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(admin: CurrentAdmin) -> impl IntoResponse {
    axum::Json(json!({ "admin": {
        "id": admin.id, "email": admin.email, "name": admin.name, "role": admin.role.as_str(),
    }}))
}

async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> ApiResult<impl IntoResponse> {
    let mut problems = Problems::default();
    let token = problems
        .required("refresh_token", &body.refresh_token)
        .to_owned();
    problems.into_result()?;
    let (tokens, _) = sessions::rotate(&state.db, &state.keys, Audience::Admin, &token)
        .await?
        .ok_or(ApiError::Unauthorized(
            "refresh token is invalid, expired or already used",
        ))?;
    Ok(axum::Json(json!({
        "token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
    })))
}
