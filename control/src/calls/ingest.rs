//! Applies call events from the media plane to the database, idempotently: each event is
//! recorded once under UNIQUE(call_id, seq), and its side effects (status, transcript,
//! priced usage, final cost) happen in the same transaction, so a replayed event — the bus
//! delivers at least once — changes nothing.
//!
//! # Pricing
//!
//! - A usage report is priced from its `(provider, model)` catalogue row
//!   (`realtime_models`). A model with no row is not free: each unit is priced at the
//!   provider's highest active catalogue price for it (the whole catalogue's, for a
//!   provider with no active rows), and the rows are flagged `price_fallback = 1` for an
//!   admin to add the real price.
//! - Providers billed per connected minute (`session_per_minute_micros`: ElevenLabs,
//!   Deepgram) are charged when a session ends — a `failover` away from it (a
//!   `session_rollover` too) or the call's `ended` — for the time since its
//!   `provider_connected`, on the media plane's clock (`at_ms`), pro rata per millisecond
//!   (`pricing::session_line`).
//! - A prepaid workspace (one with a `workspace_balances` row) pays as it goes: each priced
//!   report debits the balance and writes a `balance_transactions` row in the same
//!   transaction as the usage rows. The balance may go below zero (a call is not cut off
//!   mid-sentence); admission refuses the next call.
//! - Sums saturate: nothing a provider reports can wrap a cost or a balance.

use super::pricing::{Line, ModelPrices, price, session_line, with_markup};
use crate::db::Db;
use crate::settings;
use crate::util::{new_id, now_ms};
use sqlx::AnyConnection;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason, Role, Usage};

/// What applying one event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    New,
    Duplicate,
    UnknownCall,
}

fn event_type(kind: &CallEventKind) -> &'static str {
    match kind {
        CallEventKind::Answered => "answered",
        CallEventKind::ProviderConnected { .. } => "provider_connected",
        CallEventKind::ProviderAudioStarted { .. } => "provider_audio_started",
        CallEventKind::BargeIn { .. } => "barge_in",
        CallEventKind::Dtmf { .. } => "dtmf",
        CallEventKind::Transcript { .. } => "transcript",
        CallEventKind::ToolCall { .. } => "tool_call",
        CallEventKind::Usage { .. } => "usage",
        CallEventKind::Failover { .. } => "failover",
        CallEventKind::Warning { .. } => "warning",
        CallEventKind::Error { .. } => "error",
        CallEventKind::Ended(_) => "ended",
    }
}

fn end_reason_code(reason: &EndReason) -> &str {
    match reason {
        EndReason::CallerHangup => "caller_hangup",
        EndReason::EndCallPhrase => "end_call_phrase",
        EndReason::AgentEndedCall => "agent_ended_call",
        EndReason::MaxDuration => "max_duration",
        EndReason::SilenceTimeout => "silence_timeout",
        EndReason::UsageLimit => "usage_limit",
        EndReason::NotConnected => "not_connected",
        EndReason::ProviderError { .. } => "provider_error",
    }
}

/// Applies one event in its own transaction.
pub async fn apply(db: &Db, call_id: &str, event: &CallEvent) -> Result<Applied, sqlx::Error> {
    let applied = apply_batch(db, &[(call_id, event)]).await?;
    Ok(applied.into_iter().next().unwrap_or(Applied::UnknownCall))
}

/// Applies events in order in one transaction, returning what each did. One transaction
/// for many events is what lets the writer keep up under load: a transaction per event
/// cost a few database round trips each (SQLite's run on their own thread). A failure
/// rolls the whole batch back; applying it again is safe, as every event is idempotent.
pub async fn apply_batch(
    db: &Db,
    events: &[(&str, &CallEvent)],
) -> Result<Vec<Applied>, sqlx::Error> {
    // Read outside the transaction: a second pool connection inside it could wait on the
    // very write lock the transaction holds.
    // Usage reports are priced, and so is the per-minute session a failover or the end closes.
    let markup_bps = if events.iter().any(|(_, e)| {
        matches!(
            e.kind,
            CallEventKind::Usage { .. } | CallEventKind::Failover { .. } | CallEventKind::Ended(_)
        )
    }) {
        settings::get(db, "pricing_markup_bps")
            .await?
            .and_then(|v| v.as_i64())
            .unwrap_or(2000)
    } else {
        0
    };
    let mut tx = db.pool.begin().await?;
    let mut applied = Vec::with_capacity(events.len());
    for (call_id, event) in events {
        applied.push(apply_in(&mut *tx, markup_bps, call_id, event).await?);
    }
    tx.commit().await?;
    Ok(applied)
}

