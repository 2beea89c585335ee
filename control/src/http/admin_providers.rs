//! The platform's voice providers (seed Phase II "Voice AI Gateway Management (Admin)"):
//! the platform keys, priorities, prices and URLs every workspace routes through unless
//! it brings its own key. support reads; admin and super_admin write, and every write is
//! audited in its transaction. Where a provider's keys go (`base_url`) is super_admin's
//! alone (security review M2): an admin pointing it at their own server would receive the
//! platform's key and every workspace's own key on the next calls. Clearing it (back to
//! the provider's default) stays an admin's job. Keys are sealed on the way in and never shown again, not
//! even masked, and never written to the audit trail.

use super::auth::Problems;
use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{AdminRole, ClientIp, CurrentAdmin};
use super::json::Json;
use super::voice_providers::{
    KeyChange, check_config, check_priority, check_provider, key_change, parse_body,
    parse_json_text, present,
};
use crate::audit;
use crate::crypto::SealedAt;
use crate::state::AppState;
use crate::util::now_ms;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/providers", get(list).post(create))
        .route("/api/v1/admin/providers/health", get(health))
        .route("/api/v1/admin/providers/costs", get(costs))
        .route("/api/v1/admin/providers/routing", put(routing))
        .route(
            "/api/v1/admin/providers/{provider}",
            get(show).patch(update).put(update).delete(remove),
        )
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    provider: String,
    region: String,
    priority: i64,
    is_enabled: i64,
    base_url: Option<String>,
    cost_per_minute_micros: i64,
    config: String,
    api_key_encrypted: Option<String>,
    created_at: i64,
    updated_at: i64,
    health_status: Option<String>,
    last_check_at: Option<i64>,
}

const PROVIDER_SELECT: &str = "SELECT p.provider, p.region, p.priority, p.is_enabled, p.base_url,
        p.cost_per_minute_micros, p.config, p.api_key_encrypted, p.created_at, p.updated_at,
        h.status AS health_status, h.last_check_at
 FROM platform_provider_configs p
 LEFT JOIN provider_health_status h ON h.provider = p.provider AND h.region = p.region";

/// A provider as the API shows it: `is_configured` says a key is stored; the key never
/// leaves.
fn provider_json(row: ProviderRow) -> Value {
    json!({
        "provider": row.provider,
        "region": row.region,
        "priority": row.priority,
        "is_enabled": row.is_enabled != 0,
        "base_url": row.base_url,
        "cost_per_minute_micros": row.cost_per_minute_micros,
        "config": parse_json_text(&row.config),
        "is_configured": row.api_key_encrypted.is_some(),
        "health_status": row.health_status,
        "last_check_at": row.last_check_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

async fn fetch(state: &AppState, provider: &str) -> ApiResult<Value> {
    let row: ProviderRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PROVIDER_SELECT} WHERE p.provider = $1"
    )))
    .bind(provider)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("provider"))?;
    Ok(provider_json(row))
}

async fn all_providers(state: &AppState) -> ApiResult<Vec<Value>> {
    let rows: Vec<ProviderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{PROVIDER_SELECT} ORDER BY p.priority, p.provider"
    )))
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows.into_iter().map(provider_json).collect())
}

async fn list(State(state): State<AppState>, admin: CurrentAdmin) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    Ok(axum::Json(
        json!({ "providers": all_providers(&state).await? }),
    ))
}

async fn show(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(provider): Path<String>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    Ok(axum::Json(
        json!({ "provider": fetch(&state, &provider).await? }),
    ))
}

/// Provider URLs are WebSockets: `ws://` (fakes, local relays) or `wss://`.
fn check_url(problems: &mut Problems, url: Option<&str>) {
    let Some(url) = url else { return };
    let ok = url::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some());
    if !ok {
        problems.add("base_url", "must be a ws:// or wss:// URL");
    }
}

fn check_region(problems: &mut Problems, region: Option<&str>) {
    let ok = region.is_none_or(|r| {
        !r.is_empty()
            && r.len() <= 64
            && r.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    });
    if !ok {
        problems.add("region", "must be 1-64 of a-z, 0-9, - or _");
    }
}

fn check_cost(problems: &mut Problems, cost: Option<i64>) {
    if cost.is_some_and(|c| c < 0) {
        problems.add("cost_per_minute_micros", "must not be negative");
    }
}

