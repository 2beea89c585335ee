//! A workspace's voice providers and routing strategy (seed Phase II "Voice Provider
//! Configuration (Client)"; issue 6 "Keys"). Owners and admins change them; every member
//! reads. A bring-your-own key is sealed under the master key on the way in and never
//! leaves again: responses say only `is_configured`.
//!
//! Also the input checks the admin provider endpoints share: provider names, key
//! changes, config objects, and body parsing whose errors never echo a submitted value.

use super::auth::Problems;
use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{WorkspaceMember, WorkspaceRole};
use super::json::Json;
use crate::crypto::SealedAt;
use crate::state::AppState;
use crate::util::{new_id, now_ms};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{workspace_id}/voice/providers",
            get(list).post(create),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}",
            axum::routing::patch(update).put(upsert).delete(remove),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/voice/strategy",
            get(show_strategy).put(put_strategy),
        )
}

/// The provider names a config may use: the shared `ProviderKind`s.
pub const PROVIDER_NAMES: [&str; 5] = ["openai", "gemini", "elevenlabs", "deepgram", "echo"];

pub(super) fn check_provider(problems: &mut Problems, field: &str, name: &str) {
    if !PROVIDER_NAMES.contains(&name) {
        problems.add(
            field,
            "must be one of openai, gemini, elevenlabs, deepgram, echo",
        );
    }
}

/// Whether `model` is 1-100 of `[A-Za-z0-9._:/-]`: every catalogue name fits, and nothing
/// that means something in a URL (`&`, `=`, `#`, `?`, `%`, spaces) can reach a provider's
/// WebSocket URL (security review L2).
pub(super) fn model_name_ok(model: &str) -> bool {
    (1..=100).contains(&model.len())
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// A model a tenant names — an agent's `voice_config.model`, a provider config's `model` —
/// must be an active `realtime_models` row of `provider` (agents call Gemini `google`),
/// so every call is priced from the catalogue and cannot ask the platform's account for a
/// model (or an ElevenLabs agent) no one priced (security review M1). Absent, `null` or
/// `""` means the platform's default.
pub(super) async fn check_model(
    state: &AppState,
    problems: &mut Problems,
    field: &str,
    provider: &str,
    model: Option<&Value>,
) -> ApiResult<()> {
    let model = match model {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(m)) if m.is_empty() => return Ok(()),
        Some(Value::String(m)) => m,
        Some(_) => {
            problems.add(field, "must be a string");
            return Ok(());
        }
    };
    if !model_name_ok(model) {
        problems.add(
            field,
            "must be 1-100 letters, digits, '.', '_', ':', '/' or '-'",
        );
        return Ok(());
    }
    let catalogue_provider = if provider == "google" {
        "gemini"
    } else {
        provider
    };
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM realtime_models WHERE provider = $1 AND model_name = $2 AND is_active = 1",
    )
    .bind(catalogue_provider)
    .bind(model)
    .fetch_optional(&state.db.pool)
    .await?;
    if found.is_none() {
        problems.add(
            field,
            &format!("is not an active {catalogue_provider} model of the model catalogue"),
        );
    }
    Ok(())
}

/// The tenant-chosen names in a workspace provider config: `model` as [`check_model`];
/// ElevenLabs' `agent_id` (an agent on the key's account) only for safe characters.
async fn check_config_names(
    state: &AppState,
    problems: &mut Problems,
    provider: &str,
    config: Option<&Value>,
) -> ApiResult<()> {
    let Some(config) = config.and_then(Value::as_object) else {
        return Ok(());
    };
    if !PROVIDER_NAMES.contains(&provider) {
        return Ok(());
    }
    check_model(
        state,
        problems,
        "config.model",
        provider,
        config.get("model"),
    )
    .await?;
    if provider == "elevenlabs"
        && let Some(agent_id) = config.get("agent_id")
        && !agent_id
            .as_str()
            .is_some_and(|a| a.is_empty() || model_name_ok(a))
    {
        problems.add(
            "config.agent_id",
            "must be 1-100 letters, digits, '.', '_', ':', '/' or '-'",
        );
    }
    Ok(())
}

