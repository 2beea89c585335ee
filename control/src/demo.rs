//! `vocalized serve --demo`: a workspace with a live echo agent, so a new user with no
//! provider keys can hear the whole browser path work. Created once; later starts find it
//! and change nothing.

use crate::db::Db;
use crate::util::{new_id, now_ms, random_token};
use serde_json::json;
use vocalized_shared::call_settings::CallSettings;

pub const DEMO_EMAIL: &str = "demo@vocalized.local";
const DEMO_WORKSPACE: &str = "Vocalized demo";

/// What `--demo` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demo {
    pub public_key: String,
    pub email: String,
    /// `None` when the demo already existed: its password was printed the first time.
    pub password: Option<String>,
}

/// Finds or creates the demo owner, workspace and echo agent.
pub async fn ensure(db: &Db) -> anyhow::Result<Demo> {
    let existing: Option<(String,)> = sqlx::query_as(
        "SELECT a.widget_public_key FROM voice_agents a
         JOIN workspaces w ON w.id = a.workspace_id
         JOIN client_users u ON u.id = w.owner_id
         WHERE u.email = $1 AND w.name = $2 AND a.voice_provider = 'echo'
         ORDER BY a.created_at LIMIT 1",
    )
    .bind(DEMO_EMAIL)
    .bind(DEMO_WORKSPACE)
    .fetch_optional(&db.pool)
    .await?;
    if let Some((public_key,)) = existing {
        return Ok(Demo {
            public_key,
            email: DEMO_EMAIL.into(),
            password: None,
        });
    }
    let password = random_token()[..16].to_owned();
    let now = now_ms();
    let user_id = new_id("usr");
    let ws_id = new_id("ws");
    let agent_id = new_id("agt");
    let public_key = format!("pk_{}", random_token());
    let settings = CallSettings {
        voice_provider: "echo".into(),
        call_greeting: "This is the Vocalized echo test. Say something, and you will hear it back."
            .into(),
        call_button_text: "Call the echo test".into(),
        ..CallSettings::default()
    };
    let config = json!({
        "instructions": "Echo test: plays the caller back.",
        "call": settings,
        "tools": [],
    });
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO client_users (id, email, name, password_hash, is_active, email_verified, created_at, updated_at)
         VALUES ($1, $2, 'Demo owner', $3, 1, 1, $4, $4)",
    )
    .bind(&user_id)
    .bind(DEMO_EMAIL)
    .bind(crate::auth::password::hash(&password))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workspaces (id, name, industry, owner_id, status, subscription_tier, timezone, call_enabled, created_at, updated_at)
         VALUES ($1, $2, 'demo', $3, 'active', 'starter', 'UTC', 1, $4, $4)",
    )
    .bind(&ws_id)
    .bind(DEMO_WORKSPACE)
    .bind(&user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
    )
    .bind(&ws_id)
    .bind(&user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO voice_agents (id, workspace_id, name, config, voice_provider, voice_config, status,
                                   enabled_chat, enabled_call, widget_public_key, created_at, updated_at, activated_at)
         VALUES ($1, $2, 'Echo test (test provider)', $3, 'echo', '{}', 'live', 1, 1, $4, $5, $5, $5)",
    )
    .bind(&agent_id)
    .bind(&ws_id)
    .bind(config.to_string())
    .bind(&public_key)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Demo {
        public_key,
        email: DEMO_EMAIL.into(),
        password: Some(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    #[tokio::test]
    async fn the_demo_is_created_once_with_a_live_echo_agent() {
        let t = TestDb::sqlite().await;
        let first = ensure(&t.db).await.unwrap();
        assert!(first.password.is_some());
        let again = ensure(&t.db).await.unwrap();
        assert_eq!(again.public_key, first.public_key);
        assert_eq!(again.password, None);
        let (status, provider, enabled): (String, String, i64) = sqlx::query_as(
            "SELECT status, voice_provider, enabled_call FROM voice_agents WHERE widget_public_key = $1",
        )
        .bind(&first.public_key)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), provider.as_str(), enabled),
            ("live", "echo", 1)
        );
        let (hash,): (String,) =
            sqlx::query_as("SELECT password_hash FROM client_users WHERE email = $1")
                .bind(DEMO_EMAIL)
                .fetch_one(&t.db.pool)
                .await
                .unwrap();
        assert!(crate::auth::password::verify(
            first.password.as_deref().unwrap(),
            &hash
        ));
    }
}
