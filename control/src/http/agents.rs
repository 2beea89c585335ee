//! Voice agents (seed Phase II "Voice Agents (Client)"). Owners and admins create, change,
//! activate, pause and delete; every member reads. An agent's `config` holds its
//! instructions, tools and call settings (call-feature §9), validated on every write.

use super::auth::Problems;
use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{WorkspaceMember, WorkspaceRole};
use super::json::Json;
use super::voice_providers::check_model;
use crate::state::AppState;
use crate::util::{new_id, now_ms, random_token};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use vocalized_shared::call_settings::{CallSettings, VOICE_PROVIDERS};
use vocalized_shared::plan::ToolSpec;

pub fn router() -> Router<AppState> {
    let base = "/api/v1/workspaces/{workspace_id}/agents";
    Router::new()
        .route(base, get(list).post(create))
        .route(
            "/api/v1/workspaces/{workspace_id}/agents/{agent_id}",
            get(show).put(update).delete(remove),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/activate",
            post(activate),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/pause",
            post(pause),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/widget-key",
            post(rotate_widget_key),
        )
}

const MAX_INSTRUCTIONS_CHARS: usize = 20_000;

/// The agent's config as stored: every field present, call settings with defaults filled.
fn normalize_config(problems: &mut Problems, config: Option<&Value>) -> Value {
    let empty = json!({});
    let config = config.unwrap_or(&empty);
    let Some(obj) = config.as_object() else {
        problems.add("config", "must be an object");
        return empty;
    };
    let instructions = match obj.get("instructions") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= MAX_INSTRUCTIONS_CHARS => s.clone(),
        Some(Value::String(_)) => {
            problems.add("config.instructions", "must be at most 20000 characters");
            String::new()
        }
        Some(_) => {
            problems.add("config.instructions", "must be a string");
            String::new()
        }
    };
    let call = match obj.get("call") {
        None | Some(Value::Null) => CallSettings::default(),
        Some(v) => match serde_json::from_value::<CallSettings>(v.clone()) {
            Ok(call) => {
                problems.0.extend(call.validate("config.call"));
                call
            }
            Err(e) => {
                problems.add("config.call", &format!("has the wrong shape: {e}"));
                CallSettings::default()
            }
        },
    };
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => match serde_json::from_value::<Vec<ToolSpec>>(v.clone()) {
            Ok(tools) => {
                for (i, tool) in tools.iter().enumerate() {
                    let name_ok = !tool.name.is_empty()
                        && tool.name.len() <= 64
                        && tool
                            .name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !name_ok {
                        problems.add(
                            &format!("config.tools[{i}].name"),
                            "must be 1-64 letters, digits, _ or -",
                        );
                    }
                    if !tool.parameters.is_object() {
                        problems.add(
                            &format!("config.tools[{i}].parameters"),
                            "must be a JSON Schema object",
                        );
                    }
                }
                tools
            }
            Err(e) => {
                problems.add("config.tools", &format!("has the wrong shape: {e}"));
                Vec::new()
            }
        },
    };
    json!({ "instructions": instructions, "call": call, "tools": tools })
}

fn check_provider(problems: &mut Problems, provider: &str) {
    if !VOICE_PROVIDERS.contains(&provider) {
        problems.add(
            "voice_provider",
            "must be one of openai, google, elevenlabs, deepgram, echo",
        );
    }
}

/// `voice_config` is an object; its `model`, if any, an active catalogue model of the
/// agent's provider (`voice_providers::check_model`).
async fn check_voice_config(
    state: &AppState,
    problems: &mut Problems,
    provider: &str,
    v: Option<&Value>,
) -> ApiResult<()> {
    if v.is_some_and(|v| !v.is_object()) {
        problems.add("voice_config", "must be an object");
    } else if VOICE_PROVIDERS.contains(&provider) {
        let model = v.and_then(|v| v.get("model"));
        check_model(state, problems, "voice_config.model", provider, model).await?;
    }
    Ok(())
}

fn check_name(problems: &mut Problems, name: &str) {
    if name.trim().is_empty() {
        problems.add("name", "must not be empty");
    } else if name.chars().count() > 200 {
        problems.add("name", "must be at most 200 characters");
    }
}

