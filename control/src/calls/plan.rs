//! One-time stream tokens and the `CallPlan` they are redeemed for.
//!
//! The voice webhook mints a token (256 random bits, stored hashed, single use, 60 s) and
//! puts it in the TwiML; Twilio hands it back in the stream's `start` message; the media
//! plane redeems it here for everything the call needs, decrypted keys included.
//!
//! # The provider chain
//!
//! `CallPlan.providers` is the failover chain the media plane tries in order. It is
//! decided by the routing policy (`crate::routing`) from:
//! - the candidates: every `platform_provider_configs` row joined with the workspace's
//!   `workspace_provider_configs` row for it (its priority and enabled flag win, and its
//!   own sealed key when `uses_platform_key = 0`: a BYO key always wins over the
//!   platform's); OpenAI from the environment (`ControlConfig.openai`) when the platform
//!   has no row for it, and Gemini, ElevenLabs and Deepgram when the environment gives
//!   their key; the built-in echo when the agent asks for it;
//! - the workspace's strategy (`workspace_provider_strategies`; none, or one that no
//!   longer parses, is `auto`) combined with the agent's provider (see
//!   [`effective_strategy`]: under `auto` the agent's provider goes first);
//! - provider health (`AppState.health`): open circuits are skipped at once.
//!
//! Each target gets the platform's `base_url` (or the kind's default), the key of the
//! source routing chose, and a model: the agent's `voice_config.model` for its own
//! provider, else `model` (`agent_id` for ElevenLabs) in the workspace's or the
//! platform's provider config, else the catalogue default.
//!
//! What routing left out is recorded as a `warning` call event with seq 0 (before all of
//! the media plane's events, which start at 1): code `providers_skipped`, or
//! `routing_last_resort` when every usable provider was unhealthy and is tried anyway;
//! the message lists the chain and each skipped provider with its reason. An empty chain
//! refuses the call with `provider_unavailable`, as before.

use super::{admission, ingest};
use crate::config::ControlConfig;
use crate::crypto::SealedAt;
use crate::routing::{KeySource, ProviderCandidate, Route, Strategy};
use crate::state::AppState;
use crate::util::{now_ms, random_token, sha256_hex};
use sqlx::AnyConnection;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind};
use vocalized_shared::link::PlanError;
use vocalized_shared::plan::{
    CallPlan, CallSource, ProviderKind, ProviderTarget, Secret, ToolSpec,
};

pub const STREAM_TOKEN_TTL_MS: i64 = 60_000;
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-realtime";

/// Mints a stream token for `call_id`, in the caller's transaction.
pub async fn mint_stream_token(
    conn: &mut AnyConnection,
    workspace_id: &str,
    call_id: &str,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO call_stream_tokens (token_hash, workspace_id, call_id, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(sha256_hex(&token))
    .bind(workspace_id)
    .bind(call_id)
    .bind(now + STREAM_TOKEN_TTL_MS)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(token)
}

fn unavailable(e: impl std::fmt::Display) -> PlanError {
    PlanError::Unavailable(e.to_string())
}

/// The configured name of a provider as agents spell it (`google` is the agents' name for
/// Gemini); `None` for a name no build knows.
fn config_name(voice_provider: &str) -> Option<&'static str> {
    kind_of(voice_provider).map(ProviderKind::as_str)
}

fn kind_of(name: &str) -> Option<ProviderKind> {
    match name {
        "openai" => Some(ProviderKind::Openai),
        "gemini" | "google" => Some(ProviderKind::Gemini),
        "elevenlabs" => Some(ProviderKind::Elevenlabs),
        "deepgram" => Some(ProviderKind::Deepgram),
        "echo" => Some(ProviderKind::Echo),
        _ => None,
    }
}

/// Where a provider is when its platform config sets no `base_url`.
fn default_url(config: &ControlConfig, kind: ProviderKind) -> String {
    match config.endpoint(kind) {
        Some(endpoint) => endpoint.url.clone(),
        // The built-in diagnostic provider runs inside the media plane.
        None => "builtin:echo".into(),
    }
}

/// The model a provider is asked for when neither the agent (for its own provider) nor a
/// provider config names one: the catalogue's default `call` model (`realtime_models`).
fn default_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => DEFAULT_OPENAI_MODEL,
        ProviderKind::Gemini => "gemini-live-2.5-flash-preview",
        // For ElevenLabs the model is the ElevenLabs agent id; configs should set one.
        ProviderKind::Elevenlabs => "convai",
        ProviderKind::Deepgram => "voice-agent",
        ProviderKind::Echo => "echo",
    }
}

