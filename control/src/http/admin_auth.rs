//! Platform admin authentication (seed Phase II "Admin Authentication").

use super::auth::{Problems, RefreshBody};
use super::error::{ApiError, ApiResult};
use super::extract::{ClientIp, CurrentAdmin};
use super::json::Json;
use super::ratelimit::Bucket;
use crate::auth::tokens::Audience;
use crate::auth::{password, sessions};
use crate::state::AppState;
use crate::util::{normalize_email, now_ms};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/auth/login", post(login))
        .route("/api/v1/admin/auth/logout", post(logout))
        .route("/api/v1/admin/auth/me", get(me))
        .route("/api/v1/admin/auth/refresh", post(refresh))
}

#[derive(Deserialize)]
struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let now = now_ms();
    state.limiter.hit(Bucket::LoginIp, &ip, now)?;
    let mut problems = Problems::default();
    let raw = problems.required("email", &body.email).to_owned();
    if body.password.as_deref().unwrap_or_default().is_empty() {
        problems.add("password", "is required");
    }
    problems.into_result()?;
    let email = normalize_email(&raw).unwrap_or(raw.to_lowercase());
    state
        .limiter
        .hit(Bucket::LoginEmail, &format!("admin:{email}"), now)?;
    let row: Option<(String, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, email, name, role, password_hash, is_active FROM platform_admins WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.db.pool)
    .await?;
    let password = body.password.unwrap_or_default();
    let Some((id, email, name, role, hash, is_active)) = row else {
        password::verify(&password, password::dummy_hash());
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    if !password::verify(&password, &hash) {
        return Err(ApiError::Unauthorized("wrong email or password"));
    }
    if is_active != 1 {
        return Err(ApiError::Forbidden(
            "this admin account has been deactivated",
        ));
    }
    sqlx::query("UPDATE platform_admins SET last_login = $1 WHERE id = $2")
        .bind(now)
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