/// A phone number id given by the client must be one of this workspace's numbers.
async fn check_number(
    state: &AppState,
    problems: &mut Problems,
    workspace_id: &str,
    phone_number_id: Option<&str>,
) -> ApiResult<()> {
    if let Some(id) = phone_number_id {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT id FROM phone_numbers WHERE id = $1 AND workspace_id = $2")
                .bind(id)
                .bind(workspace_id)
                .fetch_optional(&state.db.pool)
                .await?;
        if found.is_none() {
            problems.add("phone_number_id", "is not a phone number of this workspace");
        }
    }
    Ok(())
}

fn agent_json(row: &sqlx::any::AnyRow) -> ApiResult<Value> {
    use sqlx::Row;
    let parse = |col: &str| -> ApiResult<Value> {
        let text: String = row.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| ApiError::Internal(e.into()))
    };
    Ok(json!({
        "id": row.try_get::<String, _>("id")?,
        "workspace_id": row.try_get::<String, _>("workspace_id")?,
        "name": row.try_get::<String, _>("name")?,
        "status": row.try_get::<String, _>("status")?,
        "phone_number_id": row.try_get::<Option<String>, _>("phone_number_id")?,
        "phone_number": row.try_get::<Option<String>, _>("phone_number")?,
        "template_id": row.try_get::<Option<String>, _>("template_id")?,
        "template_name": row.try_get::<Option<String>, _>("template_name")?,
        "config": parse("config")?,
        "voice_provider": row.try_get::<String, _>("voice_provider")?,
        "voice_config": parse("voice_config")?,
        "enabled_call": row.try_get::<i64, _>("enabled_call")? != 0,
        "enabled_chat": row.try_get::<i64, _>("enabled_chat")? != 0,
        "widget_public_key": row.try_get::<String, _>("widget_public_key")?,
        "created_at": row.try_get::<i64, _>("created_at")?,
        "updated_at": row.try_get::<i64, _>("updated_at")?,
        "activated_at": row.try_get::<Option<i64>, _>("activated_at")?,
    }))
}

const AGENT_SELECT: &str = "SELECT a.id, a.workspace_id, a.name, a.status, a.phone_number_id, p.phone_number,
        a.template_id, t.name AS template_name, a.config, a.voice_provider, a.voice_config,
        a.enabled_call, a.enabled_chat, a.widget_public_key, a.created_at, a.updated_at, a.activated_at
 FROM voice_agents a
 LEFT JOIN phone_numbers p ON p.id = a.phone_number_id
 LEFT JOIN agent_templates t ON t.id = a.template_id";

async fn fetch(state: &AppState, workspace_id: &str, agent_id: &str) -> ApiResult<Value> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{AGENT_SELECT} WHERE a.workspace_id = $1 AND a.id = $2"
    )))
    .bind(workspace_id)
    .bind(agent_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("agent"))?;
    agent_json(&row)
}

async fn list(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{AGENT_SELECT} WHERE a.workspace_id = $1 ORDER BY a.created_at, a.id"
    )))
    .bind(&member.workspace_id)
    .fetch_all(&state.db.pool)
    .await?;
    let agents = rows.iter().map(agent_json).collect::<ApiResult<Vec<_>>>()?;
    Ok(axum::Json(json!({ "agents": agents })))
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    template_id: Option<String>,
    phone_number_id: Option<String>,
    config: Option<Value>,
    voice_provider: Option<String>,
    voice_config: Option<Value>,
    enabled_call: Option<bool>,
    enabled_chat: Option<bool>,
}

/// The plan's agent allowance (`subscription_tiers.max_agents`).
async fn check_agent_allowance(
    conn: &mut sqlx::AnyConnection,
    workspace_id: &str,
) -> ApiResult<()> {
    let (max, count): (Option<i64>, i64) = sqlx::query_as(
        "SELECT t.max_agents, (SELECT COUNT(*) FROM voice_agents a WHERE a.workspace_id = w.id)
         FROM workspaces w JOIN subscription_tiers t ON t.tier_name = w.subscription_tier
         WHERE w.id = $1",
    )
    .bind(workspace_id)
    .fetch_one(conn)
    .await?;
    match max {
        Some(max) if count >= max => Err(ApiError::conflict(
            "plan_limit_reached",
            format!("your plan allows {max} agent(s); upgrade to add more"),
        )),
        _ => Ok(()),
    }
}

