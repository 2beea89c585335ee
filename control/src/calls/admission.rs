//! Whether a call to a number may go ahead, and why not. Checked in order: the agent
//! behind the number, the workspace's status, the calling switch (workspace and agent),
//! then money (monthly usage limit, prepaid balance). Each refusal has a stable
//! `error_code` stored on the call and a sentence the caller hears.

use crate::db::Db;
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

/// `None` if the call may go ahead.
pub async fn check(db: &Db, target: &Target) -> Result<Option<Refusal>, sqlx::Error> {
    match &target.agent_id {
        None => Ok(Some(Refusal::NoAgent)),
        Some(agent_id) => check_agent(db, &target.workspace_id, agent_id).await,
    }
}

/// The agent's and workspace's switches, then money; `None` if a call may go ahead.
pub async fn check_agent(
    db: &Db,
    workspace_id: &str,
    agent_id: &str,
) -> Result<Option<Refusal>, sqlx::Error> {
    let (agent_status, agent_call, ws_status, ws_call): (String, i64, String, i64) =
        sqlx::query_as(
            "SELECT a.status, a.enabled_call, w.status, w.call_enabled
         FROM voice_agents a JOIN workspaces w ON w.id = a.workspace_id
         WHERE a.id = $1 AND a.workspace_id = $2",
        )
        .bind(agent_id)
        .bind(workspace_id)
        .fetch_one(&db.pool)
        .await?;
    if !["active", "trial"].contains(&ws_status.as_str()) {
        return Ok(Some(Refusal::WorkspaceSuspended));
    }
    if ws_call == 0 || agent_call == 0 {
        return Ok(Some(Refusal::CallingDisabled));
    }
    if agent_status != "live" {
        return Ok(Some(Refusal::AgentNotLive));
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
            return Ok(Some(Refusal::UsageLimitReached));
        }
    }
    // Prepaid workspaces have a balance row; postpaid ones have none.
    let balance: Option<(i64,)> =
        sqlx::query_as("SELECT balance_micros FROM workspace_balances WHERE workspace_id = $1")
            .bind(workspace_id)
            .fetch_optional(&db.pool)
            .await?;
    if balance.is_some_and(|(b,)| b <= 0) {
        return Ok(Some(Refusal::BalanceExhausted));
    }
    Ok(None)
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
