//! Outgoing email. Every message is written to the `email_outbox` table in the same
//! transaction as the change that caused it (so a rejected request sends nothing), and
//! logged by recipient and subject. Delivery over SMTP is not built yet: operators read the
//! outbox; the body (which may hold a one-time token) is never logged.

use crate::util::{new_id, now_ms};
use sqlx::AnyConnection;

pub async fn queue(
    conn: &mut AnyConnection,
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
    .bind(body)
    .bind(template)
    .bind(now_ms())
    .execute(conn)
    .await?;
    tracing::info!(template, subject, "email queued in the outbox");
    Ok(())
}
