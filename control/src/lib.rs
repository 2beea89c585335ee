//! The Vocalized control plane: REST API, auth, tenancy, billing and webhooks, on SQLite
//! or Postgres through one data-access layer.
//!
//! - [`config`]: the validated configuration.
//! - [`crypto`]: AES-256-GCM sealing of secrets at rest under the master key.
//! - [`db`]: the pool, dialect and migrations.
//! - [`testing`]: fresh migrated databases of either dialect for tests.

pub mod config;
pub mod crypto;
pub mod db;
pub mod testing;

pub use config::ControlConfig;
pub use crypto::MasterKey;
pub use db::Db;

/// The running control plane's shared state: a cheap cloneable handle.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: std::sync::Arc<ControlConfig>,
}

/// Connects to the database, applies pending migrations and returns the shared state.
pub async fn open(config: ControlConfig) -> anyhow::Result<AppState> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    Ok(AppState {
        db,
        config: std::sync::Arc::new(config),
    })
}

/// The control plane's HTTP routes: `/api/v1/...`, `/healthz`, `/readyz`, `/metrics`,
/// `/api/openapi.json`.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().with_state(state)
}

/// Platform roles (`platform_admins.role`).
pub const ADMIN_ROLES: &[&str] = &["super_admin", "admin", "support"];

/// Creates a platform admin (the `vocalized admin create` command). Fails with a clear
/// message if the email is taken or a field is invalid.
pub async fn create_admin(
    _db: &Db,
    _email: &str,
    _name: &str,
    _password: &str,
    _role: &str,
) -> anyhow::Result<String> {
    anyhow::bail!("not yet implemented")
}
