//! Phone number verification by platform admins (security review H2). A number on the
//! platform's Twilio account routes calls only once an admin has checked that the
//! workspace really owns it and verified it here; until then its calls hang up with
//! `number_unverified` (see `twilio_webhooks`). Numbers whose webhooks a workspace's own
//! Twilio integration account signs need no verification: the signature proves them.
//!
//! support lists; admin and super_admin verify, and each verification is audited in its
//! transaction.

use super::error::{ApiError, ApiResult};
use super::extract::{AdminRole, ClientIp, CurrentAdmin};
use crate::audit;
use crate::state::AppState;
use crate::util::now_ms;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/phone-numbers", get(list))
        .route(
            "/api/v1/admin/phone-numbers/{number_id}/verify",
            post(verify),
        )
}

#[derive(Serialize, sqlx::FromRow)]
struct AdminNumberView {
    id: String,
    workspace_id: String,
    workspace_name: String,
    phone_number: String,
    provider: String,
    provider_sid: Option<String>,
    status: String,
    verification_status: String,
    verified_at: Option<i64>,
    created_at: i64,
}

const ADMIN_NUMBER_SELECT: &str = "SELECT p.id, p.workspace_id, w.name AS workspace_name,
        p.phone_number, p.provider, p.provider_sid, p.status,
        CASE WHEN p.verified_at IS NULL THEN 'unverified' ELSE 'verified' END AS verification_status,
        p.verified_at, p.created_at
 FROM phone_numbers p JOIN workspaces w ON w.id = p.workspace_id";

#[derive(Deserialize)]
struct Filter {
    verification_status: Option<String>,
    workspace_id: Option<String>,
}

/// Every registered number, oldest first; `?verification_status=unverified` is the queue
/// of numbers waiting for an admin.
async fn list(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(filter): Query<Filter>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    // Static filter strings only; the values are bound.
    let by_status = match filter.verification_status.as_deref() {
        None => "1 = 1",
        Some("verified") => "p.verified_at IS NOT NULL",
        Some("unverified") => "p.verified_at IS NULL",
        Some(_) => {
            return Err(ApiError::invalid(
                "verification_status",
                "must be verified or unverified",
            ));
        }
    };
    let by_workspace = if filter.workspace_id.is_some() {
        "p.workspace_id = $1"
    } else {
        "1 = 1"
    };
    let mut query = sqlx::query_as::<_, AdminNumberView>(sqlx::AssertSqlSafe(format!(
        "{ADMIN_NUMBER_SELECT} WHERE {by_status} AND {by_workspace}
         ORDER BY p.created_at, p.id LIMIT 500"
    )));
    if let Some(workspace_id) = &filter.workspace_id {
        query = query.bind(workspace_id);
    }
    let numbers = query.fetch_all(&state.db.pool).await?;
    Ok(axum::Json(json!({ "phone_numbers": numbers })))
}

async fn fetch(state: &AppState, id: &str) -> ApiResult<AdminNumberView> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ADMIN_NUMBER_SELECT} WHERE p.id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("phone number"))
}

/// Marks the number as proven to belong to its workspace, so calls to it on the
/// platform's Twilio account route. Verifying again keeps the first verification.
async fn verify(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(number_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let before = fetch(&state, &number_id).await?;
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE phone_numbers SET verified_at = COALESCE(verified_at, $1),
                verified_by_admin_id = COALESCE(verified_by_admin_id, $2), updated_at = $1
         WHERE id = $3",
    )
    .bind(now)
    .bind(&admin.id)
    .bind(&number_id)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &admin,
        "verified_phone_number",
        ("phone_number", &number_id),
        json!({
            "workspace_id": before.workspace_id,
            "provider_sid": before.provider_sid,
            "already_verified": before.verified_at.is_some(),
        }),
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "phone_number": fetch(&state, &number_id).await? }),
    ))
}
