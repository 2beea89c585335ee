//! Test support: a fresh, migrated database of either dialect.
//!
//! Postgres tests use the server at `VOCALIZED_TEST_POSTGRES_URL` (default: the local
//! trust-auth server, `postgres://postgres@127.0.0.1:5432/postgres`), creating one database
//! per test named `vz_test_*`; the test command drops leftovers before each run. Set the
//! variable to `skip` to run the SQLite half alone.

use crate::db::{Db, Dialect};
use sqlx::Executor;

/// Where a test database lives; keeps a SQLite temp dir alive as long as the test.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<TempDir>,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Postgres admin URL tests create their databases through, or `None` when the
/// Postgres half is switched off with `VOCALIZED_TEST_POSTGRES_URL=skip`.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("VOCALIZED_TEST_POSTGRES_URL") {
        Ok(v) if v == "skip" => None,
        Ok(v) => Some(v),
        Err(_) => Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
    }
}

impl TestDb {
    /// A fresh migrated database of `dialect`, or `None` if that dialect is switched off.
    pub async fn new(dialect: Dialect) -> Option<Self> {
        match dialect {
            Dialect::Sqlite => Some(Self::sqlite().await),
            Dialect::Postgres => Self::postgres().await,
        }
    }

    pub async fn sqlite() -> Self {
        let dir = TempDir::new("vz-test");
        let url = format!("sqlite://{}?mode=rwc", dir.0.join("test.db").display());
        let db = Db::connect(&url).await.expect("open sqlite");
        db.migrate().await.expect("migrate sqlite");
        Self {
            db,
            url,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<Self> {
        let admin_url = postgres_admin_url()?;
        let name = format!("vz_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Db::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("Postgres for tests is unreachable at {admin_url}: {e}"));
        admin
            .pool
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        admin.pool.close().await;
        let mut url = url::Url::parse(&admin_url).expect("VOCALIZED_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        let url = url.to_string();
        let db = Db::connect(&url).await.expect("open test database");
        db.migrate().await.expect("migrate postgres");
        Some(Self {
            db,
            url,
            _dir: None,
        })
    }
}

/// Both dialects that are switched on, for tests that must hold on each.
pub fn dialects() -> Vec<Dialect> {
    let mut v = vec![Dialect::Sqlite];
    if postgres_admin_url().is_some() {
        v.push(Dialect::Postgres);
    }
    v
}