/// What the audit trail says about a key: whether it changed, never what it is.
fn key_note(change: &KeyChange) -> &'static str {
    match change {
        KeyChange::Keep => "kept",
        KeyChange::Clear => "cleared",
        KeyChange::Set(_) => "set",
    }
}

/// Setting a `base_url` is super_admin's alone (see the module docs).
const URL_NEEDS_SUPER_ADMIN: ApiError =
    ApiError::Forbidden("only a super_admin may set where a provider's keys are sent (base_url)");

#[derive(Deserialize)]
struct CreateBody {
    provider: Option<String>,
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    region: Option<String>,
    priority: Option<i64>,
    is_enabled: Option<bool>,
    base_url: Option<String>,
    cost_per_minute_micros: Option<i64>,
    config: Option<Value>,
}

async fn create(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let body: CreateBody = parse_body(body)?;
    let mut problems = Problems::default();
    let provider = problems.required("provider", &body.provider).to_owned();
    if !provider.is_empty() {
        check_provider(&mut problems, "provider", &provider);
    }
    let change = key_change(&mut problems, body.api_key);
    let base_url = body
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    check_url(&mut problems, base_url);
    let region = body.region.as_deref().map(str::trim);
    check_region(&mut problems, region);
    check_priority(&mut problems, "priority", body.priority);
    check_cost(&mut problems, body.cost_per_minute_micros);
    let config = check_config(&mut problems, body.config.as_ref());
    problems.into_result()?;
    if base_url.is_some() {
        admin
            .require(AdminRole::SuperAdmin)
            .map_err(|_| URL_NEEDS_SUPER_ADMIN)?;
    }
    let sealed = match &change {
        KeyChange::Set(key) => Some(
            state
                .config
                .master_key
                .seal_at(key, &SealedAt::platform_provider_key(&provider)),
        ),
        KeyChange::Keep | KeyChange::Clear => None,
    };
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO platform_provider_configs (provider, api_key_encrypted, config, priority, is_enabled,
                cost_per_minute_micros, region, base_url, base_url_trusted, updated_by_admin_id,
                created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(&provider)
    .bind(sealed)
    .bind(config.unwrap_or_else(|| "{}".into()))
    .bind(body.priority.unwrap_or(0))
    .bind(i64::from(body.is_enabled.unwrap_or(true)))
    .bind(body.cost_per_minute_micros.unwrap_or(0))
    .bind(region.unwrap_or("global"))
    .bind(base_url)
    .bind(i64::from(base_url.is_some()))
    .bind(&admin.id)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "provider_exists",
                "this provider is already configured; update it instead",
            ));
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let details = json!({
        "api_key": key_note(&change), "region": region, "priority": body.priority,
        "is_enabled": body.is_enabled, "base_url": base_url,
        "cost_per_minute_micros": body.cost_per_minute_micros,
    });
    audit::record(
        &mut tx,
        &admin,
        "created_provider_config",
        ("provider", &provider),
        details,
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "provider": fetch(&state, &provider).await? })),
    ))
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    api_key: Option<Option<String>>,
    region: Option<String>,
    priority: Option<i64>,
    is_enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    base_url: Option<Option<String>>,
    cost_per_minute_micros: Option<i64>,
    config: Option<Value>,
}