const MAX_KEY_CHARS: usize = 4096;
const MAX_CONFIG_BYTES: usize = 16 * 1024;

/// `None` when the field is absent, `Some(None)` when it is `null`: a key field has three
/// meanings (keep, clear, set).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// What a request does to a stored key.
pub(super) enum KeyChange {
    Keep,
    Clear,
    Set(String),
}

/// Absent keeps, `null` or `""` clears, anything else is the new key. Messages never
/// contain the key.
pub(super) fn key_change(problems: &mut Problems, given: Option<Option<String>>) -> KeyChange {
    match given {
        None => KeyChange::Keep,
        Some(None) => KeyChange::Clear,
        Some(Some(key)) => {
            let key = key.trim();
            if key.is_empty() {
                KeyChange::Clear
            } else if key.chars().count() > MAX_KEY_CHARS {
                problems.add("api_key", "must be at most 4096 characters");
                KeyChange::Keep
            } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.add("api_key", "must not contain spaces or control characters");
                KeyChange::Keep
            } else {
                KeyChange::Set(key.to_owned())
            }
        }
    }
}

/// A provider's `config`: a JSON object of modest size, stored as text.
pub(super) fn check_config(problems: &mut Problems, config: Option<&Value>) -> Option<String> {
    let config = config?;
    match config {
        Value::Object(_) => {
            let text = config.to_string();
            if text.len() > MAX_CONFIG_BYTES {
                problems.add("config", "must be at most 16 KiB of JSON");
                None
            } else {
                Some(text)
            }
        }
        _ => {
            problems.add("config", "must be an object");
            None
        }
    }
}

pub(super) fn check_priority(problems: &mut Problems, field: &str, priority: Option<i64>) {
    if priority.is_some_and(|p| !(0..=10_000).contains(&p)) {
        problems.add(field, "must be between 0 and 10000 (lower is tried first)");
    }
}

/// Deserializes a body already read as JSON. serde quotes the offending string value in
/// some messages, and that value could be a key typed into the wrong field: quoted text
/// is cut out of the message.
pub(super) fn parse_body<T: DeserializeOwned>(body: Value) -> ApiResult<T> {
    serde_json::from_value(body).map_err(|e| ApiError::BadRequest {
        code: "invalid_body",
        message: format!(
            "the body has the wrong shape: {}",
            without_quoted(&e.to_string())
        ),
    })
}

fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

pub(super) fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Object(Map::new()))
}

/// True if `e` is a CHECK constraint violation (a state the schema forbids).
pub(super) fn is_check_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::CheckViolation)
}

// ---------------------------------------------------------------------------------------
// Workspace provider configs
// ---------------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct ConfigRow {
    provider: String,
    uses_platform_key: i64,
    api_key_encrypted: Option<String>,
    config: String,
    priority: i64,
    is_enabled: i64,
    created_at: i64,
    updated_at: i64,
}

const CONFIG_SELECT: &str =
    "SELECT provider, uses_platform_key, api_key_encrypted, config, priority, is_enabled,
        created_at, updated_at
 FROM workspace_provider_configs";

/// A config as the API shows it: whether a key is stored, never the key.
fn config_json(row: ConfigRow) -> Value {
    json!({
        "provider": row.provider,
        "uses_platform_key": row.uses_platform_key != 0,
        "is_configured": row.api_key_encrypted.is_some(),
        "config": parse_json_text(&row.config),
        "priority": row.priority,
        "is_enabled": row.is_enabled != 0,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

async fn fetch_config(
    state: &AppState,
    workspace_id: &str,
    provider: &str,
) -> ApiResult<Option<ConfigRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{CONFIG_SELECT} WHERE workspace_id = $1 AND provider = $2"
    )))
    .bind(workspace_id)
    .bind(provider)
    .fetch_optional(&state.db.pool)
    .await?)
}

