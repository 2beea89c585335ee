//! Login sessions: a refresh token per rotation, all rows of one login sharing a
//! `session_id`. Refresh tokens are single use: presenting one again (a replay of a stolen,
//! already-rotated token) revokes the whole session.

use super::tokens::{Audience, TokenKeys};
use crate::db::Db;
use crate::util::{new_id, now_ms, random_token, sha256_hex};
use sqlx::AnyConnection;

pub const REFRESH_TOKEN_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What a login or a refresh hands back to the client.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: String,
}

/// Starts a new session for `subject_id` and issues its first pair of tokens.
pub async fn start(
    db: &Db,
    keys: &TokenKeys,
    aud: Audience,
    subject_id: &str,
) -> Result<IssuedTokens, sqlx::Error> {
    let session_id = new_id("ses");
    let now = now_ms();
    let mut conn = db.pool.acquire().await?;
    let refresh_token = insert_refresh(&mut conn, &session_id, aud, subject_id, now).await?;
    Ok(IssuedTokens {
        access_token: keys.issue(aud, subject_id, &session_id, now),
        refresh_token,
        session_id,
    })
}

async fn insert_refresh(
    conn: &mut AnyConnection,
    session_id: &str,
    aud: Audience,
    subject_id: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, session_id, subject_type, subject_id, token_hash, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("rt"))
    .bind(session_id)
    .bind(aud.as_str())
    .bind(subject_id)
    .bind(sha256_hex(&token))
    .bind(now + REFRESH_TOKEN_TTL_MS)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Exchanges a refresh token for a new pair. `Ok(None)` for unknown, expired, revoked or
/// replayed tokens (the caller answers 401), and `Ok(Some((tokens, subject_id)))` otherwise.
pub async fn rotate(
    db: &Db,
    keys: &TokenKeys,
    aud: Audience,
    refresh_token: &str,
) -> Result<Option<(IssuedTokens, String)>, sqlx::Error> {
    let now = now_ms();
    let row: Option<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, session_id, subject_id, expires_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 AND subject_type = $2",
    )
    .bind(sha256_hex(refresh_token))
    .bind(aud.as_str())
    .fetch_optional(&db.pool)
    .await?;
    let Some((id, session_id, subject_id, expires_at, revoked_at)) = row else {
        return Ok(None);
    };
    if revoked_at.is_some() {
        tracing::warn!(session_id, "refresh token replayed; revoking its session");
        end(db, &session_id).await?;
        return Ok(None);
    }
    if expires_at <= now {
        return Ok(None);
    }
    // Claim the token and insert its successor in one transaction: of two concurrent
    // refreshes exactly one wins, a failed insert leaves the old token usable, and no
    // moment exists where the session has no live token (`CurrentUser` would say 401).
    let mut tx = db.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed != 1 {
        return Ok(None);
    }
    let refresh_token = insert_refresh(&mut tx, &session_id, aud, &subject_id, now).await?;
    tx.commit().await?;
    let tokens = IssuedTokens {
        access_token: keys.issue(aud, &subject_id, &session_id, now),
        refresh_token,
        session_id,
    };
    Ok(Some((tokens, subject_id)))
}

/// Logout: revokes every refresh token of the session; its access tokens stop working too.
pub async fn end(db: &Db, session_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(session_id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Revokes every session of a subject (after a password reset or deactivation).
pub async fn end_all(db: &Db, aud: Audience, subject_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1
         WHERE subject_type = $2 AND subject_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(aud.as_str())
    .bind(subject_id)
    .execute(&db.pool)
    .await?;
    Ok(())
}
