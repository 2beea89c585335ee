//! The schema holds its promises on both dialects: migrations apply, closed sets reject
//! values outside them, deleting a workspace removes every row it owns (and nothing of
//! another's), replayed call events are refused, money survives beyond 2^53, and the seed
//! rows are there.
//!
//! Every test runs once per dialect from `testing::dialects()` (SQLite always; Postgres
//! unless `VOCALIZED_TEST_POSTGRES_URL=skip`). Integers are bound as i64 throughout
//! (crates.md "sqlx Any": Postgres locks a statement's bind types on first use).

use sqlx::Row;
use sqlx::error::ErrorKind;
use vocalized_control::Db;
use vocalized_control::db::Dialect;
use vocalized_control::testing::{TestDb, dialects};
use vocalized_shared::plan::ProviderKind;

const NOW: i64 = 1_764_547_200_000;
const CHECK: ErrorKind = ErrorKind::CheckViolation;

/// A bind value. NULLs are written as SQL literals instead, because a typed NULL bind
/// would fix a parameter's type on Postgres.
#[derive(Clone, Copy, Debug)]
enum V<'a> {
    T(&'a str),
    I(i64),
    F(f64),
}
use V::{F, I, T};

async fn exec(db: &Db, sql: &'static str, args: &[V<'_>]) -> Result<u64, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match *a {
            T(s) => q.bind(s.to_owned()),
            I(i) => q.bind(i),
            F(f) => q.bind(f),
        };
    }
    Ok(q.execute(&db.pool).await?.rows_affected())
}

async fn ok(db: &Db, sql: &'static str, args: &[V<'_>]) {
    if let Err(e) = exec(db, sql, args).await {
        panic!("{:?}: {sql}\nfailed: {e}", db.dialect);
    }
}

async fn count(db: &Db, table: &str, workspace_id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE workspace_id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(workspace_id.to_owned())
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{:?}: count {table}: {e}", db.dialect))
        .get::<i64, _>("n")
}

/// Asserts `result` failed with `kind`, and that the error names the constraint: by its
/// name (Postgres always; SQLite for CHECKs) or, for SQLite UNIQUE errors, which list
/// columns instead, by one of `names`.
fn assert_violation(
    dialect: Dialect,
    result: Result<u64, sqlx::Error>,
    kind: ErrorKind,
    names: &[&str],
) {
    let err = match result {
        Ok(n) => panic!("{dialect:?}: expected {kind:?} on {names:?}, but {n} row(s) were written"),
        Err(e) => e,
    };
    let Some(db_err) = err.as_database_error() else {
        panic!("{dialect:?}: expected a database error, got {err}");
    };
    assert_eq!(db_err.kind(), kind, "{dialect:?}: {db_err}");
    if names.is_empty() {
        return;
    }
    let constraint = db_err.constraint().unwrap_or_default();
    let message = db_err.message();
    assert!(
        names
            .iter()
            .any(|n| constraint == *n || message.contains(n)),
        "{dialect:?}: error does not name {names:?}: constraint={constraint:?} message={message:?}"
    );
}

/// One workspace with a row in every tenant-owned table.
struct Tenant {
    ws: String,
    agent: String,
    call: String,
}

