//! The admin portal's workspace, settings and audit endpoints (seed Phase II §2.1).
//! support reads; admin manages workspaces; super_admin changes platform settings.
//! Every mutation writes `admin_activity_logs` in the same transaction.

use super::auth::Problems;
use super::error::{ApiError, ApiResult};
use super::extract::{AdminRole, ClientIp, CurrentAdmin};
use super::json::Json;
use super::rejection::Query;
use super::workspaces::{WorkspaceView, fetch, members_of, subscription};
use crate::audit;
use crate::settings;
use crate::state::AppState;
use crate::util::now_ms;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/workspaces", get(list_workspaces))
        .route(
            "/api/v1/admin/workspaces/{workspace_id}",
            get(show_workspace).put(update_workspace),
        )
        .route(
            "/api/v1/admin/workspaces/{workspace_id}/suspend",
            post(suspend_workspace),
        )
        .route(
            "/api/v1/admin/workspaces/{workspace_id}/activate",
            post(activate_workspace),
        )
        .route(
            "/api/v1/admin/config/settings",
            get(list_settings).put(update_settings),
        )
        .route("/api/v1/admin/logs/activity", get(activity_log))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default, deserialize_with = "number_in_query")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "number_in_query")]
    limit: Option<i64>,
}

/// `Page` is `#[serde(flatten)]`ed into the filters, and flattened query values reach it
/// as strings, so a plain `Option<i64>` refused every `?page=`/`?limit=` with a 400.
fn number_in_query<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Text(String),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a whole number"))),
    }
}

impl Page {
    /// (limit, offset, page) with limit clamped to 1..=200.
    fn bounds(&self) -> (i64, i64, i64) {
        let limit = self.limit.unwrap_or(50).clamp(1, 200);
        let page = self.page.unwrap_or(1).max(1);
        // Saturating: a huge page is an empty page, not an overflow (L1).
        (limit, (page - 1).saturating_mul(limit), page)
    }
}

#[derive(Deserialize)]
struct WorkspaceFilter {
    status: Option<String>,
    search: Option<String>,
    #[serde(flatten)]
    page: Page,
}

#[derive(Serialize, sqlx::FromRow)]
struct AdminWorkspaceRow {
    id: String,
    name: String,
    industry: Option<String>,
    owner_email: String,
    status: String,
    subscription_tier: String,
    #[serde(serialize_with = "super::workspaces::as_bool")]
    call_enabled: i64,
    created_at: i64,
}

async fn list_workspaces(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(filter): Query<WorkspaceFilter>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    let (limit, offset, page) = filter.page.bounds();
    let search = filter
        .search
        .as_deref()
        .map(|s| format!("%{}%", s.to_lowercase()));
    let filters = "($1 IS NULL OR w.status = $1) AND ($2 IS NULL OR LOWER(w.name) LIKE $2)";
    let rows: Vec<AdminWorkspaceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT w.id, w.name, w.industry, u.email AS owner_email, w.status, w.subscription_tier,
                w.call_enabled, w.created_at
         FROM workspaces w JOIN client_users u ON u.id = w.owner_id
         WHERE {filters} ORDER BY w.created_at DESC, w.id LIMIT $3 OFFSET $4"
    )))
    .bind(filter.status.as_deref())
    .bind(search.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM workspaces w WHERE {filters}"
    )))
    .bind(filter.status.as_deref())
    .bind(search.as_deref())
    .fetch_one(&state.db.pool)
    .await?;
    Ok(axum::Json(
        json!({ "workspaces": rows, "total": total, "page": page, "limit": limit }),
    ))
}

