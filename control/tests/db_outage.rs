//! The database goes away while calls are up (issue 19, review L10): the calls go on,
//! the event queue stays bounded in memory (the rest waits in a journal on disk), and once
//! the database is back every event is applied: no billable event is lost, and the time
//! the events waited is not billed as call time.
//!
//! Outages: on SQLite another connection holds the write lock (writes wait, then fail
//! busy) or the database is full (`max_page_count`: SQLITE_FULL, as on a full disk); on
//! Postgres the test database stops taking connections and its sessions are killed (the
//! shared server stays up for everyone else).

mod support;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor};
use std::time::Duration;
use support::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TestApp};
use vocalized_control::calls::backlog::BacklogLimits;
use vocalized_control::calls::link::{EventQueueConfig, InProcessLink};
use vocalized_control::db::Dialect;
use vocalized_control::testing::TempDir;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason, Role, Usage};
use vocalized_shared::ids::CallId;
use vocalized_shared::link::ControlLink;

const NUMBER: &str = "+14155550100";
const CALLS: usize = 50;
/// Transcript turns each call says while the database is away.
const TURNS: u64 = 20;
/// Events each call emits: answered, the turns, usage, ended.
const EVENTS_PER_CALL: u64 = TURNS + 3;
/// How long each call lasted by its own clock.
const CALL_MS: u64 = 61_000;
/// The writer's memory bound in these tests: far below the 1 150 events of the outage.
const MEMORY_EVENTS: usize = 100;

/// A live agent on NUMBER (verified), in a workspace on the enterprise tier, which caps
/// no calls at once (50 calls are more than starter's 25); returns the workspace id.
async fn live_agent(app: &TestApp) -> String {
    let config = json!({ "instructions": "Be brief." });
    let ws = app
        .live_agent("owner@outage.example", NUMBER, true, config)
        .await
        .workspace_id;
    sqlx::query("UPDATE workspaces SET subscription_tier = 'enterprise' WHERE id = $1")
        .bind(&ws)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    ws
}

/// Answers `count` phone calls through the webhook and the stream token; their ids.
async fn start_calls(app: &TestApp, link: &InProcessLink, count: usize) -> Vec<CallId> {
    let mut calls = Vec::with_capacity(count);
    for i in 0..count {
        let sid = format!("CAoutage{i:04}");
        let params = [
            ("AccountSid", TWILIO_ACCOUNT_SID),
            ("CallSid", sid.as_str()),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", "+12349013030"),
            ("To", NUMBER),
        ];
        let (status, twiml) = app
            .twilio("/webhooks/calls/inbound", &params, Some(TWILIO_AUTH_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK);
        let marker = r#"name="token" value=""#;
        let start = twiml.find(marker).expect("stream token") + marker.len();
        let token = twiml[start..].split('"').next().unwrap();
        let plan = link
            .plan_twilio_call(token, &format!("MZ{i}"))
            .await
            .expect("plan");
        calls.push(plan.call_id);
    }
    calls
}

fn event(seq: u64, at_ms: u64, kind: CallEventKind) -> CallEvent {
    CallEvent { seq, at_ms, kind }
}

fn turn(seq: u64) -> CallEventKind {
    CallEventKind::Transcript {
        role: if seq % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        },
        text: format!(
            "Turn {seq}: {}",
            "I would like to book a haircut on Tuesday. ".repeat(4)
        ),
        start_ms: seq * 1_000,
        end_ms: seq * 1_000 + 800,
        confidence: None,
        truncated: false,
    }
}

fn usage() -> CallEventKind {
    CallEventKind::Usage {
        provider: "openai".into(),
        model: "gpt-realtime".into(),
        usage: Usage {
            input_audio_tokens: 900,
            output_audio_tokens: 300,
            ..Usage::default()
        },
    }
}

