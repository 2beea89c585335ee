//! Whether a call to a number may go ahead, and why not. Checked in order: the agent
//! behind the number, the workspace's status, the calling switch (workspace and agent),
//! then money (monthly usage limit, prepaid balance), then room: the workspace's plan caps
//! its calls at once (`subscription_tiers.max_concurrent_calls`, phone and browser
//! together), counted race-free in [`super::slots`]. Each refusal has a stable
//! `error_code` stored on the call and a sentence the caller hears.

use super::plan::STREAM_TOKEN_TTL_MS;
use super::slots::{Full, Limits, Slot};
use crate::db::Db;
use crate::state::AppState;
use crate::util::now_ms;

/// The number dialled and what stands behind it.
#[derive(Clone, Debug)]
pub struct Target {
    pub phone_number_id: String,
    pub workspace_id: String,
    pub agent_id: Option<String>,
}

/// Why a call is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoAgent,
    AgentNotLive,
    WorkspaceSuspended,
    CallingDisabled,
    UsageLimitReached,
    BalanceExhausted,
    /// The workspace already has as many calls as its plan allows.
    ConcurrencyLimit,
    /// A browser caller's address already has as many calls as it may (web calls only).
    TooManyCallsFromAddress,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoAgent => "no_agent",
            Refusal::AgentNotLive => "agent_not_live",
            Refusal::WorkspaceSuspended => "workspace_suspended",
            Refusal::CallingDisabled => "calling_disabled",
            Refusal::UsageLimitReached => "usage_limit_reached",
            Refusal::BalanceExhausted => "balance_exhausted",
            Refusal::ConcurrencyLimit => "concurrency_limit",
            Refusal::TooManyCallsFromAddress => "too_many_calls",
        }
    }

    /// What the caller hears before the line closes.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoAgent | Refusal::AgentNotLive => {
                "Sorry, nobody can take your call at the moment. Please try again later. Goodbye."
            }
            Refusal::WorkspaceSuspended | Refusal::CallingDisabled => {
                "Sorry, this number cannot take calls right now. Goodbye."
            }
            Refusal::UsageLimitReached | Refusal::BalanceExhausted => {
                "Sorry, this line is unavailable right now. Please try again later. Goodbye."
            }
            Refusal::ConcurrencyLimit | Refusal::TooManyCallsFromAddress => {
                "Sorry, all our lines are busy right now. Please try again later. Goodbye."
            }
        }
    }
}

pub const NOT_IN_SERVICE: &str = "The number you have called is not in service. Goodbye.";

/// The number's row, if it is registered and active.
pub async fn target(db: &Db, to_number: &str) -> Result<Option<Target>, sqlx::Error> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT p.id, p.workspace_id, a.id FROM phone_numbers p
         LEFT JOIN voice_agents a ON a.phone_number_id = p.id
         WHERE p.phone_number = $1 AND p.status = 'active'",
    )
    .bind(to_number)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|(phone_number_id, workspace_id, agent_id)| Target {
        phone_number_id,
        workspace_id,
        agent_id,
    }))
}

/// Start of the current calendar month (UTC), in epoch ms, for the monthly usage limit.
fn month_start_ms(now_ms: i64) -> i64 {
    let days = now_ms.div_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant), enough to find the first of the month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    (days - (day_of_month - 1)) * 86_400_000
}

