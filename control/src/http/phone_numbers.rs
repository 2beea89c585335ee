//! Phone numbers (seed Phase II "Phone Numbers (Client)"): registering a number the
//! workspace already owns at Twilio (buying numbers comes later). E.164 only; a number
//! belongs to one workspace on the whole platform. A new number is unverified: calls to it
//! through the platform's Twilio account are refused until a platform admin verifies it
//! (`admin_numbers`), so registering someone else's number gets the squatter nothing.

use super::auth::Problems;
use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{WorkspaceMember, WorkspaceRole};
use super::json::Json;
use crate::state::AppState;
use crate::util::{new_id, now_ms};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{workspace_id}/phone-numbers",
            get(list).post(create),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}",
            get(show).put(update).delete(remove),
        )
}

/// E.164: `+`, a country code that does not start with 0, at most 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

#[derive(Serialize, sqlx::FromRow)]
struct NumberView {
    id: String,
    phone_number: String,
    friendly_name: Option<String>,
    provider: String,
    provider_sid: Option<String>,
    status: String,
    /// `verified` once a platform admin proved the number belongs to this workspace;
    /// until then calls to it through the platform's Twilio account are refused
    /// (`number_unverified`). A workspace's own Twilio account proves its numbers itself.
    verification_status: String,
    verified_at: Option<i64>,
    agent_id: Option<String>,
    agent_name: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const NUMBER_SELECT: &str =
    "SELECT p.id, p.phone_number, p.friendly_name, p.provider, p.provider_sid, p.status,
        CASE WHEN p.verified_at IS NULL THEN 'unverified' ELSE 'verified' END AS verification_status,
        p.verified_at, a.id AS agent_id, a.name AS agent_name, p.created_at, p.updated_at
 FROM phone_numbers p LEFT JOIN voice_agents a ON a.phone_number_id = p.id";

async fn fetch(state: &AppState, workspace_id: &str, id: &str) -> ApiResult<NumberView> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NUMBER_SELECT} WHERE p.workspace_id = $1 AND p.id = $2"
    )))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("phone number"))
}

async fn list(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let numbers: Vec<NumberView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{NUMBER_SELECT} WHERE p.workspace_id = $1 ORDER BY p.created_at, p.id"
    )))
    .bind(&member.workspace_id)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(axum::Json(json!({ "phone_numbers": numbers })))
}

#[derive(Deserialize)]
struct CreateBody {
    phone_number: Option<String>,
    friendly_name: Option<String>,
    provider: Option<String>,
    provider_sid: Option<String>,
}

fn check_friendly_name(problems: &mut Problems, name: Option<&str>) {
    if name.is_some_and(|n| n.chars().count() > 100) {
        problems.add("friendly_name", "must be at most 100 characters");
    }
}

async fn create(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    let number = problems
        .required("phone_number", &body.phone_number)
        .to_owned();
    if !number.is_empty() && !is_e164(&number) {
        problems.add("phone_number", "must be in E.164 format, e.g. +14155551234");
    }
    check_friendly_name(&mut problems, body.friendly_name.as_deref());
    let provider = body.provider.clone().unwrap_or_else(|| "twilio".into());
    if !["twilio", "telnyx"].contains(&provider.as_str()) {
        problems.add("provider", "must be twilio or telnyx");
    }
    problems.into_result()?;

    // The allowance check and the insert are one step (L12).
    let mut tx = state.db.pool.begin().await?;
    super::workspaces::lock_for_create(&mut tx, &member.workspace_id).await?;
    let (max, count): (Option<i64>, i64) = sqlx::query_as(
        "SELECT t.max_phone_numbers, (SELECT COUNT(*) FROM phone_numbers p WHERE p.workspace_id = w.id)
         FROM workspaces w JOIN subscription_tiers t ON t.tier_name = w.subscription_tier
         WHERE w.id = $1",
    )
    .bind(&member.workspace_id)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(max) = max.filter(|max| count >= *max) {
        return Err(ApiError::conflict(
            "plan_limit_reached",
            format!("your plan allows {max} phone number(s); upgrade to add more"),
        ));
    }

    let id = new_id("pn");
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO phone_numbers (id, workspace_id, phone_number, provider, provider_sid, friendly_name, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7)",
    )
    .bind(&id)
    .bind(&member.workspace_id)
    .bind(&number)
    .bind(&provider)
    .bind(body.provider_sid.as_deref())
    .bind(body.friendly_name.as_deref().map(str::trim))
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "phone_number_taken",
                "this phone number is already registered",
            ));
        }
        other => {
            other?;
        }
    }
    tx.commit().await?;
    let number = fetch(&state, &member.workspace_id, &id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "phone_number": number })),
    ))
}

async fn show(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, number_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let number = fetch(&state, &member.workspace_id, &number_id).await?;
    Ok(axum::Json(json!({ "phone_number": number })))
}

#[derive(Deserialize)]
struct UpdateBody {
    friendly_name: Option<String>,
    status: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, number_id)): Path<(String, String)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    check_friendly_name(&mut problems, body.friendly_name.as_deref());
    if body
        .status
        .as_deref()
        .is_some_and(|s| !["active", "inactive"].contains(&s))
    {
        problems.add("status", "must be active or inactive");
    }
    problems.into_result()?;
    let changed = sqlx::query(
        "UPDATE phone_numbers SET friendly_name = COALESCE($1, friendly_name), status = COALESCE($2, status), updated_at = $3
         WHERE id = $4 AND workspace_id = $5",
    )
    .bind(body.friendly_name.as_deref().map(str::trim))
    .bind(body.status.as_deref())
    .bind(now_ms())
    .bind(&number_id)
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(ApiError::NotFound("phone number"));
    }
    let number = fetch(&state, &member.workspace_id, &number_id).await?;
    Ok(axum::Json(json!({ "phone_number": number })))
}

async fn remove(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, number_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    member.require(WorkspaceRole::Admin)?;
    let deleted = sqlx::query("DELETE FROM phone_numbers WHERE id = $1 AND workspace_id = $2")
        .bind(&number_id)
        .bind(&member.workspace_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::NotFound("phone number"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::is_e164;

    #[test]
    fn e164_numbers() {
        for ok in ["+14155551234", "+442071838750", "+33123456789"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "14155551234",
            "+0123456",
            "+1",
            "+1415555123456789",
            "+1 415 555",
            "+1-415",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