/// The rest of every call after `answered`, emitted round by round as 50 live calls would
/// (each call a turn, then the calls' tasks yield), so the writer drains the channel
/// between rounds.
async fn emit_the_rest(link: &InProcessLink, calls: &[CallId]) {
    for seq in 2..TURNS + 2 {
        for call in calls {
            link.emit(call, event(seq, seq * 1_000, turn(seq)));
        }
        tokio::task::yield_now().await;
    }
    for call in calls {
        link.emit(call, event(TURNS + 2, CALL_MS - 500, usage()));
    }
    tokio::task::yield_now().await;
    for call in calls {
        link.emit(
            call,
            event(
                TURNS + 3,
                CALL_MS,
                CallEventKind::Ended(EndReason::CallerHangup),
            ),
        );
    }
    tokio::task::yield_now().await;
}

/// Waits (bounded) until the writer has applied `n` events in all.
async fn written(link: &InProcessLink, n: u64) {
    for _ in 0..1_500 {
        if link.queue().stats().written >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer never caught up: {:?}", link.queue().stats());
}

/// Every call is completed, priced, with all its events and its own duration.
async fn assert_all_calls_whole(app: &TestApp, calls: usize) {
    let total = calls as i64;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_events").await,
        total * EVENTS_PER_CALL as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_transcripts").await,
        total * TURNS as i64
    );
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT call_id) FROM usage_records")
            .await,
        total
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM calls WHERE status = 'completed' AND cost_total_micros > 0"
        )
        .await,
        total,
        "every call finalised and priced"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM calls WHERE duration_seconds = 61")
            .await,
        total,
        "billed for 61 s each, not for the time the events waited"
    );
}

fn journal_config(dir: &TempDir) -> EventQueueConfig {
    EventQueueConfig {
        channel_events: 256,
        backlog: BacklogLimits {
            memory_events: MEMORY_EVENTS,
            journal_path: Some(dir.0.join("call-events.journal")),
            journal_max_bytes: 64 * 1024 * 1024,
        },
        max_retry_delay: Duration::from_millis(200),
    }
}

/// A way to take the test database away and bring it back.
enum Outage {
    /// Another SQLite connection holds the write lock.
    SqliteLock(sqlx::AnyConnection),
    /// The Postgres test database refuses connections; `admin` brings it back.
    PostgresClosed { admin: sqlx::AnyPool, name: String },
}

impl Outage {
    async fn begin(app: &TestApp) -> Self {
        let url = app.state.config.database_url.clone();
        match app.state.db.dialect {
            Dialect::Sqlite => {
                let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
                conn.execute("BEGIN EXCLUSIVE").await.unwrap();
                Outage::SqliteLock(conn)
            }
            Dialect::Postgres => {
                let admin_url = vocalized_control::testing::postgres_admin_url().unwrap();
                let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
                let name = url::Url::parse(&url).unwrap().path()[1..].to_owned();
                assert!(name.starts_with("vz_test_"), "only a test database: {name}");
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
                    )))
                    .await
                    .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .fetch_all(&admin)
                .await
                .unwrap();
                Outage::PostgresClosed { admin, name }
            }
        }
    }

    async fn end(self) {
        match self {
            Outage::SqliteLock(mut conn) => {
                conn.execute("COMMIT").await.unwrap();
                conn.close().await.unwrap();
            }
            Outage::PostgresClosed { admin, name } => {
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                    )))
                    .await
                    .unwrap();
                admin.close().await;
            }
        }
    }
}