/// One event's row and side effects, inside the caller's transaction.
async fn apply_in(
    tx: &mut AnyConnection,
    markup_bps: i64,
    call_id: &str,
    event: &CallEvent,
) -> Result<Applied, sqlx::Error> {
    let call: Option<(String, Option<i64>, i64)> =
        sqlx::query_as("SELECT workspace_id, answered_at, started_at FROM calls WHERE id = $1")
            .bind(call_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((workspace_id, answered_at, started_at)) = call else {
        return Ok(Applied::UnknownCall);
    };
    let now = now_ms();
    let data = serde_json::to_value(&event.kind).unwrap_or_default();
    let inserted = sqlx::query(
        "INSERT INTO call_events (id, workspace_id, call_id, seq, event_type, event_data, at_ms, timestamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (call_id, seq) DO NOTHING",
    )
    .bind(new_id("cev"))
    .bind(&workspace_id)
    .bind(call_id)
    .bind(event.seq as i64)
    .bind(event_type(&event.kind))
    .bind(data.to_string())
    .bind(event.at_ms as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Applied::Duplicate);
    }
    match &event.kind {
        CallEventKind::Answered => {
            sqlx::query(
                "UPDATE calls SET status = 'in-progress', answered_at = COALESCE(answered_at, $1), updated_at = $1
                 WHERE id = $2 AND status IN ('queued', 'ringing', 'in-progress')",
            )
            .bind(now)
            .bind(call_id)
            .execute(&mut *tx)
            .await?;
        }
        CallEventKind::Transcript {
            role,
            text,
            start_ms,
            end_ms,
            confidence,
            truncated,
        } if !text.trim().is_empty() => {
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::System => "system",
            };
            let end_ms = (*end_ms).max(*start_ms);
            // A missing confidence is a NULL literal, not a bound `None`: sqlx 0.9's Any
            // driver binds a NULL f64 as a float4 on Postgres, and a connection whose cached
            // statement first saw that then fails every real confidence (22P03).
            let sql = if confidence.is_some() {
                "INSERT INTO call_transcripts (id, workspace_id, call_id, seq, role, content, start_ms, end_ms,
                                               duration_ms, truncated, created_at, confidence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            } else {
                "INSERT INTO call_transcripts (id, workspace_id, call_id, seq, role, content, start_ms, end_ms,
                                               duration_ms, truncated, created_at, confidence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)"
            };
            let mut insert = sqlx::query(sql)
                .bind(new_id("trn"))
                .bind(&workspace_id)
                .bind(call_id)
                .bind(event.seq as i64)
                .bind(role)
                .bind(text)
                .bind(*start_ms as i64)
                .bind(end_ms as i64)
                .bind((end_ms - start_ms) as i64)
                .bind(i64::from(*truncated))
                .bind(now);
            if let Some(confidence) = confidence {
                insert = insert.bind(confidence.clamp(0.0, 1.0));
            }
            insert.execute(&mut *tx).await?;
        }
        CallEventKind::Usage {
            provider,
            model,
            usage,
        } => {
            record_usage(
                tx,
                markup_bps,
                &workspace_id,
                call_id,
                event.seq,
                provider,
                model,
                usage,
            )
            .await?;
        }
        CallEventKind::Ended(reason) => {
            charge_session(tx, markup_bps, &workspace_id, call_id, event).await?;
            let (status, error_code) = match reason {
                EndReason::ProviderError { code } => ("failed", Some(code.as_str())),
                EndReason::NotConnected => ("failed", Some("webrtc_not_connected")),
                _ => ("completed", None),
            };
            let from = answered_at.unwrap_or(started_at);
            let duration_s = ((now - from).max(0) + 500) / 1000;
            sqlx::query(
                "UPDATE calls SET status = $1, error_code = COALESCE($2, error_code), end_reason = $3,
                        ended_at = $4, duration_seconds = COALESCE(duration_seconds, $5), updated_at = $4
                 WHERE id = $6 AND status IN ('queued', 'ringing', 'in-progress')",
            )
            .bind(status)
            .bind(error_code)
            .bind(end_reason_code(reason))
            .bind(now)
            .bind(duration_s)
            .bind(call_id)
            .execute(&mut *tx)
            .await?;
        }
        CallEventKind::Failover { .. } => {
            charge_session(tx, markup_bps, &workspace_id, call_id, event).await?;
        }
        _ => {}
    }
    Ok(Applied::New)
}

