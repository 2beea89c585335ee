//! Workspaces (seed Phase II "Workspace Management (Client)"): the tenants. The creator
//! becomes the owner; owners and admins update; only the owner deletes.

use super::auth::{Problems, workspaces_of};
use super::error::{ApiError, ApiResult};
use super::extract::{CurrentUser, WorkspaceMember, WorkspaceRole};
use super::json::Json;
use crate::settings;
use crate::state::AppState;
use crate::util::{new_id, now_ms};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces", get(list).post(create))
        .route(
            "/api/v1/workspaces/{workspace_id}",
            get(show).put(update).delete(remove),
        )
}

#[derive(Serialize, sqlx::FromRow)]
pub struct WorkspaceView {
    pub id: String,
    pub name: String,
    pub industry: Option<String>,
    pub owner_id: String,
    pub status: String,
    pub subscription_tier: String,
    pub trial_ends_at: Option<i64>,
    pub timezone: String,
    #[serde(serialize_with = "as_bool")]
    pub call_enabled: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn as_bool<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*v != 0)
}

pub const WORKSPACE_COLUMNS: &str = "id, name, industry, owner_id, status, subscription_tier, trial_ends_at, timezone, call_enabled, created_at, updated_at";

pub async fn fetch(state: &AppState, id: &str) -> ApiResult<WorkspaceView> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("workspace"))
}

/// Time zones are IANA names like `Europe/Paris` or `UTC`; we check the shape, not the
/// database of zones.
fn valid_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.len() <= 64
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
        && tz.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    industry: Option<String>,
    timezone: Option<String>,
}

fn check_fields(
    problems: &mut Problems,
    name: Option<&str>,
    industry: Option<&str>,
    timezone: Option<&str>,
) {
    if let Some(name) = name {
        if name.trim().is_empty() {
            problems.add("name", "must not be empty");
        } else if name.chars().count() > 200 {
            problems.add("name", "must be at most 200 characters");
        }
    }
    if industry.is_some_and(|i| i.chars().count() > 100) {
        problems.add("industry", "must be at most 100 characters");
    }
    if timezone.is_some_and(|tz| !valid_timezone(tz)) {
        problems.add(
            "timezone",
            "must be an IANA time zone name such as Europe/Paris or UTC",
        );
    }
}

/// How many workspaces one user may own. Each workspace has its own plan limits, so an
/// unlimited number would multiply them (and phone-number squatting, H2).
pub const MAX_OWNED_WORKSPACES: i64 = 10;

/// Serialises the plan-limited creates of one workspace (agents, numbers): a no-op write to
/// its row takes the row lock on Postgres and the database write lock on SQLite, both held
/// until the transaction ends, so the count a create checks cannot change before its
/// insert commits. Call it first in the transaction.
pub async fn lock_for_create(
    conn: &mut sqlx::AnyConnection,
    workspace_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE workspaces SET updated_at = updated_at WHERE id = $1")
        .bind(workspace_id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(body): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let mut problems = Problems::default();
    let name = problems.required("name", &body.name).to_owned();
    check_fields(
        &mut problems,
        Some(&name),
        body.industry.as_deref(),
        body.timezone.as_deref(),
    );
    problems.into_result()?;

    let defaults = settings::workspace_defaults(&state.db).await?;
    let id = new_id("ws");
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    // The user's row is the lock here (as the workspace row is for agents and numbers).
    sqlx::query("UPDATE client_users SET updated_at = updated_at WHERE id = $1")
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    let (owned,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM workspaces WHERE owner_id = $1")
        .bind(&user.id)
        .fetch_one(&mut *tx)
        .await?;
    if owned >= MAX_OWNED_WORKSPACES {
        return Err(ApiError::conflict(
            "workspace_limit_reached",
            format!("an account may own at most {MAX_OWNED_WORKSPACES} workspaces"),
        ));
    }
    sqlx::query(
        "INSERT INTO workspaces (id, name, industry, owner_id, status, subscription_tier, timezone, call_enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(name.trim())
    .bind(body.industry.as_deref().map(str::trim))
    .bind(&user.id)
    .bind(&defaults.subscription_tier)
    .bind(body.timezone.as_deref().unwrap_or("UTC"))
    .bind(i64::from(defaults.call_enabled))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, invited_by, joined_at)
         VALUES ($1, $2, 'owner', NULL, $3)",
    )
    .bind(&id)
    .bind(&user.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let workspace = fetch(&state, &id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "workspace": workspace })),
    ))
}

