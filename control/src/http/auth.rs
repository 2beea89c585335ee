//! Client authentication (seed Phase II "Client Authentication"): signup, login, logout,
//! me, refresh, verify-email, forgot-password, reset-password.

use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{ClientIp, CurrentUser};
use super::json::Json;
use super::ratelimit::Bucket;
use crate::auth::tokens::Audience;
use crate::auth::{password, sessions};
use crate::email;
use crate::state::AppState;
use crate::util::{new_id, normalize_email, now_ms, random_token, sha256_hex};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Router, response::IntoResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vocalized_shared::call_settings::FieldError;

const VERIFY_TTL_MS: i64 = 48 * 3600 * 1000;
const RESET_TTL_MS: i64 = 3600 * 1000;
const MAX_EMAIL_BYTES: usize = 254;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/verify-email", post(verify_email))
        .route("/api/v1/auth/forgot-password", post(forgot_password))
        .route("/api/v1/auth/reset-password", post(reset_password))
}

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Serialize, sqlx::FromRow)]
pub struct WorkspaceSummary {
    pub id: String,
    pub name: String,
    pub industry: Option<String>,
    pub role: String,
    pub status: String,
    pub subscription_tier: String,
}

pub async fn workspaces_of(state: &AppState, user_id: &str) -> ApiResult<Vec<WorkspaceSummary>> {
    Ok(sqlx::query_as(
        "SELECT w.id, w.name, w.industry, m.role, w.status, w.subscription_tier
         FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id
         WHERE m.user_id = $1 ORDER BY w.created_at, w.id",
    )
    .bind(user_id)
    .fetch_all(&state.db.pool)
    .await?)
}

#[derive(Deserialize)]
struct SignupBody {
    email: Option<String>,
    password: Option<String>,
    name: Option<String>,
}

/// Collects every invalid field before answering, so the client can fix them all at once.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: &str, message: &str) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn required<'a>(&mut self, field: &str, value: &'a Option<String>) -> &'a str {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v,
            _ => {
                self.add(field, "is required");
                ""
            }
        }
    }

    pub fn into_result(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

fn check_name(problems: &mut Problems, field: &str, name: &str) {
    if name.chars().count() > 200 {
        problems.add(field, "must be at most 200 characters");
    }
}

async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<SignupBody>,
) -> ApiResult<impl IntoResponse> {
    state.limiter.hit(Bucket::SignupIp, &ip, now_ms())?;
    let mut problems = Problems::default();
    let email_raw = problems.required("email", &body.email);
    let email = normalize_email(email_raw);
    if !email_raw.is_empty() && email.is_none() {
        problems.add("email", "is not a valid email address");
    }
    let name = problems.required("name", &body.name).to_owned();
    check_name(&mut problems, "name", &name);
    match body.password.as_deref() {
        None | Some("") => problems.add("password", "is required"),
        Some(p) => {
            if let Some(why) = password::check_strength(p) {
                problems.add("password", why);
            }
        }
    }
    problems.into_result()?;
    let email = email.expect("checked above");
    let password_hash =
        password::hash_off_runtime(body.password.as_deref().unwrap_or_default()).await;

    let user_id = new_id("usr");
    let now = now_ms();
    let verify_token = random_token();
    let mut tx = state.db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO client_users (id, email, name, password_hash, is_active, email_verified, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, 0, $5, $5)",
    )
    .bind(&user_id)
    .bind(&email)
    .bind(&name)
    .bind(&password_hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "email_taken",
                "an account with this email already exists",
            ));
        }
        other => {
            other?;
        }
    }
    sqlx::query(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at, created_at)
         VALUES ($1, $2, 'verify_email', $3, $4)",
    )
    .bind(sha256_hex(&verify_token))
    .bind(&user_id)
    .bind(now + VERIFY_TTL_MS)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let link = format!(
        "{}/verify-email?token={verify_token}",
        state.config.public_url
    );
    email::queue(
        &mut tx,
        &state.config.master_key,
        &email,
        "Confirm your Vocalized email address",
        &format!("Welcome to Vocalized, {name}.\n\nConfirm your email address: {link}\n\nOr POST this token to /api/v1/auth/verify-email: {verify_token}\n"),
        "verify_email",
    )
    .await?;
    tx.commit().await?;

    let tokens = sessions::start(&state.db, &state.keys, Audience::User, &user_id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "user": UserView { id: user_id, email, name },
        })),
    ))
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

