//! One-time stream tokens and the `CallPlan` they are redeemed for.
//!
//! The voice webhook mints a token (256 random bits, stored hashed, single use, 60 s) and
//! puts it in the TwiML; Twilio hands it back in the stream's `start` message; the media
//! plane redeems it here for everything the call needs, decrypted keys included.

use crate::config::ControlConfig;
use crate::db::Db;
use crate::state::AppState;
use crate::util::{now_ms, random_token, sha256_hex};
use sqlx::AnyConnection;
use vocalized_shared::call_settings::CallSettings;
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

/// Where the agent's provider is and with which key: the admin provider config wins over
/// the environment. Keys are decrypted here and nowhere else.
async fn provider_target(
    db: &Db,
    config: &ControlConfig,
    kind: ProviderKind,
    model: String,
) -> Result<ProviderTarget, PlanError> {
    let row: Option<(Option<String>, Option<String>, i64)> = sqlx::query_as(
        "SELECT api_key_encrypted, base_url, is_enabled FROM platform_provider_configs WHERE provider = $1",
    )
    .bind(kind.as_str())
    .fetch_optional(&db.pool)
    .await
    .map_err(unavailable)?;
    let (env_url, env_key) = match kind {
        ProviderKind::Openai => (config.openai.url.clone(), config.openai.api_key.clone()),
        // The built-in diagnostic provider runs inside the media plane: no URL, no key.
        ProviderKind::Echo => {
            return Ok(ProviderTarget {
                kind,
                url: "builtin:echo".into(),
                api_key: Secret(String::new()),
                model: "echo".into(),
            });
        }
        _ => {
            return Err(PlanError::Refused {
                code: "provider_unavailable".into(),
            });
        }
    };
    let (url, key) = match row {
        Some((_, _, 0)) => {
            return Err(PlanError::Refused {
                code: "provider_disabled".into(),
            });
        }
        Some((sealed, base_url, _)) => {
            let key = match sealed {
                Some(s) => Some(Secret(config.master_key.open(&s).map_err(unavailable)?)),
                None => env_key,
            };
            (base_url.unwrap_or(env_url), key)
        }
        None => (env_url, env_key),
    };
    let api_key = key.ok_or(PlanError::Refused {
        code: "provider_not_configured".into(),
    })?;
    Ok(ProviderTarget {
        kind,
        url,
        api_key,
        model,
    })
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
            .map_err(unavailable)?;
        }
        Err(PlanError::Refused { code }) => {
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
        Err(_) => {}
    }
    plan
}

/// Most browser calls one address may have open at once.
pub const MAX_WEB_CALLS_PER_ADDRESS: usize = 3;

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
    if let Some(refusal) = crate::calls::admission::check_agent(&state.db, &workspace_id, &agent_id)
        .await
        .map_err(unavailable)?
    {
        return Err(PlanError::Refused {
            code: refusal.code().into(),
        });
    }
    let open_here = state
        .live
        .iter()
        .filter(|c| c.client_ip.as_deref() == Some(client_ip))
        .count();
    if open_here >= MAX_WEB_CALLS_PER_ADDRESS {
        return Err(PlanError::Refused {
            code: "too_many_calls".into(),
        });
    }
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
                .map_err(unavailable)?;
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
    let kind = match voice_provider.as_str() {
        "openai" => ProviderKind::Openai,
        "google" | "gemini" => ProviderKind::Gemini,
        "elevenlabs" => ProviderKind::Elevenlabs,
        "deepgram" => ProviderKind::Deepgram,
        "echo" => ProviderKind::Echo,
        _ => {
            return Err(PlanError::Refused {
                code: "provider_unavailable".into(),
            });
        }
    };
    let model = voice_config
        .get("model")
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_OPENAI_MODEL)
        .to_owned();
    let target = provider_target(&state.db, &state.config, kind, model).await?;
    Ok(CallPlan {
        call_id: call_id.into(),
        workspace_id: workspace_id.into(),
        agent_id: agent_id.into(),
        source,
        instructions,
        settings,
        tools,
        providers: vec![target],
    })
}
