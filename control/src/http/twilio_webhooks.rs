//! Twilio's webhooks (seed Phase II "Webhooks (Platform Receives)"): the voice webhook that
//! admits a call and connects it to our Media Streams socket, and the status callback.
//!
//! Each request is verified with the auth token of the Twilio account it claims to come
//! from (`AccountSid`): the platform's own account or a workspace's Twilio integration.
//! A bad or missing signature is a 403 and nothing is written. Refusals are TwiML that says
//! why and hangs up, never an HTTP error the caller would hear as a fault.

use super::error::{ApiError, ApiResult};
use super::rejection::Form;
use crate::calls::admission::{self, NOT_IN_SERVICE};
use crate::calls::plan::mint_stream_token;
use crate::crypto::SealedAt;
use crate::state::AppState;
use crate::twilio::{signature, twiml};
use crate::util::{new_id, now_ms};
use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/calls/inbound", post(inbound))
        .route("/webhooks/calls/status", post(status))
}

type Params = Vec<(String, String)>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// The account a verified request came from: the platform's (`None`) or a workspace's
/// integration account (`Some((integration id, workspace id))`).
type Account = Option<(String, String)>;

/// Verifies `X-Twilio-Signature` against every account that `AccountSid` could be.
async fn verify(
    state: &AppState,
    uri: &OriginalUri,
    headers: &HeaderMap,
    params: &Params,
) -> ApiResult<Account> {
    let header = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Forbidden("missing X-Twilio-Signature"))?;
    let path_and_query = uri.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path_and_query}", state.config.public_url);
    let account_sid = param(params, "AccountSid").unwrap_or_default();

    if let Some(platform) = &state.config.twilio
        && platform.account_sid == account_sid
        && signature::is_valid(&url, params, platform.auth_token.expose(), header)
    {
        return Ok(None);
    }
    let accounts: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT id, workspace_id, credentials_encrypted FROM integration_accounts
         WHERE account_type = 'twilio' AND external_account_id = $1 AND is_active = 1",
    )
    .bind(account_sid)
    .fetch_all(&state.db.pool)
    .await?;
    for (id, workspace_id, sealed) in accounts {
        let at = SealedAt::new("integration_accounts", "credentials_encrypted", id.as_str());
        let Ok(credentials) = state.config.master_key.open_at(&sealed, &at) else {
            tracing::error!(integration_account_id = %id, "Twilio credentials do not open under the master key");
            continue;
        };
        let token = serde_json::from_str::<serde_json::Value>(&credentials)
            .ok()
            .and_then(|v| v["auth_token"].as_str().map(str::to_owned));
        if let Some(token) = token
            && signature::is_valid(&url, params, &token, header)
        {
            return Ok(Some((id, workspace_id)));
        }
    }
    Err(ApiError::Forbidden("X-Twilio-Signature does not verify"))
}

async fn inbound(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> ApiResult<Response> {
    let account = verify(&state, &uri, &headers, &params).await?;
    let to = param(&params, "To").unwrap_or_default();
    let from = param(&params, "From").unwrap_or_default();
    let call_sid = param(&params, "CallSid").unwrap_or_default();

    let target = admission::target(&state.db, to).await?;
    // A workspace's own Twilio account may only route that workspace's numbers.
    let target = target.filter(|t| account.as_ref().is_none_or(|(_, ws)| ws == &t.workspace_id));
    let Some(target) = target else {
        tracing::info!("voice webhook for a number not in service");
        return Ok(xml(twiml::say_and_hang_up(NOT_IN_SERVICE)));
    };
    // The platform's account signs for every number on it, so its signature proves
    // nothing about who owns the number: only a number a platform admin verified for
    // this workspace routes (H2). No call row either, so whoever registered someone
    // else's number never sees its callers.
    if account.is_none() && !is_verified(&state, &target.phone_number_id).await? {
        tracing::info!(workspace_id = %target.workspace_id, code = NUMBER_UNVERIFIED, "call refused");
        return Ok(xml(twiml::say_and_hang_up_coded(
            NOT_IN_SERVICE,
            NUMBER_UNVERIFIED,
        )));
    }
    let integration_id = account.map(|(id, _)| id);

    // Twilio retries a webhook it got no answer to: the same CallSid gets the same call and
    // a fresh token instead of a second call row, and the earlier tokens stop working.
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT id, status FROM calls WHERE provider_call_sid = $1 AND workspace_id = $2",
    )
    .bind(call_sid)
    .bind(&target.workspace_id)
    .fetch_optional(&state.db.pool)
    .await?;

    let now = now_ms();
    // A retry for a call still waiting for its stream keeps the place it was given.
    let retry_of = existing
        .as_ref()
        .filter(|(_, status)| ["queued", "ringing"].contains(&status.as_str()))
        .map(|(id, _)| id.as_str());
    let slot = match admission::admit(&state, &target, retry_of).await? {
        Ok(slot) => slot,
        Err(refusal) => {
            if existing.is_none() {
                sqlx::query(
                "INSERT INTO calls (id, workspace_id, agent_id, phone_number_id, integration_account_id, source, direction,
                                    status, caller_number, to_number, provider_call_sid, error_code, error_message,
                                    started_at, ended_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'twilio', 'inbound', 'failed', $6, $7, $8, $9, $10, $11, $11, $11, $11)",
            )
            .bind(new_id("call"))
            .bind(&target.workspace_id)
            .bind(target.agent_id.as_deref())
            .bind(&target.phone_number_id)
            .bind(integration_id.as_deref())
            .bind(from)
            .bind(to)
            .bind(non_empty(call_sid))
            .bind(refusal.code())
            .bind(refusal.message())
            .bind(now)
            .execute(&state.db.pool)
            .await?;
            }
            tracing::info!(workspace_id = %target.workspace_id, code = refusal.code(), "call refused");
            return Ok(xml(twiml::say_and_hang_up(refusal.message())));
        }
    };

    let mut tx = state.db.pool.begin().await?;
    let call_id = match existing {
        Some((id, status)) if ["queued", "ringing"].contains(&status.as_str()) => {
            if !retire_tokens(&mut tx, &id, now).await? {
                // A stream already redeemed a token: the call is being bridged.
                return Ok(xml(twiml::say_and_hang_up(NOT_IN_SERVICE)));
            }
            id
        }
        Some(_) => {
            // The call already connected or ended: a late retry must not start it again.
            return Ok(xml(twiml::say_and_hang_up(NOT_IN_SERVICE)));
        }
        None => {
            let id = new_id("call");
            sqlx::query(
                "INSERT INTO calls (id, workspace_id, agent_id, phone_number_id, integration_account_id, source, direction,
                                    status, caller_number, caller_name, to_number, provider_call_sid,
                                    started_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'twilio', 'inbound', 'ringing', $6, $7, $8, $9, $10, $10, $10)",
            )
            .bind(&id)
            .bind(&target.workspace_id)
            .bind(target.agent_id.as_deref())
            .bind(&target.phone_number_id)
            .bind(integration_id.as_deref())
            .bind(from)
            .bind(param(&params, "CallerName"))
            .bind(to)
            .bind(non_empty(call_sid))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    let token = mint_stream_token(&mut tx, &target.workspace_id, &call_id).await?;
    tx.commit().await?;
    admission::hold_until_streamed(&state, &call_id, slot);
    tracing::info!(%call_id, workspace_id = %target.workspace_id, "call admitted; connecting the stream");
    Ok(xml(twiml::connect_stream(
        &state.config.twilio_stream_url(),
        &token,
    )))
}