impl LoginBody {
    /// Validates the body and counts the attempt against the per-IP and per-email limits;
    /// returns (normalised email, password). `scope` keeps admin and client limits apart.
    pub fn attempt(self, state: &AppState, ip: &str, scope: &str) -> ApiResult<(String, String)> {
        let now = now_ms();
        state.limiter.hit(Bucket::LoginIp, ip, now)?;
        let mut problems = Problems::default();
        let raw = problems.required("email", &self.email).to_owned();
        // No address is longer (RFC 5321); a longer one is junk, refused before it can
        // become a rate-limit key.
        if raw.len() > MAX_EMAIL_BYTES {
            problems.add("email", "must be at most 254 characters");
        }
        let password = self.password.unwrap_or_default();
        if password.is_empty() {
            problems.add("password", "is required");
        }
        problems.into_result()?;
        let email = normalize_email(&raw).unwrap_or(raw.to_lowercase());
        let account = format!("{scope}{email}");
        // The per-account limit stops guessing from many addresses, but must not let a
        // stranger lock the owner out: an address this account signed in from before
        // still gets to try (under its per-IP limit).
        if let Err(refused) = state.limiter.hit(Bucket::LoginEmail, &account, now)
            && !state.limiter.is_known_login(&account, ip, now)
        {
            return Err(refused);
        }
        Ok((email, password))
    }

    /// Call after a successful sign-in: remembers the address for the per-account limit.
    pub fn remember(state: &AppState, ip: &str, scope: &str, email: &str) {
        state
            .limiter
            .remember_login(&format!("{scope}{email}"), ip, now_ms());
    }
}

/// Checks a password against the account found (or not) for the email. An unknown email
/// costs the same argon2 work as a wrong password and gets the same answer.
pub async fn check_password(password: &str, found: Option<(&str, i64)>) -> ApiResult<()> {
    let matches = password::verify_off_runtime(password, found.map(|(hash, _)| hash)).await;
    let Some((_, is_active)) = found.filter(|_| matches) else {
        return Err(ApiError::Unauthorized("wrong email or password"));
    };
    if is_active != 1 {
        return Err(ApiError::Forbidden("this account has been deactivated"));
    }
    Ok(())
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let (email, password) = body.attempt(&state, &ip, "")?;
    let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, email, name, password_hash, is_active FROM client_users WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&state.db.pool)
    .await?;
    check_password(&password, row.as_ref().map(|r| (r.3.as_str(), r.4))).await?;
    let (id, email, name, _, _) = row.expect("checked above");
    LoginBody::remember(&state, &ip, "", &email);
    sqlx::query("UPDATE client_users SET last_login = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(&id)
        .execute(&state.db.pool)
        .await?;
    let tokens = sessions::start(&state.db, &state.keys, Audience::User, &id).await?;
    let workspaces = workspaces_of(&state, &id).await?;
    Ok(axum::Json(json!({
        "token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "user": UserView { id, email, name },
        "workspaces": workspaces,
    })))
}

async fn logout(State(state): State<AppState>, user: CurrentUser) -> ApiResult<StatusCode> {
    sessions::end(&state.db, &user.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, user: CurrentUser) -> ApiResult<impl IntoResponse> {
    let verified: (i64,) = sqlx::query_as("SELECT email_verified FROM client_users WHERE id = $1")
        .bind(&user.id)
        .fetch_one(&state.db.pool)
        .await?;
    let workspaces = workspaces_of(&state, &user.id).await?;
    Ok(axum::Json(json!({
        "user": {
            "id": user.id, "email": user.email, "name": user.name,
            "email_verified": verified.0 == 1,
        },
        "workspaces": workspaces,
    })))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    pub refresh_token: Option<String>,
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
    let (tokens, _) = sessions::rotate(&state.db, &state.keys, Audience::User, &token)
        .await?
        .ok_or(ApiError::Unauthorized(
            "refresh token is invalid, expired or already used",
        ))?;
    Ok(axum::Json(json!({
        "token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
    })))
}

/// Marks a single-use token used and returns its user, or a 422 on the `token` field.
async fn redeem_user_token(
    conn: &mut sqlx::AnyConnection,
    token: &str,
    purpose: &str,
) -> ApiResult<String> {
    let now = now_ms();
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE user_tokens SET used_at = $1
         WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
         RETURNING user_id",
    )
    .bind(now)
    .bind(sha256_hex(token))
    .bind(purpose)
    .fetch_optional(conn)
    .await?;
    row.map(|(user_id,)| user_id)
        .ok_or_else(|| ApiError::invalid("token", "is invalid, expired or already used"))
}