async fn list(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let rows: Vec<ConfigRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{CONFIG_SELECT} WHERE workspace_id = $1 ORDER BY priority, provider"
    )))
    .bind(&member.workspace_id)
    .fetch_all(&state.db.pool)
    .await?;
    let providers: Vec<Value> = rows.into_iter().map(config_json).collect();
    Ok(axum::Json(json!({ "providers": providers })))
}

#[derive(Deserialize)]
struct CreateBody {
    provider: Option<String>,
    uses_platform_key: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    priority: Option<i64>,
    is_enabled: Option<bool>,
    config: Option<Value>,
}

/// The fields PATCH and PUT may change; all optional.
#[derive(Deserialize)]
struct UpdateBody {
    uses_platform_key: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    priority: Option<i64>,
    is_enabled: Option<bool>,
    config: Option<Value>,
}

/// A workspace that does not use the platform key must bring one.
fn check_own_key(problems: &mut Problems, uses_platform_key: bool, has_key: bool) {
    if !uses_platform_key && !has_key {
        problems.add(
            "api_key",
            "is required when uses_platform_key is false (bring your own key)",
        );
    }
}

fn store_error(e: sqlx::Error) -> ApiError {
    if is_unique_violation(&e) {
        ApiError::conflict(
            "provider_exists",
            "this workspace already configures that provider; update it instead",
        )
    } else if is_check_violation(&e) {
        ApiError::invalid(
            "api_key",
            "is required when uses_platform_key is false (bring your own key)",
        )
    } else {
        e.into()
    }
}

async fn create(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let body: CreateBody = parse_body(body)?;
    let mut problems = Problems::default();
    let provider = problems.required("provider", &body.provider).to_owned();
    if !provider.is_empty() {
        check_provider(&mut problems, "provider", &provider);
    }
    let key = match key_change(&mut problems, body.api_key) {
        KeyChange::Set(key) => Some(key),
        KeyChange::Keep | KeyChange::Clear => None,
    };
    // Giving a key without saying otherwise means using it.
    let uses_platform_key = body.uses_platform_key.unwrap_or(key.is_none());
    check_own_key(&mut problems, uses_platform_key, key.is_some());
    check_priority(&mut problems, "priority", body.priority);
    let config = check_config(&mut problems, body.config.as_ref());
    check_config_names(&state, &mut problems, &provider, body.config.as_ref()).await?;
    problems.into_result()?;
    insert_config(
        &state,
        &member.workspace_id,
        &provider,
        Settings {
            uses_platform_key,
            sealed: key.map(|k| {
                let at = SealedAt::workspace_provider_key(&member.workspace_id, &provider);
                state.config.master_key.seal_at(&k, &at)
            }),
            priority: body.priority.unwrap_or(0),
            is_enabled: body.is_enabled.unwrap_or(true),
            config: config.unwrap_or_else(|| "{}".into()),
        },
    )
    .await?;
    let row = fetch_config(&state, &member.workspace_id, &provider)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "provider": config_json(row) })),
    ))
}

/// A config row's whole writable state.
struct Settings {
    uses_platform_key: bool,
    sealed: Option<String>,
    priority: i64,
    is_enabled: bool,
    config: String,
}