/// Creates tenant `n` (ids and unique values are derived from `n`).
async fn tenant(db: &Db, n: u32) -> Tenant {
    let id = |what: &str| format!("t{n}_{what}");
    let (user, ws, agent, number, call) =
        (id("user"), id("ws"), id("agent"), id("num"), id("call"));
    let email = format!("owner{n}@example.com");
    let e164 = format!("+1555000{n:04}");

    ok(
        db,
        "INSERT INTO client_users (id, email, name, password_hash, created_at, updated_at) \
            VALUES ($1, $2, 'Owner', 'x', $3, $3)",
        &[T(&user), T(&email), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO workspaces (id, name, owner_id, created_at, updated_at) \
            VALUES ($1, 'Acme', $2, $3, $3)",
        &[T(&ws), T(&user), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO phone_numbers (id, workspace_id, phone_number, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $4)",
        &[T(&number), T(&ws), T(&e164), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO voice_agents (id, workspace_id, phone_number_id, name, config, \
            voice_provider, voice_config, widget_public_key, created_at, updated_at) \
            VALUES ($1, $2, $3, 'Receptionist', '{}', 'openai', '{}', $4, $5, $5)",
        &[T(&agent), T(&ws), T(&number), T(&id("widget")), I(NOW)],
    )
    .await;

    // Providers and integrations.
    ok(
        db,
        "INSERT INTO workspace_provider_configs (id, workspace_id, provider, created_at, \
            updated_at) VALUES ($1, $2, 'openai', $3, $3)",
        &[T(&id("wpc")), T(&ws), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO workspace_provider_strategies (workspace_id, strategy, updated_at) \
            VALUES ($1, 'auto', $2)",
        &[T(&ws), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO workspace_integrations (id, workspace_id, integration_type, name, \
            auth_type, created_at, updated_at) VALUES ($1, $2, 'hubspot', 'CRM', 'oauth', $3, $3)",
        &[T(&id("integ")), T(&ws), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO integration_sync_logs (id, workspace_id, integration_id, sync_type, \
            status, started_at) VALUES ($1, $2, $3, 'full', 'started', $4)",
        &[T(&id("sync")), T(&ws), T(&id("integ")), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO integration_accounts (id, workspace_id, account_type, account_name, \
            external_account_id, credentials_encrypted, created_at, updated_at) \
            VALUES ($1, $2, 'twilio', 'Main line', 'AC123', 'sealed', $3, $3)",
        &[T(&id("ia")), T(&ws), I(NOW)],
    )
    .await;

    // A call and what hangs off it.
    ok(
        db,
        "INSERT INTO calls (id, workspace_id, agent_id, phone_number_id, integration_account_id, \
            source, direction, status, caller_number, provider_call_sid, started_at, created_at, \
            updated_at) VALUES ($1, $2, $3, $4, $5, 'twilio', 'inbound', 'in-progress', \
            '+15551230000', $6, $7, $7, $7)",
        &[
            T(&call),
            T(&ws),
            T(&agent),
            T(&number),
            T(&id("ia")),
            T(&id("CA")),
            I(NOW),
        ],
    )
    .await;
    ok(
        db,
        "INSERT INTO call_events (id, workspace_id, call_id, seq, event_type, event_data, \
            timestamp) VALUES ($1, $2, $3, $4, 'answered', '{}', $5)",
        &[T(&id("ev1")), T(&ws), T(&call), I(1), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO call_transcripts (id, workspace_id, call_id, seq, role, content, \
            start_ms, end_ms, duration_ms, confidence, created_at) \
            VALUES ($1, $2, $3, $4, 'user', 'I need a refund', $5, $6, $7, $8, $9)",
        &[
            T(&id("tr1")),
            T(&ws),
            T(&call),
            I(2),
            I(3000),
            I(5200),
            I(2200),
            F(0.93),
            I(NOW),
        ],
    )
    .await;
    ok(
        db,
        "INSERT INTO call_stream_tokens (token_hash, workspace_id, call_id, expires_at, \
            created_at) VALUES ($1, $2, $3, $4, $4)",
        &[T(&id("tok")), T(&ws), T(&call), I(NOW)],
    )
    .await;

    // Billing.
    ok(
        db,
        "INSERT INTO billing_periods (id, workspace_id, period_start, period_end, created_at, \
            updated_at) VALUES ($1, $2, $3, $4, $3, $3)",
        &[T(&id("bp")), T(&ws), I(NOW), I(NOW + 30 * 86_400_000)],
    )
    .await;
    ok(db, "INSERT INTO usage_records (id, workspace_id, call_id, billing_period_id, \
            resource_type, provider, quantity, unit, unit_cost_micros, unit_cost_per, \
            total_cost_micros, final_cost_micros, created_at) \
            VALUES ($1, $2, $3, $4, 'audio_output_tokens', 'openai', $5, 'tokens', $6, $7, $8, $9, $10)",
        &[T(&id("use")), T(&ws), T(&call), T(&id("bp")), I(1000), I(64_000_000), I(1_000_000),
          I(64_000), I(76_800), I(NOW)]).await;
    ok(
        db,
        "INSERT INTO workspace_billing_settings (workspace_id, usage_limit_monthly_micros, \
            updated_at) VALUES ($1, $2, $3)",
        &[T(&ws), I(100_000_000), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO workspace_balances (workspace_id, balance_micros, updated_at) \
            VALUES ($1, $2, $3)",
        &[T(&ws), I(50_000_000), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO balance_transactions (id, workspace_id, type, category, amount_micros, \
            balance_after_micros, created_at) VALUES ($1, $2, 'credit', 'top_up', $3, $3, $4)",
        &[T(&id("btx")), T(&ws), I(50_000_000), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO invoices (id, workspace_id, invoice_number, period_start, period_end, \
            subtotal_micros, tax_micros, total_micros, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $4, $4)",
        &[
            T(&id("inv")),
            T(&ws),
            T(&id("INV-1")),
            I(NOW),
            I(NOW + 1),
            I(100),
            I(10),
            I(110),
        ],
    )
    .await;
    ok(
        db,
        "INSERT INTO invoice_items (id, workspace_id, invoice_id, description, quantity, \
            unit_price_micros, amount_micros, created_at) \
            VALUES ($1, $2, $3, 'Call minutes', $4, $5, $6, $7)",
        &[
            T(&id("item")),
            T(&ws),
            T(&id("inv")),
            I(2),
            I(50),
            I(100),
            I(NOW),
        ],
    )
    .await;

    // Scheduling and notifications.
    ok(
        db,
        "INSERT INTO appointments (id, workspace_id, call_id, agent_id, guest_name, start_at, \
            end_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'Jo', $5, $6, $5, $5)",
        &[
            T(&id("appt")),
            T(&ws),
            T(&call),
            T(&agent),
            I(NOW),
            I(NOW + 1_800_000),
        ],
    )
    .await;
    ok(
        db,
        "INSERT INTO availability_slots (id, workspace_id, day_of_week, start_minute, \
            end_minute, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[T(&id("slot")), T(&ws), I(1), I(540), I(1020), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO blocked_dates (id, workspace_id, blocked_date, created_at) \
            VALUES ($1, $2, '2026-12-25', $3)",
        &[T(&id("hol")), T(&ws), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO notifications (id, workspace_id, appointment_id, channel, recipient, \
            cost_micros, created_at) VALUES ($1, $2, $3, 'sms', '+15551230000', $4, $5)",
        &[T(&id("note")), T(&ws), T(&id("appt")), I(7_900), I(NOW)],
    )
    .await;

    // Customer webhooks.
    ok(
        db,
        "INSERT INTO webhook_endpoints (id, workspace_id, url, secret_encrypted, events, \
            created_at, updated_at) VALUES ($1, $2, 'https://example.com/hook', 'sealed', \
            '[\"call.completed\"]', $3, $3)",
        &[T(&id("hook")), T(&ws), I(NOW)],
    )
    .await;
    ok(
        db,
        "INSERT INTO webhook_deliveries (id, workspace_id, endpoint_id, event, payload, \
            created_at) VALUES ($1, $2, $3, 'call.completed', '{}', $4)",
        &[T(&id("dlv")), T(&ws), T(&id("hook")), I(NOW)],
    )
    .await;

    Tenant { ws, agent, call }
}

/// Every table with a workspace_id column (0001's and 0002's).
const TENANT_TABLES: &[&str] = &[
    "phone_numbers",
    "voice_agents",
    "workspace_provider_configs",
    "workspace_provider_strategies",
    "workspace_integrations",
    "integration_sync_logs",
    "integration_accounts",
    "calls",
    "call_events",
    "call_transcripts",
    "call_stream_tokens",
    "billing_periods",
    "usage_records",
    "workspace_billing_settings",
    "workspace_balances",
    "balance_transactions",
    "invoices",
    "invoice_items",
    "appointments",
    "availability_slots",
    "blocked_dates",
    "notifications",
    "webhook_endpoints",
    "webhook_deliveries",
];

#[tokio::test]
async fn migrations_apply_on_both_dialects_and_rerun_as_no_ops() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        // Running again must find nothing pending (and not fail on changed checksums).
        t.db.migrate().await.expect("second migrate is a no-op");
        for table in TENANT_TABLES.iter().chain(&[
            "platform_provider_configs",
            "provider_health_status",
            "realtime_models",
            "stripe_events",
        ]) {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&t.db.pool)
                .await
                .unwrap_or_else(|e| panic!("{dialect:?}: table {table} missing: {e}"));
        }
        // A fully populated tenant proves every table accepts a realistic row.
        tenant(&t.db, 1).await;
    }
}

#[tokio::test]
async fn check_constraints_reject_values_outside_closed_sets() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;

        // 'in_progress' is the call-feature seed's spelling; ours is Twilio's 'in-progress'.
        let r = exec(
            db,
            "INSERT INTO calls (id, workspace_id, source, direction, status, \
                started_at, created_at, updated_at) VALUES ('c2', $1, 'web', 'inbound', \
                'in_progress', $2, $2, $2)",
            &[T(&a.ws), I(NOW)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["calls_status_check"]);
        let r = exec(
            db,
            "UPDATE calls SET source = 'fax' WHERE id = $1",
            &[T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["calls_source_check"]);
        let r = exec(
            db,
            "UPDATE calls SET direction = 'sideways' WHERE id = $1",
            &[T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["calls_direction_check"]);
        let r = exec(
            db,
            "UPDATE calls SET ended_at = $1 WHERE id = $2",
            &[I(NOW - 1), T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["calls_times_check"]);

        let r = exec(
            db,
            "UPDATE call_transcripts SET role = 'agent' WHERE call_id = $1",
            &[T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["call_transcripts_role_check"]);
        let r = exec(
            db,
            "UPDATE call_transcripts SET confidence = $1 WHERE call_id = $2",
            &[F(1.5), T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["call_transcripts_confidence_check"]);
        let r = exec(
            db,
            "UPDATE call_transcripts SET end_ms = $1 WHERE call_id = $2",
            &[I(9999), T(&a.call)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["call_transcripts_times_check"]);

        // Booleans are 0/1 only.
        let r = exec(
            db,
            "UPDATE webhook_endpoints SET is_active = $1 WHERE workspace_id = $2",
            &[I(2), T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["webhook_endpoints_is_active_check"]);

        let r = exec(
            db,
            "UPDATE workspace_provider_strategies SET strategy = 'cheapest' \
                WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            CHECK,
            &["workspace_provider_strategies_strategy_check"],
        );
        let r = exec(
            db,
            "UPDATE workspace_provider_strategies SET strategy = 'specific' \
                WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            CHECK,
            &["workspace_provider_strategies_specific_check"],
        );
        let r = exec(
            db,
            "UPDATE workspace_provider_configs SET uses_platform_key = $1 \
                WHERE workspace_id = $2",
            &[I(0), T(&a.ws)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            CHECK,
            &["workspace_provider_configs_own_key_check"],
        );

        let r = exec(
            db,
            "INSERT INTO provider_health_status (provider, region, status, \
                last_check_at) VALUES ('openai', 'us', 'unknown', $1)",
            &[I(NOW)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["provider_health_status_status_check"]);
        let r = exec(
            db,
            "UPDATE realtime_models SET model_type = 'video' WHERE id = 'rm_echo'",
            &[],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["realtime_models_model_type_check"]);
        let r = exec(
            db,
            "UPDATE integration_accounts SET account_type = 'skype' \
                WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            CHECK,
            &["integration_accounts_account_type_check"],
        );

        // Money: a debit must be negative, an invoice must add up, a markup can't discount.
        let r = exec(
            db,
            "INSERT INTO balance_transactions (id, workspace_id, type, category, \
                amount_micros, balance_after_micros, created_at) \
                VALUES ('btx2', $1, 'debit', 'call', $2, $3, $4)",
            &[T(&a.ws), I(1_000), I(51_000_000), I(NOW)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["balance_transactions_sign_check"]);
        let r = exec(
            db,
            "UPDATE balance_transactions SET category = 'gift' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["balance_transactions_category_check"]);
        let r = exec(
            db,
            "UPDATE invoices SET total_micros = $1 WHERE workspace_id = $2",
            &[I(999), T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["invoices_amounts_check"]);
        let r = exec(
            db,
            "UPDATE invoices SET status = 'sent' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["invoices_status_check"]);
        let r = exec(
            db,
            "UPDATE usage_records SET final_cost_micros = $1 WHERE workspace_id = $2",
            &[I(1), T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["usage_records_costs_check"]);
        let r = exec(
            db,
            "UPDATE usage_records SET unit = 'minutes' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["usage_records_unit_check"]);
        let r = exec(
            db,
            "UPDATE usage_records SET price_fallback = 2 WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["usage_records_price_fallback_check"]);
        let r = exec(
            db,
            "UPDATE billing_periods SET status = 'open' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["billing_periods_status_check"]);

        // Scheduling.
        let r = exec(
            db,
            "UPDATE availability_slots SET day_of_week = $1 WHERE workspace_id = $2",
            &[I(7), T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["availability_slots_day_of_week_check"]);
        let r = exec(
            db,
            "UPDATE availability_slots SET end_minute = $1 WHERE workspace_id = $2",
            &[I(500), T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["availability_slots_minutes_check"]);
        let r = exec(
            db,
            "UPDATE blocked_dates SET blocked_date = '25/12/2026' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["blocked_dates_format_check"]);
        let r = exec(
            db,
            "UPDATE appointments SET status = 'maybe' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["appointments_status_check"]);
        let r = exec(
            db,
            "UPDATE notifications SET channel = 'fax' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["notifications_channel_check"]);
        let r = exec(
            db,
            "UPDATE webhook_deliveries SET status = 'lost' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        assert_violation(dialect, r, CHECK, &["webhook_deliveries_status_check"]);

        // Every value each closed set allows is accepted (the checks are not too strict).
        for status in [
            "queued",
            "ringing",
            "in-progress",
            "completed",
            "failed",
            "busy",
            "no-answer",
            "canceled",
        ] {
            ok(
                db,
                "UPDATE calls SET status = $1 WHERE id = $2",
                &[T(status), T(&a.call)],
            )
            .await;
        }
        for source in ["twilio", "web", "whatsapp", "custom"] {
            ok(
                db,
                "UPDATE calls SET source = $1 WHERE id = $2",
                &[T(source), T(&a.call)],
            )
            .await;
        }
        for strategy in ["auto", "cost_optimized", "quality_first", "custom"] {
            ok(
                db,
                "UPDATE workspace_provider_strategies SET strategy = $1 WHERE workspace_id = $2",
                &[T(strategy), T(&a.ws)],
            )
            .await;
        }
        ok(
            db,
            "UPDATE workspace_provider_strategies SET strategy = 'specific', \
                preferred_provider = 'gemini' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
    }
}

#[tokio::test]
async fn deleting_a_workspace_removes_every_row_it_owns_and_nothing_else() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        let b = tenant(db, 2).await;
        for table in TENANT_TABLES {
            assert_eq!(
                count(db, table, &a.ws).await,
                1,
                "{dialect:?}: {table} populated"
            );
        }

        let deleted = exec(db, "DELETE FROM workspaces WHERE id = $1", &[T(&a.ws)])
            .await
            .unwrap();
        assert_eq!(deleted, 1);

        for table in TENANT_TABLES {
            assert_eq!(
                count(db, table, &a.ws).await,
                0,
                "{dialect:?}: {table} cascaded"
            );
            assert_eq!(
                count(db, table, &b.ws).await,
                1,
                "{dialect:?}: {table} of the other tenant kept"
            );
        }
    }
}

#[tokio::test]
async fn a_child_row_cannot_claim_another_workspace() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        let b = tenant(db, 2).await;
        // An event of A's call filed under B would leak into B's queries: refused.
        let r = exec(
            db,
            "INSERT INTO call_events (id, workspace_id, call_id, seq, event_type, \
                timestamp) VALUES ('x', $1, $2, $3, 'answered', $4)",
            &[T(&b.ws), T(&a.call), I(7), I(NOW)],
        )
        .await;
        assert_violation(dialect, r, ErrorKind::ForeignKeyViolation, &[]);
        let r = exec(
            db,
            "INSERT INTO call_transcripts (id, workspace_id, call_id, seq, role, \
                content, start_ms, end_ms, duration_ms, created_at) \
                VALUES ('x', $1, $2, $3, 'user', 'hi', $4, $4, $4, $5)",
            &[T(&b.ws), T(&a.call), I(7), I(0), I(NOW)],
        )
        .await;
        assert_violation(dialect, r, ErrorKind::ForeignKeyViolation, &[]);
    }
}

#[tokio::test]
async fn a_replayed_call_event_or_transcript_turn_is_refused() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        // tenant() stored event seq 1; the media plane delivers it again under a new row id.
        let insert = "INSERT INTO call_events (id, workspace_id, call_id, seq, event_type, \
                      timestamp) VALUES ($1, $2, $3, $4, 'answered', $5)";
        let r = exec(
            db,
            insert,
            &[T("replay"), T(&a.ws), T(&a.call), I(1), I(NOW)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            ErrorKind::UniqueViolation,
            &[
                "call_events_call_seq_key",
                "call_events.call_id, call_events.seq",
            ],
        );
        ok(db, insert, &[T("next"), T(&a.ws), T(&a.call), I(3), I(NOW)]).await;

        // The writer's idempotent form: a replay is silently a no-op on both dialects.
        let upsert = "INSERT INTO call_events (id, workspace_id, call_id, seq, event_type, \
                      timestamp) VALUES ($1, $2, $3, $4, 'answered', $5) \
                      ON CONFLICT (call_id, seq) DO NOTHING";
        let n = exec(
            db,
            upsert,
            &[T("replay2"), T(&a.ws), T(&a.call), I(3), I(NOW)],
        )
        .await
        .unwrap();
        assert_eq!(n, 0, "{dialect:?}: replay wrote a row");
        assert_eq!(count(db, "call_events", &a.ws).await, 2);

        let r = exec(
            db,
            "INSERT INTO call_transcripts (id, workspace_id, call_id, seq, role, \
                content, start_ms, end_ms, duration_ms, created_at) \
                VALUES ('again', $1, $2, $3, 'user', 'I need a refund', $4, $5, $6, $7)",
            &[
                T(&a.ws),
                T(&a.call),
                I(2),
                I(3000),
                I(5200),
                I(2200),
                I(NOW),
            ],
        )
        .await;
        assert_violation(
            dialect,
            r,
            ErrorKind::UniqueViolation,
            &[
                "call_transcripts_call_seq_key",
                "call_transcripts.call_id, call_transcripts.seq",
            ],
        );
    }
}

#[tokio::test]
async fn micro_dollars_above_2_pow_53_round_trip_exactly() {
    // 2^53 + 1 is the first integer an f64 cannot hold: any float on the path rounds it.
    const BIG: i64 = (1 << 53) + 1;
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        ok(
            db,
            "UPDATE workspace_balances SET balance_micros = $1 WHERE workspace_id = $2",
            &[I(BIG), T(&a.ws)],
        )
        .await;
        let back: i64 = sqlx::query_scalar(
            "SELECT balance_micros FROM workspace_balances WHERE workspace_id = $1",
        )
        .bind(a.ws.clone())
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(back, BIG, "{dialect:?}");

        // Sums too, through the portable CAST(SUM(..) AS BIGINT) form.
        ok(
            db,
            "UPDATE usage_records SET total_cost_micros = $1, final_cost_micros = $1 \
                WHERE workspace_id = $2",
            &[I(BIG), T(&a.ws)],
        )
        .await;
        ok(
            db,
            "INSERT INTO usage_records (id, workspace_id, resource_type, provider, quantity, \
                unit, unit_cost_micros, total_cost_micros, final_cost_micros, created_at) \
                VALUES ('u2', $1, 'sms', 'twilio', $2, 'count', $3, $3, $3, $4)",
            &[T(&a.ws), I(1), I(1), I(NOW)],
        )
        .await;
        let sum: i64 = sqlx::query_scalar(
            "SELECT CAST(SUM(final_cost_micros) AS BIGINT) FROM usage_records WHERE workspace_id = $1",
        )
        .bind(a.ws.clone())
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(sum, BIG + 1, "{dialect:?}");
    }
}

#[tokio::test]
async fn seeded_tiers_and_model_catalogue_are_present_and_usable() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let tiers: Vec<String> = sqlx::query_scalar(
            "SELECT tier_name FROM subscription_tiers ORDER BY monthly_fee_micros",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        // New workspaces default to 'starter' (a foreign key), so it must always exist.
        for tier in ["starter", "professional", "enterprise"] {
            assert!(
                tiers.iter().any(|t| t == tier),
                "{dialect:?}: tier {tier} missing"
            );
        }

        let rows = sqlx::query(
            "SELECT provider, model_name, model_type, supports_audio, is_active, \
             audio_output_per_mtok_micros, session_per_minute_micros FROM realtime_models",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let get = |name: &str| {
            rows.iter()
                .find(|r| r.get::<String, _>("model_name") == name)
                .unwrap_or_else(|| panic!("{dialect:?}: model {name} not seeded"))
        };
        for name in [
            "gpt-realtime",
            "gpt-realtime-mini",
            "gemini-live-2.5-flash-preview",
            "convai",
            "voice-agent",
            "echo",
        ] {
            let r = get(name);
            assert_eq!(r.get::<String, _>("model_type"), "call");
            assert_eq!(r.get::<i64, _>("supports_audio"), 1);
            assert_eq!(r.get::<i64, _>("is_active"), 1);
        }
        // Token-billed models have token prices, minute-billed ones a minute price, echo none.
        assert_eq!(
            get("gpt-realtime").get::<i64, _>("audio_output_per_mtok_micros"),
            64_000_000
        );
        assert!(get("voice-agent").get::<i64, _>("session_per_minute_micros") > 0);
        let echo = get("echo");
        assert_eq!(echo.get::<i64, _>("audio_output_per_mtok_micros"), 0);
        assert_eq!(echo.get::<i64, _>("session_per_minute_micros"), 0);

        // Every catalogue provider is one the media plane has an adapter for.
        for r in &rows {
            let provider: String = r.get("provider");
            serde_json::from_value::<ProviderKind>(serde_json::Value::String(provider.clone()))
                .unwrap_or_else(|_| {
                    panic!("{dialect:?}: seeded provider {provider:?} is not a ProviderKind")
                });
        }
        // UNIQUE (provider, model_name): the catalogue can't list a model twice.
        let r = exec(
            db,
            "INSERT INTO realtime_models (id, provider, model_name, display_name, \
                created_at, updated_at) VALUES ('dup', 'openai', 'gpt-realtime', 'Dup', $1, $1)",
            &[I(NOW)],
        )
        .await;
        assert_violation(
            dialect,
            r,
            ErrorKind::UniqueViolation,
            &[
                "realtime_models_provider_model_name_key",
                "realtime_models.provider, realtime_models.model_name",
            ],
        );
    }
}

#[tokio::test]
async fn deleting_an_agent_keeps_its_call_history() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        ok(db, "DELETE FROM voice_agents WHERE id = $1", &[T(&a.agent)]).await;
        let agent: Option<String> = sqlx::query_scalar("SELECT agent_id FROM calls WHERE id = $1")
            .bind(a.call.clone())
            .fetch_one(&db.pool)
            .await
            .expect("the call survives its agent");
        assert_eq!(agent, None, "{dialect:?}");
        assert_eq!(count(db, "call_transcripts", &a.ws).await, 1, "{dialect:?}");
        assert_eq!(count(db, "usage_records", &a.ws).await, 1, "{dialect:?}");
    }
}

#[tokio::test]
async fn a_workspace_has_at_most_one_current_billing_period() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        let next = NOW + 30 * 86_400_000;
        let insert = "INSERT INTO billing_periods (id, workspace_id, period_start, period_end, \
                      status, created_at, updated_at) VALUES ('bp2', $1, $2, $3, $4, $2, $2)";
        let r = exec(db, insert, &[T(&a.ws), I(next), I(next + 1), T("current")]).await;
        assert_violation(
            dialect,
            r,
            ErrorKind::UniqueViolation,
            &["idx_billing_one_current", "billing_periods.workspace_id"],
        );
        // Once the old one is finalized, the next may become current.
        ok(
            db,
            "UPDATE billing_periods SET status = 'finalized' WHERE workspace_id = $1",
            &[T(&a.ws)],
        )
        .await;
        ok(db, insert, &[T(&a.ws), I(next), I(next + 1), T("current")]).await;
    }
}

#[tokio::test]
async fn both_dialects_define_the_same_tables_columns_and_indexes() {
    // The two migration folders are written by hand; this catches one drifting from the
    // other (a column added to one file only, an index forgotten).
    let Some(pg) = TestDb::new(Dialect::Postgres).await else {
        return;
    };
    let lite = TestDb::new(Dialect::Sqlite)
        .await
        .expect("sqlite is always on");

    let lite_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' \
         ORDER BY 1, 2",
    )
    .fetch_all(&lite.db.pool)
    .await
    .unwrap();
    let pg_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1, 2",
    )
    .fetch_all(&pg.db.pool)
    .await
    .unwrap();
    assert!(
        lite_columns.len() > 300,
        "schema looks empty: {}",
        lite_columns.len()
    );
    assert_eq!(lite_columns, pg_columns);

    let lite_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx\\_%' ESCAPE '\\' \
         ORDER BY 1",
    )
    .fetch_all(&lite.db.pool)
    .await
    .unwrap();
    let pg_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE schemaname = 'public' \
         AND indexname LIKE 'idx\\_%' AND indexname <> 'idx_call_transcripts_content_search' \
         ORDER BY 1",
    )
    .fetch_all(&pg.db.pool)
    .await
    .unwrap();
    assert_eq!(lite_indexes, pg_indexes);
}

#[tokio::test]
async fn transcripts_are_searchable_by_word_in_each_dialect() {
    for dialect in dialects() {
        let Some(t) = TestDb::new(dialect).await else {
            continue;
        };
        let db = &t.db;
        let a = tenant(db, 1).await;
        let b = tenant(db, 2).await;
        // Postgres uses the GIN-indexed expression (it must match the index's exactly);
        // SQLite falls back to LIKE.
        let sql = match dialect {
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM call_transcripts WHERE workspace_id = $1 \
                 AND to_tsvector('english', content) @@ plainto_tsquery('english', $2)"
            }
            Dialect::Sqlite => {
                "SELECT COUNT(*) FROM call_transcripts WHERE workspace_id = $1 \
                 AND content LIKE '%' || $2 || '%'"
            }
        };
        let hits = |ws: String, word: &'static str| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(ws)
                .bind(word)
                .fetch_one(&db.pool)
        };
        assert_eq!(
            hits(a.ws.clone(), "refund").await.unwrap(),
            1,
            "{dialect:?}"
        );
        assert_eq!(
            hits(a.ws.clone(), "invoice").await.unwrap(),
            0,
            "{dialect:?}"
        );
        // B said the same words; A's search must not count them.
        assert_eq!(count(db, "call_transcripts", &b.ws).await, 1);
        ok(
            db,
            "UPDATE call_transcripts SET content = 'Please refund me' WHERE workspace_id = $1",
            &[T(&b.ws)],
        )
        .await;
        assert_eq!(
            hits(a.ws.clone(), "refund").await.unwrap(),
            1,
            "{dialect:?}"
        );
        assert_eq!(
            hits(b.ws.clone(), "refund").await.unwrap(),
            1,
            "{dialect:?}"
        );
    }
}