async fn show_workspace(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(workspace_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    let workspace = fetch(&state, &workspace_id).await?;
    let owner: (String, String, String) =
        sqlx::query_as("SELECT id, email, name FROM client_users WHERE id = $1")
            .bind(&workspace.owner_id)
            .fetch_one(&state.db.pool)
            .await?;
    let agents: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT id, name, status FROM voice_agents WHERE workspace_id = $1 ORDER BY created_at",
    )
    .bind(&workspace_id)
    .fetch_all(&state.db.pool)
    .await?;
    let members = members_of(&state, &workspace_id).await?;
    let subscription = subscription(&state, &workspace).await?;
    Ok(axum::Json(json!({
        "workspace": workspace,
        "owner": { "id": owner.0, "email": owner.1, "name": owner.2 },
        "members": members,
        "agents": agents.into_iter().map(|(id, name, status)| json!({"id": id, "name": name, "status": status})).collect::<Vec<_>>(),
        "subscription": subscription,
    })))
}

#[derive(Deserialize)]
struct UpdateWorkspace {
    name: Option<String>,
    status: Option<String>,
    subscription_tier: Option<String>,
    /// The company-level calling switch (call-feature §8): platform admins only.
    call_enabled: Option<bool>,
}

async fn update_workspace(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(workspace_id): Path<String>,
    Json(body): Json<UpdateWorkspace>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let mut problems = Problems::default();
    if body
        .name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
    {
        problems.add("name", "must be 1-200 characters");
    }
    if body
        .status
        .as_deref()
        .is_some_and(|s| !["active", "trial", "suspended", "cancelled"].contains(&s))
    {
        problems.add(
            "status",
            "must be one of active, trial, suspended, cancelled",
        );
    }
    if body
        .subscription_tier
        .as_deref()
        .is_some_and(|t| !["starter", "professional", "enterprise"].contains(&t))
    {
        problems.add(
            "subscription_tier",
            "must be one of starter, professional, enterprise",
        );
    }
    problems.into_result()?;
    fetch(&state, &workspace_id).await?;
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE workspaces SET name = COALESCE($1, name), status = COALESCE($2, status),
                subscription_tier = COALESCE($3, subscription_tier),
                call_enabled = COALESCE($4, call_enabled), updated_at = $5
         WHERE id = $6",
    )
    .bind(body.name.as_deref().map(str::trim))
    .bind(body.status.as_deref())
    .bind(body.subscription_tier.as_deref())
    .bind(body.call_enabled.map(i64::from))
    .bind(now_ms())
    .bind(&workspace_id)
    .execute(&mut *tx)
    .await?;
    let details = json!({
        "name": body.name, "status": body.status,
        "subscription_tier": body.subscription_tier, "call_enabled": body.call_enabled,
    });
    audit::record(
        &mut tx,
        &admin,
        "updated_workspace",
        ("workspace", &workspace_id),
        details,
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "workspace": fetch(&state, &workspace_id).await? }),
    ))
}

#[derive(Deserialize)]
struct SuspendBody {
    reason: Option<String>,
}

async fn set_status(
    state: &AppState,
    admin: &CurrentAdmin,
    ip: &str,
    workspace_id: &str,
    status: &str,
    reason: Option<&str>,
) -> ApiResult<WorkspaceView> {
    admin.require(AdminRole::Admin)?;
    fetch(state, workspace_id).await?;
    let mut tx = state.db.pool.begin().await?;
    sqlx::query(
        "UPDATE workspaces SET status = $1, suspended_reason = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(reason)
    .bind(now_ms())
    .bind(workspace_id)
    .execute(&mut *tx)
    .await?;
    let action = if status == "suspended" {
        "suspended_workspace"
    } else {
        "activated_workspace"
    };
    audit::record(
        &mut tx,
        admin,
        action,
        ("workspace", workspace_id),
        json!({ "reason": reason }),
        ip,
    )
    .await?;
    tx.commit().await?;
    fetch(state, workspace_id).await
}

async fn suspend_workspace(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(workspace_id): Path<String>,
    Json(body): Json<SuspendBody>,
) -> ApiResult<impl IntoResponse> {
    if body
        .reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > 1000)
    {
        return Err(ApiError::invalid(
            "reason",
            "must be at most 1000 characters",
        ));
    }
    let workspace = set_status(
        &state,
        &admin,
        &ip,
        &workspace_id,
        "suspended",
        body.reason.as_deref(),
    )
    .await?;
    Ok(axum::Json(json!({ "workspace": workspace })))
}

