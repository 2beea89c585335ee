//! Platform settings (seed §1.11): JSON values keyed by name, managed by super admins.

use crate::db::Db;

/// The settings that shape a new workspace.
pub struct WorkspaceDefaults {
    pub subscription_tier: String,
    /// The calling switch's default (call-feature §8 `callEnabled`); on unless changed.
    pub call_enabled: bool,
}

/// Reads one setting's JSON value, `None` if unset or not valid JSON.
pub async fn get(db: &Db, key: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT value FROM platform_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&db.pool)
            .await?;
    Ok(row.and_then(|(v,)| serde_json::from_str(&v).ok()))
}

pub async fn workspace_defaults(db: &Db) -> Result<WorkspaceDefaults, sqlx::Error> {
    let tier = get(db, "default_subscription_tier")
        .await?
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "starter".into());
    let call_enabled = get(db, "default_call_enabled")
        .await?
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    Ok(WorkspaceDefaults {
        subscription_tier: tier,
        call_enabled,
    })
}

/// Which settings exist and what shape their values must have, so an admin cannot store a
/// value the platform would then misread.
pub fn validate(key: &str, value: &serde_json::Value) -> Result<(), &'static str> {
    match key {
        "default_subscription_tier" => value
            .as_str()
            .filter(|t| ["starter", "professional", "enterprise"].contains(t))
            .map(|_| ())
            .ok_or("must be one of \"starter\", \"professional\", \"enterprise\""),
        "trial_duration_days" => value
            .as_i64()
            .filter(|d| (0..=365).contains(d))
            .map(|_| ())
            .ok_or("must be a whole number of days between 0 and 365"),
        "pricing_markup_bps" => value
            .as_i64()
            .filter(|d| (0..=100_000).contains(d))
            .map(|_| ())
            .ok_or("must be basis points between 0 and 100000"),
        "default_call_enabled" => value.as_bool().map(|_| ()).ok_or("must be true or false"),
        _ => Err("is not a known setting"),
    }
}