/// A model named in a provider config's JSON (`model`, or for ElevenLabs `agent_id`).
fn configured_model(config_json: Option<&str>, kind: ProviderKind) -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(config_json?).ok()?;
    let field = |name: &str| {
        config
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
    };
    match kind {
        ProviderKind::Elevenlabs => field("agent_id").or_else(|| field("model")),
        _ => field("model"),
    }
}

/// One provider this workspace's calls could use: its routing facts and, decrypted, what
/// a `ProviderTarget` needs. Never logged (the keys are `Secret`s).
struct Offer {
    candidate: ProviderCandidate,
    url: String,
    model: String,
    workspace_key: Option<Secret>,
    platform_key: Option<Secret>,
}

/// provider, region, priority, is_enabled, cost_per_minute_micros, base_url,
/// api_key_encrypted, config, base_url_trusted
type PlatformRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
    i64,
);
/// provider, uses_platform_key, api_key_encrypted, config, priority, is_enabled
type WorkspaceRow = (String, i64, Option<String>, String, i64, i64);

/// Opens a sealed key; an unreadable one (wrong master key, corrupt row) counts as no key,
/// so the provider is skipped as `no_key` and the call routes around it.
fn open_key(
    config: &ControlConfig,
    sealed: Option<&str>,
    at: &SealedAt,
    provider: &str,
    whose: &str,
) -> Option<Secret> {
    let sealed = sealed?;
    match config.master_key.open_at(sealed, at) {
        Ok(key) => Some(Secret(key)),
        Err(e) => {
            tracing::error!(provider, whose, error = %e, "a stored provider key cannot be decrypted; skipping it");
            None
        }
    }
}