async fn activate_workspace(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(workspace_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let workspace = set_status(&state, &admin, &ip, &workspace_id, "active", None).await?;
    Ok(axum::Json(json!({ "workspace": workspace })))
}

#[derive(Serialize, sqlx::FromRow)]
struct SettingRow {
    key: String,
    value: String,
    description: Option<String>,
    updated_at: i64,
}

async fn list_settings(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    let rows: Vec<SettingRow> = sqlx::query_as(
        "SELECT key, value, description, updated_at FROM platform_settings ORDER BY key",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let settings: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "key": r.key,
                "value": serde_json::from_str::<Value>(&r.value).unwrap_or(Value::String(r.value)),
                "description": r.description,
                "updated_at": r.updated_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "settings": settings })))
}

#[derive(Deserialize)]
struct SettingUpdate {
    key: String,
    value: Value,
}

#[derive(Deserialize)]
struct SettingsBody {
    settings: Vec<SettingUpdate>,
}

async fn update_settings(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Json(body): Json<SettingsBody>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::SuperAdmin)?;
    let mut problems = Problems::default();
    for (i, s) in body.settings.iter().enumerate() {
        if let Err(why) = settings::validate(&s.key, &s.value) {
            problems.add(
                &format!("settings[{i}].value"),
                &format!("{}: {why}", s.key),
            );
        }
    }
    problems.into_result()?;
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    for s in &body.settings {
        sqlx::query(
            "INSERT INTO platform_settings (key, value, updated_by_admin_id, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET value = $2, updated_by_admin_id = $3, updated_at = $4",
        )
        .bind(&s.key)
        .bind(s.value.to_string())
        .bind(&admin.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            &admin,
            "updated_platform_setting",
            ("platform_setting", &s.key),
            json!({ "value": s.value }),
            &ip,
        )
        .await?;
    }
    tx.commit().await?;
    list_settings(State(state), admin).await
}

#[derive(Deserialize)]
struct LogFilter {
    admin_id: Option<String>,
    action: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    #[serde(flatten)]
    page: Page,
}

#[derive(Serialize, sqlx::FromRow)]
struct LogRow {
    id: String,
    admin_email: String,
    action: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    details: Option<String>,
    timestamp: i64,
}

async fn activity_log(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(filter): Query<LogFilter>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let (limit, offset, page) = filter.page.bounds();
    let filters = "($1 IS NULL OR l.admin_id = $1) AND ($2 IS NULL OR l.action = $2)
                   AND ($3 IS NULL OR l.timestamp >= $3) AND ($4 IS NULL OR l.timestamp <= $4)";
    let rows: Vec<LogRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT l.id, a.email AS admin_email, l.action, l.resource_type, l.resource_id, l.details, l.timestamp
         FROM admin_activity_logs l JOIN platform_admins a ON a.id = l.admin_id
         WHERE {filters} ORDER BY l.timestamp DESC, l.id DESC LIMIT $5 OFFSET $6"
    )))
    .bind(filter.admin_id.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM admin_activity_logs l WHERE {filters}"
    )))
    .bind(filter.admin_id.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .fetch_one(&state.db.pool)
    .await?;
    let logs: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let details = r
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            json!({
                "id": r.id, "admin_email": r.admin_email, "action": r.action,
                "resource_type": r.resource_type, "resource_id": r.resource_id,
                "details": details, "timestamp": r.timestamp,
            })
        })
        .collect();
    Ok(axum::Json(
        json!({ "logs": logs, "total": total, "page": page }),
    ))
}
