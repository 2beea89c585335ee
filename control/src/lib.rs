//! The Vocalized control plane: REST API, auth, tenancy, billing and webhooks, on SQLite
//! or Postgres through one data-access layer.
//!
//! - [`config`]: the validated configuration.
//! - [`crypto`]: AES-256-GCM sealing of secrets at rest under the master key.
//! - [`db`]: the pool, dialect and migrations.
//! - [`auth`]: passwords, access tokens, refresh-token sessions.
//! - [`calls`]: admission, stream tokens and plans, applying call events, pricing.
//! - [`routing`]: which providers a call tries and with whose key; provider health and
//!   circuit breaking (pure).
//! - [`twilio`]: webhook signatures and TwiML.
//! - [`http`]: the REST API, one module per resource; errors, extractors, rate limits.
//! - [`settings`], [`audit`], [`email`], [`metrics`]: platform settings, the admin audit
//!   trail, the email outbox, Prometheus metrics.
//! - [`testing`]: fresh migrated databases of either dialect for tests.

pub mod audit;
pub mod auth;
pub mod calls;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod email;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod routing;
pub mod settings;
pub mod state;
pub mod testing;
pub mod twilio;
pub mod util;

pub use config::ControlConfig;
pub use crypto::MasterKey;
pub use db::Db;
pub use state::AppState;

use http::extract::AdminRole;

/// Connects to the database, applies pending migrations and returns the shared state.
pub async fn open(config: ControlConfig) -> anyhow::Result<AppState> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    Ok(AppState::new(db, config))
}

/// The control plane's HTTP routes: `/api/v1/...`, `/healthz`, `/readyz`, `/metrics`,
/// `/api/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    http::router(state)
}

/// Platform roles (`platform_admins.role`).
pub const ADMIN_ROLES: &[&str] = &["super_admin", "admin", "support"];

#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("an admin with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a platform admin (the `vocalized admin create` command) and returns its id.
pub async fn create_admin(
    db: &Db,
    email: &str,
    name: &str,
    password: &str,
    role: &str,
) -> Result<String, CreateAdminError> {
    let email = util::normalize_email(email).ok_or_else(|| {
        CreateAdminError::Invalid(format!("{email:?} is not a valid email address"))
    })?;
    if name.trim().is_empty() {
        return Err(CreateAdminError::Invalid("name must not be empty".into()));
    }
    if let Some(why) = auth::password::check_strength(password) {
        return Err(CreateAdminError::Invalid(format!("password {why}")));
    }
    let role = AdminRole::parse(role).ok_or_else(|| {
        CreateAdminError::Invalid(format!("role must be one of {}", ADMIN_ROLES.join(", ")))
    })?;
    let id = util::new_id("adm");
    let now = util::now_ms();
    let inserted = sqlx::query(
        "INSERT INTO platform_admins (id, email, name, password_hash, role, is_active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
    )
    .bind(&id)
    .bind(&email)
    .bind(name.trim())
    .bind(auth::password::hash(password))
    .bind(role.as_str())
    .bind(now)
    .execute(&db.pool)
    .await;
    match inserted {
        Err(e) if http::error::is_unique_violation(&e) => Err(CreateAdminError::EmailTaken),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(id),
    }
}
