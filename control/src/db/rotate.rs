//! Master key rotation (`vocalized keys rotate`): every sealed secret in the database is
//! opened with the old key and sealed again with the new one, in one transaction. If any
//! secret does not open with the old key, nothing is written: a half-rotated database
//! would hold secrets that no single key opens.
//!
//! Every secret is written back bound to its row (`v2:`, see `crypto`), including the
//! unbound `v1:` secrets stored before rows were bound, so after one rotation none is left
//! that would open in another row.
//!
//! Run it with the servers stopped: a server still running on the old key could store a
//! secret sealed with it after the rotation read its table.

use super::Db;
use crate::crypto::{MasterKey, SealError, SealedAt};
use sqlx::AnyConnection;

/// A column that holds sealed values, with the primary key that names its rows and the
/// SQL expression of the row each value is bound to ([`SealedAt::row`]). Every
/// `*_encrypted` column of the schema is here; a test compares this list with the
/// migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub id: &'static str,
    pub column: &'static str,
    /// Constant SQL selecting the row's binding (see `SealedAt`'s constructors).
    pub binding: &'static str,
}

const fn sealed(table: &'static str, id: &'static str, column: &'static str) -> SealedColumn {
    SealedColumn {
        table,
        id,
        column,
        binding: id,
    }
}

impl SealedColumn {
    fn at(&self, binding: &str) -> SealedAt {
        SealedAt::new(self.table, self.column, binding)
    }
}

pub const SEALED_COLUMNS: &[SealedColumn] = &[
    sealed("platform_provider_configs", "provider", "api_key_encrypted"),
    // Bound to workspace and provider (known before the row's id is), as
    // `SealedAt::workspace_provider_key`.
    SealedColumn {
        binding: "workspace_id || '/' || provider",
        ..sealed("workspace_provider_configs", "id", "api_key_encrypted")
    },
    sealed("workspace_integrations", "id", "credentials_encrypted"),
    sealed("integration_accounts", "id", "credentials_encrypted"),
    sealed("integration_accounts", "id", "access_token_encrypted"),
    sealed("integration_accounts", "id", "refresh_token_encrypted"),
    sealed("integration_accounts", "id", "webhook_secret_encrypted"),
    sealed("webhook_endpoints", "id", "secret_encrypted"),
];

/// How many secrets each column had re-encrypted (every column listed, zeros included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    pub columns: Vec<(SealedColumn, u64)>,
}

impl RotationReport {
    pub fn total(&self) -> u64 {
        self.columns.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("the new master key is the current one; nothing to do")]
    SameKey,
    /// A secret the old key cannot open: the wrong key was given, or the row is damaged.
    /// Names the row, never its value.
    #[error(
        "{table}.{column} of row {id:?} does not open with the current master key ({why}); nothing was changed"
    )]
    DoesNotOpen {
        table: &'static str,
        column: &'static str,
        id: String,
        why: SealError,
    },
    /// A row changed between reading and rewriting it (a server was writing).
    #[error(
        "{table}.{column} of row {id:?} changed during the rotation; stop the servers and retry; nothing was changed"
    )]
    Concurrent {
        table: &'static str,
        column: &'static str,
        id: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Re-encrypts every sealed secret from `old` to `new` in one transaction and returns the
/// counts. On any error the transaction is rolled back and the database is unchanged.
pub async fn rotate_master_key(
    db: &Db,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RotationReport, RotateError> {
    if old == new {
        return Err(RotateError::SameKey);
    }
    let mut tx = db.pool.begin().await?;
    let mut columns = Vec::with_capacity(SEALED_COLUMNS.len());
    for &col in SEALED_COLUMNS {
        let n = rotate_column(&mut tx, col, old, new).await?;
        columns.push((col, n));
    }
    tx.commit().await?;
    Ok(RotationReport { columns })
}

async fn rotate_column(
    conn: &mut AnyConnection,
    col: SealedColumn,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<u64, RotateError> {
    let SealedColumn {
        table,
        id,
        column,
        binding,
    } = col;
    let rows: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {id}, {binding}, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {id}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (row_id, bound_to, sealed) in &rows {
        let at = col.at(bound_to);
        let plain = old
            .open_at(sealed, &at)
            .map_err(|why| RotateError::DoesNotOpen {
                table,
                column,
                id: row_id.clone(),
                why,
            })?;
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3"
        )))
        .bind(new.seal_at(&plain, &at))
        .bind(row_id)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(RotateError::Concurrent {
                table,
                column,
                id: row_id.clone(),
            });
        }
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `*_encrypted` column in the migrations is rotated, so a new sealed column
    /// cannot be forgotten here.
    #[test]
    fn every_encrypted_column_of_the_schema_is_listed() {
        for dialect in ["sqlite", "postgres"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(dialect);
            let mut found = Vec::new();
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for file in files {
                let sql = std::fs::read_to_string(&file).unwrap();
                let mut table = String::new();
                for line in sql.lines() {
                    let line = line.trim();
                    if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                        table = rest.split_whitespace().next().unwrap().to_owned();
                    } else if !line.starts_with("--")
                        && let Some(name) = line.split_whitespace().next()
                        && name.ends_with("_encrypted")
                        && line.contains("TEXT")
                    {
                        found.push((table.clone(), name.to_owned()));
                    }
                }
            }
            let listed: Vec<(String, String)> = SEALED_COLUMNS
                .iter()
                .map(|c| (c.table.to_owned(), c.column.to_owned()))
                .collect();
            found.sort();
            let mut listed_sorted = listed.clone();
            listed_sorted.sort();
            assert_eq!(found, listed_sorted, "{dialect}");
        }
    }
}