async fn insert_config(
    state: &AppState,
    workspace_id: &str,
    provider: &str,
    s: Settings,
) -> ApiResult<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workspace_provider_configs (id, workspace_id, provider, uses_platform_key, api_key_encrypted,
                                                config, priority, is_enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(new_id("wpc"))
    .bind(workspace_id)
    .bind(provider)
    .bind(i64::from(s.uses_platform_key))
    .bind(s.sealed)
    .bind(s.config)
    .bind(s.priority)
    .bind(i64::from(s.is_enabled))
    .bind(now)
    .execute(&state.db.pool)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Applies `body` to the stored row (or to defaults when `existing` is `None`).
/// `problems` holds what the caller already found wrong.
fn merge(
    state: &AppState,
    at: &SealedAt,
    mut problems: Problems,
    existing: Option<&ConfigRow>,
    body: UpdateBody,
) -> ApiResult<Settings> {
    let change = key_change(&mut problems, body.api_key);
    check_priority(&mut problems, "priority", body.priority);
    let config = check_config(&mut problems, body.config.as_ref());
    let old_sealed = existing.and_then(|r| r.api_key_encrypted.clone());
    let (sealed, key_given) = match change {
        KeyChange::Keep => (old_sealed, false),
        KeyChange::Clear => (None, false),
        KeyChange::Set(key) => (Some(state.config.master_key.seal_at(&key, at)), true),
    };
    let uses_platform_key = match (body.uses_platform_key, existing) {
        (Some(u), _) => u,
        (None, Some(row)) => row.uses_platform_key != 0,
        (None, None) => !key_given,
    };
    check_own_key(&mut problems, uses_platform_key, sealed.is_some());
    problems.into_result()?;
    Ok(Settings {
        uses_platform_key,
        sealed,
        priority: body.priority.or(existing.map(|r| r.priority)).unwrap_or(0),
        is_enabled: body
            .is_enabled
            .unwrap_or(existing.is_none_or(|r| r.is_enabled != 0)),
        config: config
            .or(existing.map(|r| r.config.clone()))
            .unwrap_or_else(|| "{}".into()),
    })
}

async fn write_update(
    state: &AppState,
    workspace_id: &str,
    provider: &str,
    s: Settings,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE workspace_provider_configs
         SET uses_platform_key = $1, api_key_encrypted = $2, config = $3, priority = $4,
             is_enabled = $5, updated_at = $6
         WHERE workspace_id = $7 AND provider = $8",
    )
    .bind(i64::from(s.uses_platform_key))
    .bind(s.sealed)
    .bind(s.config)
    .bind(s.priority)
    .bind(i64::from(s.is_enabled))
    .bind(now_ms())
    .bind(workspace_id)
    .bind(provider)
    .execute(&state.db.pool)
    .await
    .map_err(store_error)?;
    Ok(())
}

async fn respond(state: &AppState, workspace_id: &str, provider: &str) -> ApiResult<Value> {
    let row = fetch_config(state, workspace_id, provider)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    Ok(json!({ "provider": config_json(row) }))
}

/// PATCH: changes a provider the workspace already configures.
async fn update(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, provider)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let body: UpdateBody = parse_body(body)?;
    let existing = fetch_config(&state, &member.workspace_id, &provider)
        .await?
        .ok_or(ApiError::NotFound("provider"))?;
    let mut problems = Problems::default();
    check_config_names(&state, &mut problems, &provider, body.config.as_ref()).await?;
    let at = SealedAt::workspace_provider_key(&member.workspace_id, &provider);
    let settings = merge(&state, &at, problems, Some(&existing), body)?;
    write_update(&state, &member.workspace_id, &provider, settings).await?;
    Ok(axum::Json(
        respond(&state, &member.workspace_id, &provider).await?,
    ))
}

/// PUT (the seed's verb): creates the provider's config or changes it.
async fn upsert(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, provider)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let body: UpdateBody = parse_body(body)?;
    let mut problems = Problems::default();
    check_provider(&mut problems, "provider", &provider);
    problems.into_result()?;
    let existing = fetch_config(&state, &member.workspace_id, &provider).await?;
    let mut problems = Problems::default();
    check_config_names(&state, &mut problems, &provider, body.config.as_ref()).await?;
    let at = SealedAt::workspace_provider_key(&member.workspace_id, &provider);
    let settings = merge(&state, &at, problems, existing.as_ref(), body)?;
    let status = if existing.is_some() {
        write_update(&state, &member.workspace_id, &provider, settings).await?;
        StatusCode::OK
    } else {
        insert_config(&state, &member.workspace_id, &provider, settings).await?;
        StatusCode::CREATED
    };
    Ok((
        status,
        axum::Json(respond(&state, &member.workspace_id, &provider).await?),
    ))
}

async fn remove(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, provider)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let deleted = sqlx::query(
        "DELETE FROM workspace_provider_configs WHERE workspace_id = $1 AND provider = $2",
    )
    .bind(&member.workspace_id)
    .bind(&provider)
    .execute(&state.db.pool)
    .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("provider"));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Strategy
