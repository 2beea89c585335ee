//! Calls, read side (seed Phase II "Calls (Client)"): list with filters and pages, one
//! call, its events, its transcript turns, and the calls live on this node. Every member
//! of the workspace may read them; nobody else can.

use super::error::{ApiError, ApiResult};
use super::extract::WorkspaceMember;
use super::rejection::Query;
use crate::state::AppState;
use crate::util::now_ms;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/workspaces/{workspace_id}/calls", get(list))
        .route("/api/v1/workspaces/{workspace_id}/calls/live", get(live))
        .route(
            "/api/v1/workspaces/{workspace_id}/calls/{call_id}",
            get(show),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/calls/{call_id}/events",
            get(events),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/calls/{call_id}/transcription",
            get(transcription),
        )
}

/// Micro-dollars as an exact decimal string of dollars ("0.012345"), the seed's
/// `cost_total` without floating point.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

#[derive(Deserialize)]
struct Filter {
    agent_id: Option<String>,
    status: Option<String>,
    direction: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    page: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct CallRow {
    id: String,
    agent_id: Option<String>,
    agent_name: Option<String>,
    source: String,
    direction: String,
    status: String,
    caller_number: Option<String>,
    to_number: Option<String>,
    duration_seconds: Option<i64>,
    cost_total_micros: i64,
    error_code: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
}

fn with_cost(row: &impl Serialize, micros: i64) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["cost_total"] = Value::String(dollars(micros));
    v
}

async fn list(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Query(f): Query<Filter>,
) -> ApiResult<impl IntoResponse> {
    let limit = f.limit.unwrap_or(50).clamp(1, 200);
    let page = f.page.unwrap_or(1).max(1);
    let filters = "c.workspace_id = $1 AND ($2 IS NULL OR c.agent_id = $2) AND ($3 IS NULL OR c.status = $3)
        AND ($4 IS NULL OR c.direction = $4) AND ($5 IS NULL OR c.started_at >= $5) AND ($6 IS NULL OR c.started_at <= $6)";
    let rows: Vec<CallRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.agent_id, a.name AS agent_name, c.source, c.direction, c.status, c.caller_number, c.to_number,
                c.duration_seconds, c.cost_total_micros, c.error_code, c.started_at, c.ended_at
         FROM calls c LEFT JOIN voice_agents a ON a.id = c.agent_id
         WHERE {filters} ORDER BY c.started_at DESC, c.id DESC LIMIT $7 OFFSET $8"
    )))
    .bind(&member.workspace_id)
    .bind(f.agent_id.as_deref())
    .bind(f.status.as_deref())
    .bind(f.direction.as_deref())
    .bind(f.from)
    .bind(f.to)
    .bind(limit)
    // Saturating: `?page=9223372036854775807` is an empty page, not an overflow (L1).
    .bind((page - 1).saturating_mul(limit))
    .fetch_all(&state.db.pool)
    .await?;
    let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM calls c WHERE {filters}"
    )))
    .bind(&member.workspace_id)
    .bind(f.agent_id.as_deref())
    .bind(f.status.as_deref())
    .bind(f.direction.as_deref())
    .bind(f.from)
    .bind(f.to)
    .fetch_one(&state.db.pool)
    .await?;
    let calls: Vec<Value> = rows
        .iter()
        .map(|r| with_cost(r, r.cost_total_micros))
        .collect();
    Ok(axum::Json(
        json!({ "calls": calls, "total": total, "page": page, "limit": limit }),
    ))
}

#[derive(Serialize, sqlx::FromRow)]
struct CallDetail {
    id: String,
    agent_id: Option<String>,
    phone_number_id: Option<String>,
    source: String,
    direction: String,
    status: String,
    caller_number: Option<String>,
    caller_name: Option<String>,
    to_number: Option<String>,
    provider_call_sid: Option<String>,
    voice_provider_used: Option<String>,
    model_id: Option<String>,
    duration_seconds: Option<i64>,
    recording_url: Option<String>,
    transcription: Option<String>,
    summary: Option<String>,
    end_reason: Option<String>,
    cost_total_micros: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    started_at: i64,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
}

async fn fetch(state: &AppState, workspace_id: &str, call_id: &str) -> ApiResult<CallDetail> {
    sqlx::query_as(
        "SELECT id, agent_id, phone_number_id, source, direction, status, caller_number, caller_name, to_number,
                provider_call_sid, voice_provider_used, model_id, duration_seconds, recording_url, transcription,
                summary, end_reason, cost_total_micros, error_code, error_message, started_at, answered_at, ended_at
         FROM calls WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace_id)
    .bind(call_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("call"))
}

