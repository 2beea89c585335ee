//! The one data-access layer for SQLite and Postgres.
//!
//! Both databases are reached through sqlx's `Any` driver so every repository query is
//! written once. The schema lives in `migrations/sqlite` and `migrations/postgres` (one
//! schema, two dialects) and follows ARCHITECTURE.md §6: TEXT ids, BIGINT epoch-ms,
//! BIGINT micro-dollars, INTEGER 0/1 booleans, TEXT JSON. Rules that keep queries portable
//! (from crates.md): bind `i64` for every integer column, never `bool`; `CAST(SUM(..) AS
//! BIGINT)`; no REAL.

pub mod rotate;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A pooled connection to the control-plane database.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

#[derive(Debug, thiserror::Error)]
pub enum DbUrlError {
    #[error("database URL must start with sqlite: or postgres:// (got {0:?})")]
    UnknownScheme(String),
}

impl Dialect {
    pub fn of_url(url: &str) -> Result<Self, DbUrlError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(DbUrlError::UnknownScheme(url.chars().take(40).collect()))
        }
    }
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match dialect {
            Dialect::Sqlite => {
                options
                    // SQLite allows one writer; a small pool with a busy timeout keeps
                    // concurrent requests waiting briefly instead of failing.
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Dialect::Postgres => options.max_connections(16).connect(url).await?,
        };
        Ok(Self { pool, dialect })
    }

    /// Applies every pending migration for this database's dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