/// A retry of the voice webhook for a call that has not connected yet (security review
/// L9): deletes the call's unused stream tokens, so only the token about to be minted can
/// bridge it, and answers whether one may be minted (`false` once a stream redeemed one).
///
/// The call row is locked first (an UPDATE), so concurrent retries for one call take
/// turns. A stream redeeming an old token either wins the token's row before the DELETE
/// (then this sees it used and mints nothing) or finds the row gone: either way at most
/// one token of a call is ever redeemed.
async fn retire_tokens(
    tx: &mut sqlx::AnyConnection,
    call_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query("UPDATE calls SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM call_stream_tokens WHERE call_id = $1 AND used_at IS NULL")
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
    let (used,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM call_stream_tokens WHERE call_id = $1 AND used_at IS NOT NULL",
    )
    .bind(call_id)
    .fetch_one(&mut *tx)
    .await?;
    Ok(used == 0)
}

/// The refusal of a call to a number no admin has verified (see `admin_numbers`).
pub const NUMBER_UNVERIFIED: &str = "number_unverified";

async fn is_verified(state: &AppState, phone_number_id: &str) -> ApiResult<bool> {
    let (verified_at,): (Option<i64>,) =
        sqlx::query_as("SELECT verified_at FROM phone_numbers WHERE id = $1")
            .bind(phone_number_id)
            .fetch_one(&state.db.pool)
            .await?;
    Ok(verified_at.is_some())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Twilio's call statuses, final ones last.
const TERMINAL: &[&str] = &["completed", "failed", "busy", "no-answer", "canceled"];
const KNOWN: &[&str] = &[
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "failed",
    "busy",
    "no-answer",
    "canceled",
];

/// Status callback: moves the call forward (never back out of a final status) and records
/// Twilio's duration. Retries of the same callback change nothing.
async fn status(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> ApiResult<StatusCode> {
    let account = verify(&state, &uri, &headers, &params).await?;
    let call_sid = param(&params, "CallSid").unwrap_or_default();
    let new_status = param(&params, "CallStatus").unwrap_or_default();
    if !KNOWN.contains(&new_status) {
        return Err(ApiError::invalid(
            "CallStatus",
            "is not a Twilio call status",
        ));
    }
    let duration: Option<i64> = param(&params, "CallDuration")
        .and_then(|d| d.parse().ok())
        .filter(|d| *d >= 0);
    let call: Option<(String, String, String)> =
        sqlx::query_as("SELECT id, workspace_id, status FROM calls WHERE provider_call_sid = $1")
            .bind(call_sid)
            .fetch_optional(&state.db.pool)
            .await?;
    let Some((call_id, workspace_id, current)) = call else {
        // Not ours (or refused before a row existed): acknowledge so Twilio stops retrying.
        return Ok(StatusCode::NO_CONTENT);
    };
    if account.as_ref().is_some_and(|(_, ws)| ws != &workspace_id) {
        return Err(ApiError::Forbidden("this account does not own that call"));
    }
    let now = now_ms();
    if !TERMINAL.contains(&current.as_str()) {
        sqlx::query(
            "UPDATE calls SET status = $1, ended_at = CASE WHEN $2 = 1 THEN COALESCE(ended_at, $3) ELSE ended_at END,
                    updated_at = $3 WHERE id = $4",
        )
        .bind(new_status)
        .bind(i64::from(TERMINAL.contains(&new_status)))
        .bind(now)
        .bind(&call_id)
        .execute(&state.db.pool)
        .await?;
    }
    if let Some(d) = duration {
        sqlx::query("UPDATE calls SET duration_seconds = $1, updated_at = $2 WHERE id = $3")
            .bind(d)
            .bind(now)
            .bind(&call_id)
            .execute(&state.db.pool)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