/// Every provider the workspace may route to: the platform's configured providers, each
/// joined with the workspace's own settings for it; OpenAI from the environment when the
/// platform has no row for it (as before provider configs existed); and the built-in
/// echo when the agent asks for it and the platform has no row for it. The agent's model
/// applies to the agent's own provider only.
async fn load_offers(
    state: &AppState,
    workspace_id: &str,
    agent_provider: Option<&str>,
    agent_model: Option<&str>,
) -> Result<Vec<Offer>, PlanError> {
    let db = &state.db;
    let config = &state.config;
    let mut platform: Vec<PlatformRow> = sqlx::query_as(
        "SELECT provider, region, CAST(priority AS BIGINT), CAST(is_enabled AS BIGINT),
                cost_per_minute_micros, base_url, api_key_encrypted, config,
                CAST(base_url_trusted AS BIGINT)
         FROM platform_provider_configs ORDER BY provider",
    )
    .fetch_all(&db.pool)
    .await
    .map_err(unavailable)?;
    let own: Vec<WorkspaceRow> = sqlx::query_as(
        "SELECT provider, CAST(uses_platform_key AS BIGINT), api_key_encrypted, config,
                CAST(priority AS BIGINT), CAST(is_enabled AS BIGINT)
         FROM workspace_provider_configs WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .fetch_all(&db.pool)
    .await
    .map_err(unavailable)?;
    let prices: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT provider, model_name, session_per_minute_micros FROM realtime_models WHERE is_active = 1",
    )
    .fetch_all(&db.pool)
    .await
    .map_err(unavailable)?;

    let implicit = |name: &str| -> PlatformRow {
        (
            name.into(),
            "global".into(),
            0,
            1,
            0,
            None,
            None,
            "{}".into(),
            0,
        )
    };
    // OpenAI is always offered (as before provider configs existed); the others when the
    // environment gives a platform key for them.
    for kind in [
        ProviderKind::Openai,
        ProviderKind::Gemini,
        ProviderKind::Elevenlabs,
        ProviderKind::Deepgram,
    ] {
        let from_env = kind == ProviderKind::Openai
            || config.endpoint(kind).is_some_and(|e| e.api_key.is_some());
        if from_env && !platform.iter().any(|p| p.0 == kind.as_str()) {
            platform.push(implicit(kind.as_str()));
        }
    }
    if agent_provider == Some("echo") && !platform.iter().any(|p| p.0 == "echo") {
        platform.push(implicit("echo"));
    }

    let mut offers = Vec::new();
    for (name, region, priority, enabled, cost, base_url, sealed, platform_config, url_trusted) in
        platform
    {
        let Some(kind) = kind_of(&name) else {
            tracing::warn!(provider = %name, "a configured provider this build does not know; ignored");
            continue;
        };
        let mine = own.iter().find(|w| w.0 == name);
        let tenant_model = agent_model
            .filter(|_| agent_provider == Some(name.as_str()))
            .map(str::to_owned)
            .or_else(|| configured_model(mine.map(|w| w.3.as_str()), kind));
        let model = tenant_model
            .clone()
            .or_else(|| configured_model(Some(&platform_config), kind))
            .unwrap_or_else(|| default_model(kind).to_owned());
        // Outcomes of a model the tenant chose and the catalogue does not list stay out of
        // the platform's health (security review M8).
        let platform_model =
            tenant_model.is_none() || prices.iter().any(|(p, m, _)| p == &name && m == &model);
        let at = SealedAt::platform_provider_key(&name);
        let platform_key = open_key(config, sealed.as_deref(), &at, &name, "platform")
            .or_else(|| config.endpoint(kind).and_then(|e| e.api_key.clone()));
        // A workspace's own key goes to the provider's default URL, or to one a
        // super_admin set (security review M2); never to a URL anyone else stored.
        let url_takes_byo =
            url_trusted != 0 || base_url.as_deref().is_none_or(|u| u.trim().is_empty());
        let workspace_key = mine.filter(|w| w.1 == 0 && url_takes_byo).and_then(|w| {
            let at = SealedAt::workspace_provider_key(workspace_id, &name);
            open_key(config, w.2.as_deref(), &at, &name, "workspace")
        });
        // A workspace that brings its own key but whose key cannot be read (or may not go
        // to this URL) is not quietly
        // moved onto the platform's key: the provider has no usable key.
        let byo_broken = mine.is_some_and(|w| w.1 == 0) && workspace_key.is_none();
        // Per call minute: the model's catalogue price, else the platform's configured
        // estimate, else the provider's cheapest catalogue price (an ElevenLabs "model"
        // is an agent id the catalogue does not list). Zero means unknown, not free.
        let per_minute = |model: Option<&str>| {
            prices
                .iter()
                .filter(|(p, m, price)| p == &name && model.is_none_or(|x| x == m) && *price > 0)
                .map(|p| p.2)
                .min()
        };
        let price = per_minute(Some(&model))
            .or((cost > 0).then_some(cost))
            .or_else(|| per_minute(None))
            .and_then(|p| u64::try_from(p).ok());
        let candidate = ProviderCandidate {
            kind,
            name: name.clone(),
            region,
            priority: mine.map_or(priority, |w| w.4),
            platform_enabled: enabled != 0,
            workspace_enabled: mine.is_none_or(|w| w.5 != 0),
            price_per_minute_micros: price,
            workspace_key: workspace_key.is_some(),
            platform_key: platform_key.is_some() && !byo_broken,
            key_required: kind != ProviderKind::Echo,
            platform_model,
        };
        offers.push(Offer {
            candidate,
            url: base_url
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| default_url(config, kind)),
            model,
            workspace_key,
            platform_key: platform_key.filter(|_| !byo_broken),
        });
    }
    Ok(offers)
}