/// The eight price columns of a `realtime_models` row, in the order selected below.
type PriceRow = (i64, i64, i64, i64, i64, i64, i64, i64);

fn prices_of(r: PriceRow) -> ModelPrices {
    ModelPrices {
        text_input_per_mtok: r.0,
        text_output_per_mtok: r.1,
        audio_input_per_mtok: r.2,
        audio_output_per_mtok: r.3,
        cached_text_input_per_mtok: r.4,
        cached_audio_input_per_mtok: r.5,
        audio_input_per_minute: r.6,
        audio_output_per_minute: r.7,
    }
}

/// The model's prices, and whether they are the fallback (the model has no catalogue
/// row): the provider's highest active price per unit, or the whole active catalogue's
/// for a provider with no active row. An inactive model's own row still prices it.
async fn model_prices(
    conn: &mut AnyConnection,
    provider: &str,
    model: &str,
) -> Result<(ModelPrices, bool), sqlx::Error> {
    let row: Option<PriceRow> = sqlx::query_as(
        "SELECT text_input_per_mtok_micros, text_output_per_mtok_micros, audio_input_per_mtok_micros,
                audio_output_per_mtok_micros, cached_text_input_per_mtok_micros, cached_audio_input_per_mtok_micros,
                audio_input_per_minute_micros, audio_output_per_minute_micros
         FROM realtime_models WHERE provider = $1 AND model_name = $2",
    )
    .bind(provider)
    .bind(model)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        return Ok((prices_of(row), false));
    }
    let highest: PriceRow = sqlx::query_as(
        "SELECT CAST(COALESCE(MAX(text_input_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(text_output_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(audio_input_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(audio_output_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(cached_text_input_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(cached_audio_input_per_mtok_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(audio_input_per_minute_micros), 0) AS BIGINT),
                CAST(COALESCE(MAX(audio_output_per_minute_micros), 0) AS BIGINT)
         FROM realtime_models
         WHERE is_active = 1 AND (provider = $1 OR NOT EXISTS
               (SELECT 1 FROM realtime_models WHERE provider = $1 AND is_active = 1))",
    )
    .bind(provider)
    .fetch_one(&mut *conn)
    .await?;
    Ok((prices_of(highest), true))
}

#[allow(clippy::too_many_arguments)]
async fn record_usage(
    conn: &mut AnyConnection,
    markup_bps: i64,
    workspace_id: &str,
    call_id: &str,
    seq: u64,
    provider: &str,
    model: &str,
    usage: &Usage,
) -> Result<(), sqlx::Error> {
    let (prices, fallback) = model_prices(conn, provider, model).await?;
    if fallback {
        tracing::warn!(
            provider,
            model,
            call_id,
            "no catalogue price for this model; priced at the provider's highest price and flagged (usage_records.price_fallback)"
        );
    }
    let lines = price(usage, &prices);
    let priced = Priced {
        workspace_id,
        call_id,
        seq,
        provider,
        model,
        markup_bps,
        fallback,
    };
    insert_lines(conn, &priced, &lines).await
}

/// Ends the per-minute session (if any) that `event` — a failover or the call's end —
/// closes: the provider connected last, unless a failover came after it (then no session
/// of it is open). Charged at the provider's highest active `session_per_minute_micros`
/// for the time between the two events' `at_ms`; providers without one cost nothing here.
async fn charge_session(
    conn: &mut AnyConnection,
    markup_bps: i64,
    workspace_id: &str,
    call_id: &str,
    event: &CallEvent,
) -> Result<(), sqlx::Error> {
    let last: Option<(String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT event_type, event_data, at_ms FROM call_events
         WHERE call_id = $1 AND seq < $2 AND event_type IN ('provider_connected', 'failover')
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(call_id)
    .bind(i64::try_from(event.seq).unwrap_or(i64::MAX))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((kind, Some(data), Some(connected_at_ms))) = last else {
        return Ok(());
    };
    if kind != "provider_connected" {
        return Ok(());
    }
    let Some(provider) = serde_json::from_str::<serde_json::Value>(&data)
        .ok()
        .and_then(|d| d.get("provider")?.as_str().map(str::to_owned))
    else {
        return Ok(());
    };
    let priced: Option<(String, i64)> = sqlx::query_as(
        "SELECT model_name, session_per_minute_micros FROM realtime_models
         WHERE provider = $1 AND is_active = 1 AND session_per_minute_micros > 0
         ORDER BY session_per_minute_micros DESC, model_name LIMIT 1",
    )
    .bind(&provider)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((model, per_minute)) = priced else {
        return Ok(());
    };
    let connected_ms = event
        .at_ms
        .saturating_sub(u64::try_from(connected_at_ms).unwrap_or(0));
    let Some(line) = session_line(connected_ms, per_minute) else {
        return Ok(());
    };
    let session = Priced {
        workspace_id,
        call_id,
        seq: event.seq,
        provider: &provider,
        model: &model,
        markup_bps,
        fallback: false,
    };
    insert_lines(conn, &session, &[line]).await
}

/// Whose priced lines these are, and how they were priced.
struct Priced<'a> {
    workspace_id: &'a str,
    call_id: &'a str,
    /// The event that carried (or, for a session, ended) the usage: with the resource type,
    /// the lines' idempotency key.
    seq: u64,
    provider: &'a str,
    model: &'a str,
    markup_bps: i64,
    /// Priced by the fallback: the model has no catalogue row.
    fallback: bool,
}