// ---------------------------------------------------------------------------------------

const STRATEGIES: [&str; 5] = [
    "auto",
    "cost_optimized",
    "quality_first",
    "specific",
    "custom",
];

async fn show_strategy(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        strategy_json(&state, &member.workspace_id).await?,
    ))
}

async fn strategy_json(state: &AppState, workspace_id: &str) -> ApiResult<Value> {
    let row: Option<(String, Option<String>, String, i64, i64)> = sqlx::query_as(
        "SELECT strategy, preferred_provider, config, fallback_enabled, updated_at
         FROM workspace_provider_strategies WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .fetch_optional(&state.db.pool)
    .await?;
    // A workspace that never chose routes as `auto` (issue 6).
    Ok(match row {
        Some((strategy, preferred, config, fallback, updated)) => json!({
            "strategy": strategy,
            "preferred_provider": preferred,
            "config": parse_json_text(&config),
            "fallback_enabled": fallback != 0,
            "updated_at": updated,
        }),
        None => json!({
            "strategy": "auto",
            "preferred_provider": null,
            "config": {},
            "fallback_enabled": true,
            "updated_at": null,
        }),
    })
}

#[derive(Deserialize)]
struct StrategyBody {
    strategy: Option<String>,
    preferred_provider: Option<String>,
    config: Option<Value>,
    fallback_enabled: Option<bool>,
}

/// A provider list of a `custom` strategy: known names, each once.
fn provider_list(problems: &mut Problems, field: &str, value: &Value) -> Vec<String> {
    let Some(items) = value.as_array() else {
        problems.add(field, "must be a list of provider names");
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(name) = item.as_str().map(str::trim) else {
            problems.add(&format!("{field}[{i}]"), "must be a provider name");
            continue;
        };
        check_provider(problems, &format!("{field}[{i}]"), name);
        if names.iter().any(|n| n == name) {
            problems.add(&format!("{field}[{i}]"), "is listed twice");
        }
        names.push(name.to_owned());
    }
    names
}

/// Validates a `custom` strategy's config and returns it in the form the router reads:
/// `{"order": [...], "by_source": {"twilio": [...], "web": [...]}}`. `providers` is
/// accepted for `order` and `phone` for `twilio`.
fn custom_config(problems: &mut Problems, config: Option<&Value>) -> Value {
    let Some(obj) = config.and_then(Value::as_object) else {
        problems.add(
            "config",
            "must be an object with an ordered \"providers\" list (and optionally \"by_source\")",
        );
        return json!({});
    };
    let mut out = Map::new();
    let order = match (obj.get("providers"), obj.get("order")) {
        (Some(_), Some(_)) => {
            problems.add("config.providers", "give providers or order, not both");
            Vec::new()
        }
        (Some(v), None) => provider_list(problems, "config.providers", v),
        (None, Some(v)) => provider_list(problems, "config.order", v),
        (None, None) => Vec::new(),
    };
    let mut listed = !order.is_empty();
    if !order.is_empty() {
        out.insert("order".into(), json!(order));
    }
    match obj.get("by_source") {
        None | Some(Value::Null) => {}
        Some(Value::Object(sources)) => {
            let mut by_source = Map::new();
            for (source, list) in sources {
                let canonical = match source.as_str() {
                    "phone" | "twilio" => "twilio",
                    "web" => "web",
                    _ => {
                        problems.add(
                            &format!("config.by_source.{source}"),
                            "is not a call source: use phone or web",
                        );
                        continue;
                    }
                };
                if by_source.contains_key(canonical) {
                    problems.add(
                        &format!("config.by_source.{source}"),
                        "phone and twilio are the same source; give one",
                    );
                    continue;
                }
                let names = provider_list(problems, &format!("config.by_source.{source}"), list);
                listed |= !names.is_empty();
                by_source.insert(canonical.into(), json!(names));
            }
            out.insert("by_source".into(), Value::Object(by_source));
        }
        Some(_) => problems.add("config.by_source", "must be an object"),
    }
    if !listed && problems.0.is_empty() {
        problems.add(
            "config.providers",
            "a custom strategy needs at least one provider (in providers or by_source)",
        );
    }
    Value::Object(out)
}

async fn put_strategy(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let body: StrategyBody = parse_body(body)?;
    let mut problems = Problems::default();
    let strategy = problems.required("strategy", &body.strategy).to_owned();
    if !strategy.is_empty() && !STRATEGIES.contains(&strategy.as_str()) {
        problems.add(
            "strategy",
            "must be one of auto, cost_optimized, quality_first, specific, custom",
        );
    }
    let preferred = body.preferred_provider.as_deref().map(str::trim);
    if let Some(p) = preferred {
        check_provider(&mut problems, "preferred_provider", p);
    }
    if body
        .config
        .as_ref()
        .is_some_and(|c| !c.is_object() && !c.is_null())
    {
        problems.add("config", "must be an object");
    }
    let config = match strategy.as_str() {
        "specific" => {
            if preferred.is_none() {
                problems.add(
                    "preferred_provider",
                    "is required for the specific strategy",
                );
            }
            json!({})
        }
        "custom" if problems.0.is_empty() => custom_config(&mut problems, body.config.as_ref()),
        _ => json!({}),
    };
    problems.into_result()?;
    // Only `specific` routes by preferred_provider; elsewhere a stale one would mislead.
    let preferred = preferred.filter(|_| strategy == "specific");
    let fallback_enabled = body.fallback_enabled.unwrap_or(true);
    sqlx::query(
        "INSERT INTO workspace_provider_strategies (workspace_id, strategy, preferred_provider, config, fallback_enabled, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (workspace_id) DO UPDATE SET strategy = $2, preferred_provider = $3, config = $4,
             fallback_enabled = $5, updated_at = $6",
    )
    .bind(&member.workspace_id)
    .bind(&strategy)
    .bind(preferred)
    .bind(config.to_string())
    .bind(i64::from(fallback_enabled))
    .bind(now_ms())
    .execute(&state.db.pool)
    .await?;
    Ok(axum::Json(
        strategy_json(&state, &member.workspace_id).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_plain_characters() {
        for ok in [
            "gpt-realtime",
            "gemini-2.5-flash-native-audio-preview-09-2025",
            "ft:gpt-4o:acme:x:1",
            "models/gemini-live",
        ] {
            assert!(model_name_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "gpt-realtime&foo=bar",
            "a#b",
            "a b",
            "a%26",
            "a?b",
            "é",
            &"x".repeat(101),
        ] {
            assert!(!model_name_ok(bad), "{bad}");
        }
        assert!(model_name_ok(&"x".repeat(100)));
    }

    #[test]
    fn quoted_values_are_cut_from_messages() {
        assert_eq!(
            without_quoted(r#"invalid type: string "sk-secret", expected i64"#),
            r#"invalid type: string "…", expected i64"#
        );
        assert_eq!(without_quoted("missing field `x`"), "missing field `x`");
    }

    #[test]
    fn custom_config_takes_providers_and_phone_and_stores_the_router_form() {
        let mut problems = Problems::default();
        let out = custom_config(
            &mut problems,
            Some(&json!({"providers": ["gemini", "openai"], "by_source": {"phone": ["echo"]}})),
        );
        assert!(problems.0.is_empty());
        assert_eq!(
            out,
            json!({"order": ["gemini", "openai"], "by_source": {"twilio": ["echo"]}})
        );
    }

    #[test]
    fn custom_config_refuses_unknown_duplicate_and_missing_providers() {
        let mut problems = Problems::default();
        custom_config(
            &mut problems,
            Some(&json!({"providers": ["openai", "openai", "vapi"], "by_source": {"sms": []}})),
        );
        let fields: Vec<&str> = problems.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "config.providers[1]",
                "config.providers[2]",
                "config.by_source.sms"
            ]
        );
        let mut problems = Problems::default();
        custom_config(&mut problems, Some(&json!({})));
        assert_eq!(problems.0.len(), 1);
    }
}