/// The workspace's routing strategy; `auto` without a row, and `auto` (logged) for a row
/// that no longer parses, so a bad row degrades routing instead of refusing calls.
async fn load_strategy(state: &AppState, workspace_id: &str) -> Result<Strategy, PlanError> {
    let row: Option<(String, Option<String>, String, i64)> = sqlx::query_as(
        "SELECT strategy, preferred_provider, config, CAST(fallback_enabled AS BIGINT)
         FROM workspace_provider_strategies WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(unavailable)?;
    let Some((name, preferred, config, fallback)) = row else {
        return Ok(Strategy::Auto);
    };
    Ok(
        Strategy::from_row(&name, preferred.as_deref(), &config, fallback != 0).unwrap_or_else(
            |e| {
                tracing::warn!(workspace_id, error = %e, "stored provider strategy is not valid; routing as auto");
                Strategy::Auto
            },
        ),
    )
}

/// How the agent's own provider and the workspace's strategy combine:
///
/// - `auto`: the agent's provider is the preferred first choice, then every other usable
///   provider by priority (the routing policy's `custom` list of one, with fallback). As
///   with any provider a strategy names, health still applies: an open circuit skips it,
///   and a degraded one still goes before healthy fallbacks.
/// - `cost_optimized`, `quality_first`, `specific`, `custom`: the workspace chose how its
///   calls route, so its strategy decides the whole chain; the agent's provider is one
///   candidate among the others (its model is used whenever it is in the chain).
pub fn effective_strategy(workspace: Strategy, agent_provider: Option<&str>) -> Strategy {
    match (workspace, agent_provider) {
        (Strategy::Auto, Some(agent)) => Strategy::Custom {
            order: vec![agent.to_owned()],
            twilio: None,
            web: None,
            fallback_enabled: true,
        },
        (strategy, _) => strategy,
    }
}

/// The `warning` call event (seq 0, before any of the media plane's events) recording
/// what routing left out, so a call's events say why a provider was not tried.
fn routing_warning(strategy: &Strategy, route: &Route) -> Option<CallEvent> {
    if route.skipped.is_empty() && !route.last_resort {
        return None;
    }
    let parts: Vec<String> = route
        .skipped
        .iter()
        .map(|s| match &s.region {
            Some(region) => format!("{}/{} ({})", s.name, region, s.reason.as_str()),
            None => format!("{} ({})", s.name, s.reason.as_str()),
        })
        .collect();
    let chain: Vec<&str> = route.chain.iter().map(|c| c.name.as_str()).collect();
    let (code, lead) = if route.last_resort {
        (
            ROUTING_LAST_RESORT,
            "every usable provider is unhealthy; trying them anyway",
        )
    } else {
        (ROUTING_SKIPPED, "some providers were not tried")
    };
    Some(CallEvent {
        seq: 0,
        at_ms: 0,
        kind: CallEventKind::Warning {
            code: code.into(),
            message: format!(
                "{lead} (strategy {}): chain [{}]; skipped: {}",
                strategy.name(),
                chain.join(", "),
                if parts.is_empty() {
                    "none".into()
                } else {
                    parts.join(", ")
                }
            ),
        },
    })
}

/// Warning codes of the routing event (see the module docs).
pub const ROUTING_SKIPPED: &str = "providers_skipped";
pub const ROUTING_LAST_RESORT: &str = "routing_last_resort";

/// Routes the call and turns its chain into targets with decrypted keys. Refuses with
/// `provider_unavailable` when nothing can be tried.
async fn route_providers(
    state: &AppState,
    call_id: &str,
    workspace_id: &str,
    source: CallSource,
    agent_provider: Option<&str>,
    agent_model: Option<&str>,
) -> Result<Vec<ProviderTarget>, PlanError> {
    let offers = load_offers(state, workspace_id, agent_provider, agent_model).await?;
    let workspace_strategy = load_strategy(state, workspace_id).await?;
    let strategy = effective_strategy(workspace_strategy.clone(), agent_provider);
    let candidates: Vec<ProviderCandidate> = offers.iter().map(|o| o.candidate.clone()).collect();
    let route = state
        .health
        .route(call_id, &strategy, source, &candidates, now_ms());
    let mut targets = Vec::with_capacity(route.chain.len());
    for choice in &route.chain {
        let Some(offer) = offers.iter().find(|o| o.candidate.name == choice.name) else {
            continue;
        };
        let api_key = match choice.key {
            KeySource::Workspace => offer.workspace_key.clone(),
            KeySource::Platform => offer.platform_key.clone(),
            KeySource::NotNeeded => Some(Secret(String::new())),
        };
        let Some(api_key) = api_key else { continue };
        targets.push(ProviderTarget {
            kind: choice.kind,
            url: offer.url.clone(),
            api_key,
            model: offer.model.clone(),
        });
    }
    if let Some(event) = routing_warning(&workspace_strategy, &route) {
        ingest::apply(&state.db, call_id, &event)
            .await
            .map_err(unavailable)?;
    }
    if targets.is_empty() {
        state.health.forget(call_id);
        return Err(PlanError::Refused {
            code: "provider_unavailable".into(),
        });
    }
    Ok(targets)
}
/// Redeems a Twilio stream token: marks it used, puts the call in progress, and returns
/// its plan. A token redeems once; an expired one fails the call that never connected.
pub async fn redeem_twilio(
    state: &AppState,
    token: &str,
    stream_sid: &str,
) -> Result<CallPlan, PlanError> {
    let db = &state.db;
    let now = now_ms();
    let redeemed: Option<(String, String)> = sqlx::query_as(
        "UPDATE call_stream_tokens SET used_at = $1
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
         RETURNING call_id, workspace_id",
    )
    .bind(now)
    .bind(sha256_hex(token))
    .fetch_optional(&db.pool)
    .await
    .map_err(unavailable)?;
    let Some((call_id, workspace_id)) = redeemed else {
        // An expired, never-used token: its call never connected, so it failed.
        sqlx::query(
            "UPDATE calls SET status = 'failed', error_code = 'stream_token_expired', ended_at = $1, updated_at = $1
             WHERE id = (SELECT call_id FROM call_stream_tokens WHERE token_hash = $2 AND used_at IS NULL)
               AND status IN ('queued', 'ringing')",
        )
        .bind(now)
        .bind(sha256_hex(token))
        .execute(&db.pool)
        .await
        .map_err(unavailable)?;
        return Err(PlanError::InvalidToken);
    };
    let plan = build(state, &call_id, &workspace_id, CallSource::Twilio).await;
    match &plan {
        Ok(plan) => {
            let provider = plan.providers.first().map(|p| p.kind.as_str());
            let model = plan.providers.first().map(|p| p.model.as_str());
            sqlx::query(
                "UPDATE calls SET status = 'in-progress', answered_at = $1, voice_provider_used = $2,
                        model_id = $3, metadata = $4, updated_at = $1
                 WHERE id = $5 AND workspace_id = $6",
            )
            .bind(now)
            .bind(provider)
            .bind(model)
            .bind(serde_json::json!({ "stream_sid": stream_sid }).to_string())
            .bind(&call_id)
            .bind(&workspace_id)
            .execute(&db.pool)
            .await
            .map_err(|e| {
                // The call will not run: give back any probe slot its route took, and
                // its place among the workspace's calls.
                state.health.forget(&call_id);
                state.slots.release(&call_id);
                unavailable(e)
            })?;
            // Its stream is here: the place the voice webhook took lasts until `ended`.
            state.slots.keep(&call_id, &workspace_id, now);
        }
        Err(PlanError::Refused { code }) => {
            state.slots.release(&call_id);
            sqlx::query(
                "UPDATE calls SET status = 'failed', error_code = $1, ended_at = $2, updated_at = $2
                 WHERE id = $3 AND workspace_id = $4",
            )
            .bind(code)
            .bind(now)
            .bind(&call_id)
            .bind(&workspace_id)
            .execute(&db.pool)
            .await
            .map_err(unavailable)?;
        }
        Err(_) => state.slots.release(&call_id),
    }
    plan
}

/// Most browser calls one address may have open at once.
pub const MAX_WEB_CALLS_PER_ADDRESS: u32 = 3;

fn refused(refusal: admission::Refusal) -> PlanError {
    PlanError::Refused {
        code: refusal.code().into(),
    }
}

/// Starts a browser call (see `ControlLink::plan_web_call`).
pub async fn start_web_call(
    state: &AppState,
    public_key: &str,
    client_ip: &str,
) -> Result<CallPlan, PlanError> {
    let agent: Option<(String, String)> =
        sqlx::query_as("SELECT id, workspace_id FROM voice_agents WHERE widget_public_key = $1")
            .bind(public_key)
            .fetch_optional(&state.db.pool)
            .await
            .map_err(unavailable)?;
    let (agent_id, workspace_id) = agent.ok_or(PlanError::InvalidToken)?;
    let admitted = admission::check_agent(&state.db, &workspace_id, &agent_id)
        .await
        .map_err(unavailable)?
        .map_err(refused)?;
    // The call's place among the address's and the workspace's calls: checked and taken
    // in one step with no await in between, so concurrent offers cannot all see room
    // (review H1). Any return below drops it, giving it back; a planned call parks it
    // until its `ended` event.
    let slot = admission::reserve(
        state,
        &workspace_id,
        Some((client_ip, MAX_WEB_CALLS_PER_ADDRESS)),
        admitted,
    )
    .map_err(refused)?;
    let call_id = crate::util::new_id("call");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO calls (id, workspace_id, agent_id, source, direction, status, metadata,
                            started_at, created_at, updated_at)
         VALUES ($1, $2, $3, 'web', 'inbound', 'ringing', $4, $5, $5, $5)",
    )
    .bind(&call_id)
    .bind(&workspace_id)
    .bind(&agent_id)
    .bind(serde_json::json!({ "client_ip": client_ip }).to_string())
    .bind(now)
    .execute(&state.db.pool)
    .await
    .map_err(unavailable)?;
    let plan = build(state, &call_id, &workspace_id, CallSource::Web).await;
    match &plan {
        Ok(plan) => {
            let provider = plan.providers.first().map(|p| p.kind.as_str());
            let model = plan.providers.first().map(|p| p.model.as_str());
            sqlx::query("UPDATE calls SET voice_provider_used = $1, model_id = $2 WHERE id = $3")
                .bind(provider)
                .bind(model)
                .bind(&call_id)
                .execute(&state.db.pool)
                .await
                .map_err(|e| {
                    state.health.forget(&call_id);
                    unavailable(e)
                })?;
            state.slots.hold(&call_id, slot, None);
        }
        Err(e) => {
            let code = match e {
                PlanError::Refused { code } => code.clone(),
                _ => "plan_failed".into(),
            };
            sqlx::query(
                "UPDATE calls SET status = 'failed', error_code = $1, ended_at = $2 WHERE id = $3",
            )
            .bind(code)
            .bind(now)
            .bind(&call_id)
            .execute(&state.db.pool)
            .await
            .map_err(unavailable)?;
        }
    }
    plan
}