async fn show(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, call_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let call = fetch(&state, &member.workspace_id, &call_id).await?;
    let agent: Option<(String, String)> = match &call.agent_id {
        Some(id) => {
            sqlx::query_as("SELECT id, name FROM voice_agents WHERE id = $1 AND workspace_id = $2")
                .bind(id)
                .bind(&member.workspace_id)
                .fetch_optional(&state.db.pool)
                .await?
        }
        None => None,
    };
    Ok(axum::Json(json!({
        "call": with_cost(&call, call.cost_total_micros),
        "agent": agent.map(|(id, name)| json!({ "id": id, "name": name })),
        "recording_url": call.recording_url,
        "transcription": call.transcription,
        "summary": call.summary,
    })))
}

async fn events(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, call_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    fetch(&state, &member.workspace_id, &call_id).await?;
    let rows: Vec<(i64, String, Option<String>, Option<i64>, i64)> = sqlx::query_as(
        "SELECT seq, event_type, event_data, at_ms, timestamp FROM call_events
         WHERE workspace_id = $1 AND call_id = $2 ORDER BY seq",
    )
    .bind(&member.workspace_id)
    .bind(&call_id)
    .fetch_all(&state.db.pool)
    .await?;
    let events: Vec<Value> = rows
        .into_iter()
        .map(|(seq, event_type, data, at_ms, timestamp)| {
            json!({
                "seq": seq, "event_type": event_type,
                "event_data": data.and_then(|d| serde_json::from_str::<Value>(&d).ok()),
                "at_ms": at_ms, "timestamp": timestamp,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "events": events })))
}

#[derive(Serialize, sqlx::FromRow)]
struct Turn {
    seq: i64,
    role: String,
    content: String,
    start_ms: i64,
    end_ms: i64,
    duration_ms: i64,
    confidence: Option<f64>,
    #[serde(serialize_with = "super::workspaces::as_bool")]
    truncated: i64,
}

async fn transcription(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, call_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    fetch(&state, &member.workspace_id, &call_id).await?;
    let turns: Vec<Turn> = sqlx::query_as(
        "SELECT seq, role, content, start_ms, end_ms, duration_ms, confidence, truncated FROM call_transcripts
         WHERE workspace_id = $1 AND call_id = $2 ORDER BY start_ms, seq",
    )
    .bind(&member.workspace_id)
    .bind(&call_id)
    .fetch_all(&state.db.pool)
    .await?;
    let text: Vec<String> = turns
        .iter()
        .map(|t| {
            let who = match t.role.as_str() {
                "user" => "Caller",
                "assistant" => "Agent",
                _ => "System",
            };
            format!("{who}: {}", t.content)
        })
        .collect();
    Ok(axum::Json(
        json!({ "transcription": text.join("\n"), "turns": turns }),
    ))
}

async fn live(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let ids: Vec<(String, i64)> = state
        .live
        .iter()
        .filter(|e| e.value().workspace_id == member.workspace_id)
        .map(|e| (e.key().clone(), e.value().started_at_ms))
        .collect();
    let now = now_ms();
    let mut active = Vec::with_capacity(ids.len());
    for (id, started_at) in ids {
        let row: Option<(Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT a.name, c.caller_number, c.source FROM calls c LEFT JOIN voice_agents a ON a.id = c.agent_id
             WHERE c.id = $1 AND c.workspace_id = $2",
        )
        .bind(&id)
        .bind(&member.workspace_id)
        .fetch_optional(&state.db.pool)
        .await?;
        if let Some((agent_name, caller_number, source)) = row {
            active.push(json!({
                "id": id, "agent_name": agent_name, "caller_number": caller_number, "source": source,
                "duration_so_far": (now - started_at).max(0) / 1000, "started_at": started_at,
            }));
        }
    }
    Ok(axum::Json(json!({ "active_calls": active })))
}

#[cfg(test)]
mod tests {
    use super::dollars;

    #[test]
    fn dollars_are_exact() {
        assert_eq!(dollars(0), "0.000000");
        assert_eq!(dollars(12_345), "0.012345");
        assert_eq!(dollars(29_990_000), "29.990000");
        assert_eq!(dollars(9_007_199_254_740_993), "9007199254.740993");
        assert_eq!(dollars(-5), "-0.000005");
    }
}