async fn list(State(state): State<AppState>, user: CurrentUser) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        json!({ "workspaces": workspaces_of(&state, &user.id).await? }),
    ))
}

#[derive(Serialize, sqlx::FromRow)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub joined_at: i64,
}

pub async fn members_of(state: &AppState, workspace_id: &str) -> ApiResult<Vec<MemberView>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, u.email, u.name, m.role, m.joined_at
         FROM workspace_members m JOIN client_users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 ORDER BY m.joined_at, m.user_id",
    )
    .bind(workspace_id)
    .fetch_all(&state.db.pool)
    .await?)
}

/// The plan's limits and how much of them the workspace uses.
pub async fn subscription(
    state: &AppState,
    workspace: &WorkspaceView,
) -> ApiResult<serde_json::Value> {
    let tier: (String, i64, Option<i64>, i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT display_name, monthly_fee_micros, included_minutes, price_per_minute_micros, max_agents, max_phone_numbers
         FROM subscription_tiers WHERE tier_name = $1",
    )
    .bind(&workspace.subscription_tier)
    .fetch_one(&state.db.pool)
    .await?;
    let (agents,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM voice_agents WHERE workspace_id = $1")
            .bind(&workspace.id)
            .fetch_one(&state.db.pool)
            .await?;
    let (numbers,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM phone_numbers WHERE workspace_id = $1")
            .bind(&workspace.id)
            .fetch_one(&state.db.pool)
            .await?;
    Ok(json!({
        "tier": workspace.subscription_tier,
        "display_name": tier.0,
        "monthly_fee_micros": tier.1,
        "price_per_minute_micros": tier.3,
        "limits": { "included_minutes": tier.2, "max_agents": tier.4, "max_phone_numbers": tier.5 },
        "usage": { "agents": agents, "phone_numbers": numbers },
    }))
}

async fn show(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let workspace = fetch(&state, &member.workspace_id).await?;
    let members = members_of(&state, &member.workspace_id).await?;
    let subscription = subscription(&state, &workspace).await?;
    Ok(axum::Json(json!({
        "workspace": workspace,
        "role": member.role.as_str(),
        "members": members,
        "subscription": subscription,
    })))
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    industry: Option<String>,
    timezone: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<UpdateBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    check_fields(
        &mut problems,
        body.name.as_deref(),
        body.industry.as_deref(),
        body.timezone.as_deref(),
    );
    problems.into_result()?;
    sqlx::query(
        "UPDATE workspaces SET name = COALESCE($1, name), industry = COALESCE($2, industry),
                timezone = COALESCE($3, timezone), updated_at = $4
         WHERE id = $5",
    )
    .bind(body.name.as_deref().map(str::trim))
    .bind(body.industry.as_deref().map(str::trim))
    .bind(body.timezone.as_deref())
    .bind(now_ms())
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await?;
    Ok(axum::Json(
        json!({ "workspace": fetch(&state, &member.workspace_id).await? }),
    ))
}

async fn remove(State(state): State<AppState>, member: WorkspaceMember) -> ApiResult<StatusCode> {
    member.require(WorkspaceRole::Owner)?;
    // Everything tenant-owned hangs off the workspace with ON DELETE CASCADE.
    sqlx::query("DELETE FROM workspaces WHERE id = $1")
        .bind(&member.workspace_id)
        .execute(&state.db.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