/// PATCH and PUT: change what the body names; `api_key` absent keeps the key, `null` or
/// `""` clears it; `base_url` likewise.
async fn update(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(provider): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let body: UpdateBody = parse_body(body)?;
    let mut problems = Problems::default();
    let change = key_change(&mut problems, body.api_key);
    // Some(None) clears the URL (back to the provider's default); None keeps it.
    let base_url: Option<Option<String>> = body
        .base_url
        .map(|u| u.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()));
    check_url(&mut problems, base_url.clone().flatten().as_deref());
    let region = body.region.as_deref().map(str::trim);
    check_region(&mut problems, region);
    check_priority(&mut problems, "priority", body.priority);
    check_cost(&mut problems, body.cost_per_minute_micros);
    let config = check_config(&mut problems, body.config.as_ref());
    problems.into_result()?;
    if base_url.as_ref().is_some_and(Option::is_some) {
        admin
            .require(AdminRole::SuperAdmin)
            .map_err(|_| URL_NEEDS_SUPER_ADMIN)?;
    }
    let (key_set, sealed) = match &change {
        KeyChange::Keep => (0_i64, None),
        KeyChange::Clear => (1, None),
        KeyChange::Set(key) => (
            1,
            Some(
                state
                    .config
                    .master_key
                    .seal_at(key, &SealedAt::platform_provider_key(&provider)),
            ),
        ),
    };
    let mut tx = state.db.pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE platform_provider_configs SET
             api_key_encrypted = CASE WHEN $1 = 1 THEN $2 ELSE api_key_encrypted END,
             base_url = CASE WHEN $3 = 1 THEN $4 ELSE base_url END,
             base_url_trusted = CASE WHEN $3 = 1 THEN $3 ELSE base_url_trusted END,
             region = COALESCE($5, region), priority = COALESCE($6, priority),
             is_enabled = COALESCE($7, is_enabled),
             cost_per_minute_micros = COALESCE($8, cost_per_minute_micros),
             config = COALESCE($9, config), updated_by_admin_id = $10, updated_at = $11
         WHERE provider = $12",
    )
    .bind(key_set)
    .bind(sealed)
    .bind(i64::from(base_url.is_some()))
    .bind(base_url.clone().flatten())
    .bind(region)
    .bind(body.priority)
    .bind(body.is_enabled.map(i64::from))
    .bind(body.cost_per_minute_micros)
    .bind(config)
    .bind(&admin.id)
    .bind(now_ms())
    .bind(&provider)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::NotFound("provider"));
    }
    let details = json!({
        "api_key": key_note(&change), "region": region, "priority": body.priority,
        "is_enabled": body.is_enabled, "base_url": base_url,
        "cost_per_minute_micros": body.cost_per_minute_micros,
        "config_changed": body.config.is_some(),
    });
    audit::record(
        &mut tx,
        &admin,
        "updated_provider_config",
        ("provider", &provider),
        details,
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "provider": fetch(&state, &provider).await? }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Path(provider): Path<String>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let mut tx = state.db.pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM platform_provider_configs WHERE provider = $1")
        .bind(&provider)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound("provider"));
    }
    audit::record(
        &mut tx,
        &admin,
        "deleted_provider_config",
        ("provider", &provider),
        json!({}),
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

type HealthRow = (
    String,
    String,
    String,
    i64,
    f64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
);

async fn health(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Support)?;
    let rows: Vec<HealthRow> = sqlx::query_as(
        "SELECT provider, region, status, last_check_at, error_rate, CAST(avg_latency_ms AS BIGINT),
                CAST(connect_ms AS BIGINT), CAST(ttfa_ms AS BIGINT), CAST(consecutive_failures AS BIGINT), details
         FROM provider_health_status ORDER BY provider, region",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let providers: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "provider": r.0, "region": r.1, "status": r.2, "last_check_at": r.3,
                "error_rate": r.4, "avg_latency_ms": r.5, "connect_ms": r.6, "ttfa_ms": r.7,
                "consecutive_failures": r.8,
                "details": r.9.as_deref().map(|d| serde_json::from_str::<Value>(d)
                    .unwrap_or_else(|_| Value::String(d.to_owned()))),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "providers": providers })))
}

/// The price columns of `realtime_models`, in the order selected below.
const MODEL_PRICES: [&str; 9] = [
    "text_input_per_mtok_micros",
    "text_output_per_mtok_micros",
    "audio_input_per_mtok_micros",
    "audio_output_per_mtok_micros",
    "cached_text_input_per_mtok_micros",
    "cached_audio_input_per_mtok_micros",
    "audio_input_per_minute_micros",
    "audio_output_per_minute_micros",
    "session_per_minute_micros",
];

/// One provider's prices: its configured (per-minute price, enabled), its models.
#[derive(Default)]
struct Prices {
    configured: Option<(i64, bool)>,
    models: Vec<Value>,
}