async fn fifty_calls_ride_out_a_database_outage(app: TestApp) {
    live_agent(&app).await;
    let dir = TempDir::new("vz-outage");
    let (link, writer) = InProcessLink::start_with(app.state.clone(), journal_config(&dir));
    let calls = start_calls(&app, &link, CALLS).await;
    for call in &calls {
        link.emit(call, event(1, 0, CallEventKind::Answered));
    }
    written(&link, CALLS as u64).await;

    let outage = Outage::begin(&app).await;
    emit_the_rest(&link, &calls).await;
    let during = link.queue().stats();
    assert_eq!(during.written, CALLS as u64, "nothing written while away");
    let waiting = during.backlog.queued_in_memory as u64 + during.backlog.queued_in_journal;
    assert!(
        waiting + 256 >= CALLS as u64 * (EVENTS_PER_CALL - 1),
        "the events wait in the backlog: {during:?}"
    );
    assert!(
        during.backlog.queued_in_journal > 0,
        "past the memory bound they wait on disk: {during:?}"
    );
    outage.end().await;

    written(&link, CALLS as u64 * EVENTS_PER_CALL).await;
    let after = link.queue().stats();
    assert!(
        after.backlog.peak_in_memory <= MEMORY_EVENTS + 256,
        "memory stayed bounded (+ one batch put back): {after:?}"
    );
    assert_eq!(after.backlog.dropped_non_billable, 0, "{after:?}");
    assert_eq!(after.dropped_channel_full, 0, "{after:?}");
    assert_eq!(after.backlog.journal_bytes, 0, "journal emptied: {after:?}");
    assert_all_calls_whole(&app, CALLS).await;
    drop(link);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer ends with its link")
        .unwrap();
}

on_both_databases!(fifty_calls_ride_out_a_database_outage);

/// Sets `max_page_count` on every pooled SQLite connection: at the current size the
/// database is "full" (SQLITE_FULL, as on a full disk); a large value lifts that.
async fn sqlite_max_pages(app: &TestApp, pages: i64) {
    let pool = &app.state.db.pool;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&mut **conn)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_without_a_panic_or_a_lost_billable_event() {
    let app = TestApp::new(Dialect::Sqlite).await.unwrap();
    live_agent(&app).await;
    let dir = TempDir::new("vz-full");
    let (link, writer) = InProcessLink::start_with(app.state.clone(), journal_config(&dir));
    let calls = start_calls(&app, &link, 10).await;
    for call in &calls {
        link.emit(call, event(1, 0, CallEventKind::Answered));
    }
    written(&link, 10).await;

    sqlite_max_pages(&app, 1).await;
    emit_the_rest(&link, &calls).await;
    for _ in 0..500 {
        if link.queue().stats().write_failures >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let full = link.queue().stats();
    assert!(
        full.write_failures >= 2,
        "writes fail and are retried: {full:?}"
    );
    assert_eq!(full.written, 10, "{full:?}");
    sqlite_max_pages(&app, 1_073_741_823).await;

    written(&link, 10 * EVENTS_PER_CALL).await;
    assert_all_calls_whole(&app, 10).await;
    drop(link);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer ends with its link")
        .unwrap();
}

/// The channel from the calls to the writer is full (the writer has not run): `emit`
/// still returns at once; non-billable events are dropped and counted, billable ones wait
/// in the overflow list and all land.
#[tokio::test]
async fn a_full_channel_never_blocks_emit_nor_drops_a_billable_event() {
    let app = TestApp::new(Dialect::Sqlite).await.unwrap();
    live_agent(&app).await;
    let config = EventQueueConfig {
        channel_events: 8,
        ..EventQueueConfig::default()
    };
    let (link, writer) = InProcessLink::start_with(app.state.clone(), config);
    let calls = start_calls(&app, &link, 5).await;
    // No await between emits: on this single-threaded runtime the writer cannot run.
    for call in &calls {
        link.emit(call, event(1, 0, CallEventKind::Answered));
        for seq in 2..TURNS + 2 {
            link.emit(call, event(seq, seq * 1_000, turn(seq)));
        }
        link.emit(call, event(TURNS + 2, CALL_MS - 500, usage()));
        link.emit(
            call,
            event(
                TURNS + 3,
                CALL_MS,
                CallEventKind::Ended(EndReason::CallerHangup),
            ),
        );
    }
    let s = link.queue().stats();
    // The first call's answered and 7 turns fill the channel; everything after waits
    // (billable) or is dropped (the other 93 turns).
    assert_eq!(s.overflowed_billable, 2 + 4 * 3, "{s:?}");
    assert_eq!(s.dropped_channel_full, 5 * TURNS - 7, "{s:?}");
    drop(link);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer drains and ends")
        .unwrap();
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM calls WHERE status = 'completed' AND cost_total_micros > 0 AND duration_seconds = 61"
        )
        .await,
        5
    );
}