/// Writes the lines, adds them to the call's cost and, for a prepaid workspace, debits its
/// balance: all in the caller's transaction. Sums saturate at `i64::MAX`.
async fn insert_lines(
    conn: &mut AnyConnection,
    p: &Priced<'_>,
    lines: &[Line],
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut call_total = 0i64;
    for line in lines {
        let final_cost = with_markup(line.total_cost_micros, p.markup_bps);
        call_total = call_total.saturating_add(final_cost);
        sqlx::query(
            "INSERT INTO usage_records (id, workspace_id, call_id, resource_type, provider, model_id, quantity, unit,
                                        unit_cost_micros, unit_cost_per, total_cost_micros, markup_bps,
                                        final_cost_micros, idempotency_key, created_at, price_fallback)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(new_id("use"))
        .bind(p.workspace_id)
        .bind(p.call_id)
        .bind(line.resource_type)
        .bind(p.provider)
        .bind(p.model)
        .bind(line.quantity)
        .bind(line.unit)
        .bind(line.unit_cost_micros)
        .bind(line.per)
        .bind(line.total_cost_micros)
        .bind(i32::try_from(p.markup_bps).unwrap_or(i32::MAX))
        .bind(final_cost)
        .bind(format!("{}:{}:{}", p.call_id, p.seq, line.resource_type))
        .bind(now)
        .bind(i32::from(p.fallback))
        .execute(&mut *conn)
        .await?;
    }
    if call_total == 0 {
        return Ok(());
    }
    // Saturating in SQL too: `cost_total_micros + x` past i64::MAX is an error on Postgres
    // and silently a float on SQLite.
    sqlx::query(
        "UPDATE calls SET cost_total_micros = CASE WHEN cost_total_micros > $3 - $1 THEN $3
                                              ELSE cost_total_micros + $1 END,
                updated_at = $2
         WHERE id = $4",
    )
    .bind(call_total)
    .bind(now)
    .bind(i64::MAX)
    .bind(p.call_id)
    .execute(&mut *conn)
    .await?;
    debit_balance(conn, p, call_total, now).await
}

/// Debits a prepaid workspace's balance by `amount_micros` (> 0) and writes the ledger row;
/// a workspace without a balance row (postpaid) is left alone.
async fn debit_balance(
    conn: &mut AnyConnection,
    p: &Priced<'_>,
    amount_micros: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let after: Option<(i64,)> = sqlx::query_as(
        "UPDATE workspace_balances
         SET balance_micros = CASE WHEN balance_micros < $3 + $1 THEN $3 ELSE balance_micros - $1 END,
             updated_at = $2
         WHERE workspace_id = $4
         RETURNING balance_micros",
    )
    .bind(amount_micros)
    .bind(now)
    .bind(i64::MIN)
    .bind(p.workspace_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((balance_after,)) = after else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO balance_transactions (id, workspace_id, type, category, amount_micros, balance_after_micros,
                                           reference_type, reference_id, description, idempotency_key, created_at)
         VALUES ($1, $2, 'debit', 'call', $3, $4, 'call', $5, $6, $7, $8)",
    )
    .bind(new_id("btx"))
    .bind(p.workspace_id)
    .bind(-amount_micros)
    .bind(balance_after)
    .bind(p.call_id)
    .bind(format!("{} {} usage", p.provider, p.model))
    .bind(format!("{}:{}:debit", p.call_id, p.seq))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