#[derive(Deserialize)]
struct TokenBody {
    token: Option<String>,
}

async fn verify_email(
    State(state): State<AppState>,
    Json(body): Json<TokenBody>,
) -> ApiResult<impl IntoResponse> {
    let mut problems = Problems::default();
    let token = problems.required("token", &body.token).to_owned();
    problems.into_result()?;
    let mut tx = state.db.pool.begin().await?;
    let user_id = redeem_user_token(&mut tx, &token, "verify_email").await?;
    sqlx::query("UPDATE client_users SET email_verified = 1, updated_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(axum::Json(json!({ "email_verified": true })))
}

#[derive(Deserialize)]
struct ForgotBody {
    email: Option<String>,
}

/// Always answers 202 the same way, whether or not the account exists, so the endpoint
/// cannot be used to discover accounts.
async fn forgot_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<ForgotBody>,
) -> ApiResult<impl IntoResponse> {
    let now = now_ms();
    state.limiter.hit(Bucket::ForgotIp, &ip, now)?;
    let mut problems = Problems::default();
    let raw = problems.required("email", &body.email).to_owned();
    problems.into_result()?;
    let email = normalize_email(&raw)
        .ok_or_else(|| ApiError::invalid("email", "is not a valid email address"))?;
    state.limiter.hit(Bucket::ForgotEmail, &email, now)?;

    let user: Option<(String, String)> =
        sqlx::query_as("SELECT id, name FROM client_users WHERE email = $1 AND is_active = 1")
            .bind(&email)
            .fetch_optional(&state.db.pool)
            .await?;
    if let Some((user_id, name)) = user {
        let token = random_token();
        let mut tx = state.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user_id, purpose, expires_at, created_at)
             VALUES ($1, $2, 'reset_password', $3, $4)",
        )
        .bind(sha256_hex(&token))
        .bind(&user_id)
        .bind(now + RESET_TTL_MS)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let link = format!("{}/reset-password?token={token}", state.config.public_url);
        email::queue(
            &mut tx,
            &state.config.master_key,
            &email,
            "Reset your Vocalized password",
            &format!("Hi {name},\n\nReset your password within an hour: {link}\n\nOr POST this token with new_password to /api/v1/auth/reset-password: {token}\n\nIf you did not ask for this, ignore this email.\n"),
            "reset_password",
        )
        .await?;
        tx.commit().await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "message": "if that account exists, a reset email is on its way" })),
    ))
}

#[derive(Deserialize)]
struct ResetBody {
    token: Option<String>,
    new_password: Option<String>,
}

async fn reset_password(
    State(state): State<AppState>,
    Json(body): Json<ResetBody>,
) -> ApiResult<impl IntoResponse> {
    let mut problems = Problems::default();
    let token = problems.required("token", &body.token).to_owned();
    let new_password = body.new_password.clone().unwrap_or_default();
    if new_password.is_empty() {
        problems.add("new_password", "is required");
    } else if let Some(why) = password::check_strength(&new_password) {
        problems.add("new_password", why);
    }
    problems.into_result()?;
    let password_hash = password::hash_off_runtime(&new_password).await;
    let mut tx = state.db.pool.begin().await?;
    let user_id = redeem_user_token(&mut tx, &token, "reset_password").await?;
    sqlx::query("UPDATE client_users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(password_hash)
        .bind(now_ms())
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // A reset means the old password may be known to someone else: end every session.
    sessions::end_all(&state.db, Audience::User, &user_id).await?;
    Ok(axum::Json(json!({ "password_reset": true })))
}