fn number_taken() -> ApiError {
    ApiError::conflict(
        "phone_number_in_use",
        "that phone number already routes to another agent",
    )
}

async fn create(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    let name = problems.required("name", &body.name).to_owned();
    if !name.is_empty() {
        check_name(&mut problems, &name);
    }
    let provider = body
        .voice_provider
        .clone()
        .unwrap_or_else(|| "openai".into());
    check_provider(&mut problems, &provider);
    check_voice_config(&state, &mut problems, &provider, body.voice_config.as_ref()).await?;
    let config = normalize_config(&mut problems, body.config.as_ref());
    let (enabled_call, enabled_chat) = (
        body.enabled_call.unwrap_or(true),
        body.enabled_chat.unwrap_or(true),
    );
    if !enabled_call && !enabled_chat {
        problems.add(
            "enabled_call",
            "an agent must be able to take calls or chat (or both)",
        );
    }
    check_number(
        &state,
        &mut problems,
        &member.workspace_id,
        body.phone_number_id.as_deref(),
    )
    .await?;
    if let Some(template_id) = body.template_id.as_deref() {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT id FROM agent_templates WHERE id = $1 AND is_public = 1")
                .bind(template_id)
                .fetch_optional(&state.db.pool)
                .await?;
        if found.is_none() {
            problems.add("template_id", "is not an available template");
        }
    }
    problems.into_result()?;
    // The allowance check and the insert are one step (L12).
    let mut tx = state.db.pool.begin().await?;
    super::workspaces::lock_for_create(&mut tx, &member.workspace_id).await?;
    check_agent_allowance(&mut tx, &member.workspace_id).await?;

    let id = new_id("agt");
    let now = now_ms();
    let voice_config = body.voice_config.unwrap_or_else(|| json!({}));
    let inserted = sqlx::query(
        "INSERT INTO voice_agents (id, workspace_id, phone_number_id, name, template_id, config, voice_provider,
                                   voice_config, status, enabled_chat, enabled_call, widget_public_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, $10, $11, $12, $12)",
    )
    .bind(&id)
    .bind(&member.workspace_id)
    .bind(body.phone_number_id.as_deref())
    .bind(name.trim())
    .bind(body.template_id.as_deref())
    .bind(config.to_string())
    .bind(&provider)
    .bind(voice_config.to_string())
    .bind(i64::from(enabled_chat))
    .bind(i64::from(enabled_call))
    .bind(format!("pk_{}", random_token()))
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(number_taken()),
        other => {
            other?;
        }
    }
    tx.commit().await?;
    let agent = fetch(&state, &member.workspace_id, &id).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "agent": agent }))))
}

async fn show(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let agent = fetch(&state, &member.workspace_id, &agent_id).await?;
    let (total_calls, avg_duration): (i64, Option<f64>) = sqlx::query_as(
        "SELECT COUNT(*), AVG(CAST(duration_seconds AS DOUBLE PRECISION)) FROM calls
         WHERE workspace_id = $1 AND agent_id = $2",
    )
    .bind(&member.workspace_id)
    .bind(&agent_id)
    .fetch_one(&state.db.pool)
    .await?;
    Ok(axum::Json(json!({
        "agent": agent,
        "stats": { "total_calls": total_calls, "avg_duration_seconds": avg_duration },
    })))
}