/// Admits a phone call to `target`: every check, then a place among the workspace's
/// calls at once. The [`Slot`] is the call's place: the voice webhook parks it under the
/// call's id until the stream arrives (or its token expires). `retry_of` is the call a
/// retried webhook is for: it keeps the place it already has instead of taking another.
pub async fn admit(
    state: &AppState,
    target: &Target,
    retry_of: Option<&str>,
) -> Result<Result<Slot, Refusal>, sqlx::Error> {
    let Some(agent_id) = &target.agent_id else {
        return Ok(Err(Refusal::NoAgent));
    };
    let limits = match check_agent(&state.db, &target.workspace_id, agent_id).await? {
        Ok(limits) => limits,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some(slot) = retry_of.and_then(|call_id| state.slots.take(call_id)) {
        return Ok(Ok(slot));
    }
    Ok(reserve(state, &target.workspace_id, None, limits))
}

/// Parks an admitted phone call's place until its stream token would expire.
pub fn hold_until_streamed(state: &AppState, call_id: &str, slot: Slot) {
    state
        .slots
        .hold(call_id, slot, Some(now_ms() + STREAM_TOKEN_TTL_MS));
}

/// Takes a place for a call of `workspace_id` (from `address`, for a browser caller),
/// or says which limit is full. Synchronous: nothing can slip in between the count and
/// the reservation.
pub fn reserve(
    state: &AppState,
    workspace_id: &str,
    address: Option<(&str, u32)>,
    limits: Admitted,
) -> Result<Slot, Refusal> {
    let limits = Limits {
        per_workspace: limits.max_concurrent_calls,
        per_address: address.map(|(_, cap)| cap),
    };
    state
        .slots
        .try_reserve(workspace_id, address.map(|(a, _)| a), limits, now_ms())
        .map_err(|full| match full {
            Full::Workspace => Refusal::ConcurrencyLimit,
            Full::Address => Refusal::TooManyCallsFromAddress,
        })
}

/// What an admitted call's workspace allows: its plan's cap on calls at once (`None`: no
/// cap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    pub max_concurrent_calls: Option<u32>,
}

/// The agent's and workspace's switches, then money; the workspace's limits if a call
/// may go ahead.
pub async fn check_agent(
    db: &Db,
    workspace_id: &str,
    agent_id: &str,
) -> Result<Result<Admitted, Refusal>, sqlx::Error> {
    let (agent_status, agent_call, ws_status, ws_call, max_concurrent): (
        String,
        i64,
        String,
        i64,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT a.status, a.enabled_call, w.status, w.call_enabled,
                CAST(t.max_concurrent_calls AS BIGINT)
         FROM voice_agents a JOIN workspaces w ON w.id = a.workspace_id
         LEFT JOIN subscription_tiers t ON t.tier_name = w.subscription_tier
         WHERE a.id = $1 AND a.workspace_id = $2",
    )
    .bind(agent_id)
    .bind(workspace_id)
    .fetch_one(&db.pool)
    .await?;
    if !["active", "trial"].contains(&ws_status.as_str()) {
        return Ok(Err(Refusal::WorkspaceSuspended));
    }
    if ws_call == 0 || agent_call == 0 {
        return Ok(Err(Refusal::CallingDisabled));
    }
    if agent_status != "live" {
        return Ok(Err(Refusal::AgentNotLive));
    }
    let limit: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT usage_limit_monthly_micros FROM workspace_billing_settings WHERE workspace_id = $1",
    )
    .bind(workspace_id)
    .fetch_optional(&db.pool)
    .await?;
    if let Some((Some(limit),)) = limit {
        let (spent,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(final_cost_micros), 0) AS BIGINT) FROM usage_records
             WHERE workspace_id = $1 AND created_at >= $2",
        )
        .bind(workspace_id)
        .bind(month_start_ms(now_ms()))
        .fetch_one(&db.pool)
        .await?;
        if spent >= limit {
            return Ok(Err(Refusal::UsageLimitReached));
        }
    }
    // Prepaid workspaces have a balance row; postpaid ones have none.
    let balance: Option<(i64,)> =
        sqlx::query_as("SELECT balance_micros FROM workspace_balances WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_optional(&db.pool)
            .await?;
    if balance.is_some_and(|(b,)| b <= 0) {
        return Ok(Err(Refusal::BalanceExhausted));
    }
    Ok(Ok(Admitted {
        // A negative cap (the schema forbids one) or one past u32 is no cap to speak of.
        max_concurrent_calls: max_concurrent
            .map(|cap| u32::try_from(cap.max(0)).unwrap_or(u32::MAX)),
    }))
}

#[cfg(test)]
mod tests {
    use super::month_start_ms;

    #[test]
    fn month_start_is_the_first_at_midnight_utc() {
        // 2026-11-30T23:25:58Z -> 2026-11-01T00:00:00Z
        assert_eq!(month_start_ms(1_796_081_158_000), 1_793_491_200_000);
        // 2024-02-29T12:00:00Z -> 2024-02-01
        assert_eq!(month_start_ms(1_709_208_000_000), 1_706_745_600_000);
        // Exactly the first stays put.
        assert_eq!(month_start_ms(1_706_745_600_000), 1_706_745_600_000);
    }
}
