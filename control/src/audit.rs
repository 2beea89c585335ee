//! The admin audit trail (`admin_activity_logs`): every admin mutation writes one row, in
//! the same transaction as the change, so the log can never miss or invent a change.

use crate::http::extract::CurrentAdmin;
use crate::util::{new_id, now_ms};
use sqlx::AnyConnection;

pub async fn record(
    conn: &mut AnyConnection,
    admin: &CurrentAdmin,
    action: &str,
    resource: (&str, &str),
    details: serde_json::Value,
    ip: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_activity_logs (id, admin_id, action, resource_type, resource_id, details, ip_address, timestamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id("log"))
    .bind(&admin.id)
    .bind(action)
    .bind(resource.0)
    .bind(resource.1)
    .bind(details.to_string())
    .bind(ip)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}