/// `phone_number_id` may be set to a number, set to `null` to detach, or left out.
#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    config: Option<Value>,
    voice_provider: Option<String>,
    voice_config: Option<Value>,
    #[serde(default, with = "double_option")]
    phone_number_id: Option<Option<String>>,
    enabled_call: Option<bool>,
    enabled_chat: Option<bool>,
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn update(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let current = fetch(&state, &member.workspace_id, &agent_id).await?;
    let mut problems = Problems::default();
    if let Some(name) = body.name.as_deref() {
        check_name(&mut problems, name);
    }
    if let Some(p) = body.voice_provider.as_deref() {
        check_provider(&mut problems, p);
    }
    // The model is checked against the provider it will be used with: a new provider with
    // the stored voice_config, or a new voice_config with the stored provider.
    if body.voice_provider.is_some() || body.voice_config.is_some() {
        let provider = body
            .voice_provider
            .as_deref()
            .or(current["voice_provider"].as_str())
            .unwrap_or_default();
        let voice_config = body
            .voice_config
            .as_ref()
            .unwrap_or(&current["voice_config"]);
        check_voice_config(&state, &mut problems, provider, Some(voice_config)).await?;
    }
    let config = body
        .config
        .as_ref()
        .map(|c| normalize_config(&mut problems, Some(c)));
    let enabled_call = body.enabled_call.unwrap_or(current["enabled_call"] == true);
    let enabled_chat = body.enabled_chat.unwrap_or(current["enabled_chat"] == true);
    if !enabled_call && !enabled_chat {
        problems.add(
            "enabled_call",
            "an agent must be able to take calls or chat (or both)",
        );
    }
    let phone_number_id = match &body.phone_number_id {
        Some(new) => new.clone(),
        None => current["phone_number_id"].as_str().map(str::to_owned),
    };
    if let Some(Some(id)) = &body.phone_number_id {
        check_number(&state, &mut problems, &member.workspace_id, Some(id)).await?;
    }
    problems.into_result()?;

    let updated = sqlx::query(
        "UPDATE voice_agents SET name = COALESCE($1, name), config = COALESCE($2, config),
                voice_provider = COALESCE($3, voice_provider), voice_config = COALESCE($4, voice_config),
                phone_number_id = $5, enabled_call = $6, enabled_chat = $7, updated_at = $8
         WHERE id = $9 AND workspace_id = $10",
    )
    .bind(body.name.as_deref().map(str::trim))
    .bind(config.map(|c| c.to_string()))
    .bind(body.voice_provider.as_deref())
    .bind(body.voice_config.map(|v| v.to_string()))
    .bind(phone_number_id)
    .bind(i64::from(enabled_call))
    .bind(i64::from(enabled_chat))
    .bind(now_ms())
    .bind(&agent_id)
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await;
    match updated {
        Err(e) if is_unique_violation(&e) => return Err(number_taken()),
        other => {
            other?;
        }
    }
    Ok(axum::Json(
        json!({ "agent": fetch(&state, &member.workspace_id, &agent_id).await? }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    member.require(WorkspaceRole::Admin)?;
    let deleted = sqlx::query("DELETE FROM voice_agents WHERE id = $1 AND workspace_id = $2")
        .bind(&agent_id)
        .bind(&member.workspace_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ApiError::NotFound("agent"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: &AppState,
    member: &WorkspaceMember,
    agent_id: &str,
    status: &str,
) -> ApiResult<Value> {
    member.require(WorkspaceRole::Admin)?;
    let now = now_ms();
    let changed = sqlx::query(
        "UPDATE voice_agents SET status = $1, updated_at = $2,
                activated_at = CASE WHEN $1 = 'live' THEN $2 ELSE activated_at END
         WHERE id = $3 AND workspace_id = $4",
    )
    .bind(status)
    .bind(now)
    .bind(agent_id)
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(ApiError::NotFound("agent"));
    }
    fetch(state, &member.workspace_id, agent_id).await
}

async fn activate(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let agent = set_status(&state, &member, &agent_id, "live").await?;
    Ok(axum::Json(json!({ "agent": agent })))
}

async fn pause(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let agent = set_status(&state, &member, &agent_id, "paused").await?;
    Ok(axum::Json(json!({ "agent": agent })))
}

/// Issues a new public widget key; pages embedding the old one stop working.
async fn rotate_widget_key(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, agent_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let key = format!("pk_{}", random_token());
    let changed = sqlx::query(
        "UPDATE voice_agents SET widget_public_key = $1, updated_at = $2 WHERE id = $3 AND workspace_id = $4",
    )
    .bind(&key)
    .bind(now_ms())
    .bind(&agent_id)
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(ApiError::NotFound("agent"));
    }
    Ok(axum::Json(json!({ "widget_public_key": key })))
}