/// The plan of an admitted call, from its agent's current config.
async fn build(
    state: &AppState,
    call_id: &str,
    workspace_id: &str,
    source: CallSource,
) -> Result<CallPlan, PlanError> {
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT a.id, a.config, a.voice_provider, a.voice_config
         FROM calls c JOIN voice_agents a ON a.id = c.agent_id AND a.workspace_id = c.workspace_id
         WHERE c.id = $1 AND c.workspace_id = $2",
    )
    .bind(call_id)
    .bind(workspace_id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(unavailable)?;
    let (agent_id, config, voice_provider, voice_config) = row.ok_or(PlanError::Refused {
        code: "no_agent".into(),
    })?;
    let config: serde_json::Value = serde_json::from_str(&config).map_err(unavailable)?;
    let voice_config: serde_json::Value =
        serde_json::from_str(&voice_config).map_err(unavailable)?;
    let settings: CallSettings = config
        .get("call")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(unavailable)?
        .unwrap_or_default();
    let tools: Vec<ToolSpec> = config
        .get("tools")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(unavailable)?
        .unwrap_or_default();
    let instructions = config
        .get("instructions")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let agent_provider = config_name(&voice_provider);
    let agent_model = voice_config
        .get("model")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let providers = route_providers(
        state,
        call_id,
        workspace_id,
        source,
        agent_provider,
        agent_model,
    )
    .await?;
    Ok(CallPlan {
        call_id: call_id.into(),
        workspace_id: workspace_id.into(),
        agent_id: agent_id.into(),
        source,
        instructions,
        settings,
        tools,
        providers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_auto_the_agents_provider_leads_and_other_strategies_are_kept() {
        assert_eq!(
            effective_strategy(Strategy::Auto, Some("gemini")),
            Strategy::Custom {
                order: vec!["gemini".into()],
                twilio: None,
                web: None,
                fallback_enabled: true,
            }
        );
        assert_eq!(effective_strategy(Strategy::Auto, None), Strategy::Auto);
        let specific = Strategy::Specific {
            provider: "openai".into(),
            fallback_enabled: false,
        };
        assert_eq!(
            effective_strategy(specific.clone(), Some("gemini")),
            specific
        );
        assert_eq!(
            effective_strategy(Strategy::CostOptimized, Some("gemini")),
            Strategy::CostOptimized
        );
        assert_eq!(config_name("google"), Some("gemini"));
        assert_eq!(config_name("nope"), None);
    }

    #[test]
    fn configured_models_come_from_model_or_the_elevenlabs_agent_id() {
        let el = ProviderKind::Elevenlabs;
        assert_eq!(
            configured_model(Some(r#"{"agent_id": " ag_1 ", "model": "m"}"#), el).as_deref(),
            Some("ag_1")
        );
        assert_eq!(
            configured_model(Some(r#"{"model": "gpt-x"}"#), ProviderKind::Openai).as_deref(),
            Some("gpt-x")
        );
        assert_eq!(configured_model(Some(r#"{"model": ""}"#), el), None);
        assert_eq!(configured_model(Some("not json"), el), None);
        assert_eq!(configured_model(None, el), None);
    }
}
