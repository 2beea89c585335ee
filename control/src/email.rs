//! Outgoing email. Every message is written to the `email_outbox` table in the same
//! transaction as the change that caused it (so a rejected request sends nothing), and
//! logged by recipient and subject. Delivery over SMTP is not built yet: operators read the
//! outbox.
//!
//! Bodies carry one-time tokens (email verification, password reset, invitations), so they
//! are stored sealed under the master key, like every other secret at rest: a leaked table
//! or backup does not leak usable links. [`queue`] seals; a sender reads a body back with
//! [`open_body`]. The body is never logged.

use crate::crypto::{MasterKey, SealError};
use crate::util::{new_id, now_ms};
use sqlx::AnyConnection;

/// Queues a message; `body` is sealed under `key` before it is stored.
pub async fn queue(
    conn: &mut AnyConnection,
    key: &MasterKey,
    to: &str,
    subject: &str,
    body: &str,
    template: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_outbox (id, to_email, subject, body, template, status, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
    )
    .bind(new_id("eml"))
    .bind(to)
    .bind(subject)
    .bind(key.seal(body))
    .bind(template)
    .bind(now_ms())
    .execute(conn)
    .await?;
    tracing::info!(template, subject, "email queued in the outbox");
    Ok(())
}

/// The plain text of a stored `email_outbox.body`.
pub fn open_body(key: &MasterKey, stored: &str) -> Result<String, SealError> {
    key.open(stored)
}