/// Per provider: the configured per-minute price and the catalogue's model prices.
async fn costs(State(state): State<AppState>, admin: CurrentAdmin) -> ApiResult<impl IntoResponse> {
    use sqlx::Row;
    admin.require(AdminRole::Support)?;
    let configured: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT provider, cost_per_minute_micros, is_enabled FROM platform_provider_configs",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let models = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT provider, model_name, display_name, model_type, is_active, {}
         FROM realtime_models ORDER BY provider, model_name",
        MODEL_PRICES.join(", ")
    )))
    .fetch_all(&state.db.pool)
    .await?;
    let mut by_provider: BTreeMap<String, Prices> = BTreeMap::new();
    for (provider, cost, enabled) in configured {
        by_provider.entry(provider).or_default().configured = Some((cost, enabled != 0));
    }
    for row in &models {
        let mut model = json!({
            "model_name": row.try_get::<String, _>("model_name")?,
            "display_name": row.try_get::<String, _>("display_name")?,
            "model_type": row.try_get::<String, _>("model_type")?,
            "is_active": row.try_get::<i64, _>("is_active")? != 0,
        });
        for column in MODEL_PRICES {
            model[column] = json!(row.try_get::<i64, _>(column)?);
        }
        by_provider
            .entry(row.try_get::<String, _>("provider")?)
            .or_default()
            .models
            .push(model);
    }
    let providers: Vec<Value> = by_provider
        .into_iter()
        .map(|(provider, Prices { configured, models })| {
            json!({
                "provider": provider,
                "is_platform_configured": configured.is_some(),
                "is_enabled": configured.map(|c| c.1),
                "cost_per_minute_micros": configured.map(|c| c.0),
                "models": models,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "providers": providers })))
}

#[derive(Deserialize)]
struct RoutingEntry {
    provider: String,
    priority: Option<i64>,
    is_enabled: Option<bool>,
}

#[derive(Deserialize)]
struct RoutingBody {
    providers: Option<Vec<RoutingEntry>>,
    /// The seed's shape: providers in the order calls should try them; priorities become
    /// 0, 10, 20, ... and the listed providers are enabled.
    fallback_chain: Option<Vec<String>>,
}

/// Sets the platform's default order and enabled flags of configured providers in one
/// transaction and one audit row.
async fn routing(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    ClientIp(ip): ClientIp,
    Json(body): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    admin.require(AdminRole::Admin)?;
    let body: RoutingBody = parse_body(body)?;
    let mut problems = Problems::default();
    let entries: Vec<(String, Option<i64>, Option<bool>, String)> =
        match (body.providers, body.fallback_chain) {
            (Some(_), Some(_)) => {
                problems.add("providers", "give providers or fallback_chain, not both");
                Vec::new()
            }
            (Some(list), None) => list
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    (
                        e.provider,
                        e.priority,
                        e.is_enabled,
                        format!("providers[{i}]"),
                    )
                })
                .collect(),
            (None, Some(chain)) => chain
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        p,
                        Some(i as i64 * 10),
                        Some(true),
                        format!("fallback_chain[{i}]"),
                    )
                })
                .collect(),
            (None, None) => {
                problems.add("providers", "is required (or fallback_chain)");
                Vec::new()
            }
        };
    let configured: Vec<(String,)> =
        sqlx::query_as("SELECT provider FROM platform_provider_configs")
            .fetch_all(&state.db.pool)
            .await?;
    let mut seen: Vec<&str> = Vec::new();
    for (provider, priority, _, field) in &entries {
        check_priority(&mut problems, &format!("{field}.priority"), *priority);
        if seen.contains(&provider.as_str()) {
            problems.add(&format!("{field}.provider"), "is listed twice");
        } else if !configured.iter().any(|(p,)| p == provider) {
            problems.add(
                &format!("{field}.provider"),
                "is not a configured provider (create it first)",
            );
        }
        seen.push(provider);
    }
    problems.into_result()?;
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    for (provider, priority, enabled, _) in &entries {
        sqlx::query(
            "UPDATE platform_provider_configs SET priority = COALESCE($1, priority),
                 is_enabled = COALESCE($2, is_enabled), updated_by_admin_id = $3, updated_at = $4
             WHERE provider = $5",
        )
        .bind(*priority)
        .bind(enabled.map(i64::from))
        .bind(&admin.id)
        .bind(now)
        .bind(provider)
        .execute(&mut *tx)
        .await?;
    }
    let details: Vec<Value> = entries
        .iter()
        .map(|(p, priority, enabled, _)| json!({"provider": p, "priority": priority, "is_enabled": enabled}))
        .collect();
    audit::record(
        &mut tx,
        &admin,
        "updated_provider_routing",
        ("provider", "routing"),
        json!({ "providers": details }),
        &ip,
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "providers": all_providers(&state).await? }),
    ))
}
