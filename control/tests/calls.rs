//! The control plane's side of a phone call: the signed voice webhook (admission,
//! refusals, TwiML), redeeming the one-time stream token for a plan, applying the media
//! plane's events (idempotently), pricing, the status callback and the calls read API.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TestApp};
use vocalized_control::calls::link::InProcessLink;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason, Role, Usage};
use vocalized_shared::link::{ControlLink, PlanError};

const NUMBER: &str = "+14155550100";

/// A workspace with a live agent on NUMBER; returns (owner token, workspace id, agent id).
async fn live_agent(app: &TestApp) -> (String, String, String) {
    let config = json!({ "instructions": "Be brief.", "call": { "maxCallDuration": 300 } });
    let a = app
        .live_agent("owner@salon.example", NUMBER, true, config)
        .await;
    (a.token, a.workspace_id, a.agent_id)
}

fn voice_params(call_sid: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", TWILIO_ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+12349013030"),
        ("To", NUMBER),
    ]
}

fn stream_token(twiml: &str) -> String {
    let start = twiml
        .find(r#"name="token" value=""#)
        .expect("token parameter")
        + r#"name="token" value=""#.len();
    twiml[start..].split('"').next().unwrap().to_owned()
}

async fn bad_or_missing_signatures_are_refused_and_write_nothing(app: TestApp) {
    live_agent(&app).await;
    let (status, _) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CA1"),
            Some("wrong-token"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .twilio("/webhooks/calls/inbound", &voice_params("CA1"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Signed for another URL (e.g. replayed against another endpoint).
    let (status, _) = app
        .twilio(
            "/webhooks/calls/status",
            &voice_params("CA1"),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_stream_tokens").await,
        0
    );
}

async fn unknown_numbers_hear_not_in_service(app: TestApp) {
    let mut params = voice_params("CA2");
    params.retain(|(k, _)| *k != "To");
    params.push(("To", "+19995550000"));
    let (status, twiml) = app
        .twilio("/webhooks/calls/inbound", &params, Some(TWILIO_AUTH_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml
            .contains("<Say>The number you have called is not in service. Goodbye.</Say><Hangup/>"),
        "{twiml}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 0);
}

async fn refusals_hang_up_politely_and_record_why(app: TestApp) {
    let (token, ws, agent) = live_agent(&app).await;
    let pool = &app.state.db.pool;
    let cases: Vec<(&str, &str, &str, &'static str)> = vec![
        (
            "UPDATE voice_agents SET status = 'paused' WHERE id = $1",
            "UPDATE voice_agents SET status = 'live' WHERE id = $1",
            "agent_not_live",
            "CAr1",
        ),
        (
            "UPDATE workspaces SET call_enabled = 0 WHERE id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "UPDATE workspaces SET call_enabled = 1 WHERE id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "calling_disabled",
            "CAr2",
        ),
        (
            "UPDATE workspaces SET status = 'suspended' WHERE id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "UPDATE workspaces SET status = 'active' WHERE id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "workspace_suspended",
            "CAr3",
        ),
        (
            "INSERT INTO workspace_balances (workspace_id, balance_micros, updated_at) SELECT workspace_id, 0, 0 FROM voice_agents WHERE id = $1",
            "DELETE FROM workspace_balances WHERE workspace_id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "balance_exhausted",
            "CAr4",
        ),
        (
            "INSERT INTO workspace_billing_settings (workspace_id, usage_limit_monthly_micros, updated_at) SELECT workspace_id, 0, 0 FROM voice_agents WHERE id = $1",
            "DELETE FROM workspace_billing_settings WHERE workspace_id = (SELECT workspace_id FROM voice_agents WHERE id = $1)",
            "usage_limit_reached",
            "CAr5",
        ),
    ];
    for (break_it, mend_it, code, sid) in cases {
        sqlx::query(sqlx::AssertSqlSafe(break_it.to_owned()))
            .bind(&agent)
            .execute(pool)
            .await
            .unwrap();
        let (status, twiml) = app
            .twilio(
                "/webhooks/calls/inbound",
                &voice_params(sid),
                Some(TWILIO_AUTH_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{code}");
        assert!(
            twiml.contains("<Say>") && twiml.ends_with("<Hangup/></Response>"),
            "{code}: {twiml}"
        );
        assert!(!twiml.contains("<Connect>"), "{code}");
        let (status_col, error_code): (String, Option<String>) =
            sqlx::query_as("SELECT status, error_code FROM calls WHERE provider_call_sid = $1")
                .bind(sid)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            (status_col.as_str(), error_code.as_deref()),
            ("failed", Some(code))
        );
        sqlx::query(sqlx::AssertSqlSafe(mend_it.to_owned()))
            .bind(&agent)
            .execute(pool)
            .await
            .unwrap();
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_stream_tokens").await,
        0
    );
    // The refused calls show in the workspace's call list with their reasons.
    let list = app
        .get(
            &format!("/api/v1/workspaces/{ws}/calls?status=failed"),
            &token,
        )
        .await;
    assert_eq!(list.body["total"], 5);
}

async fn a_whole_call_from_webhook_to_priced_transcript(app: TestApp) {
    let (token, ws, agent) = live_agent(&app).await;
    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CAwhole"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains(r#"<Connect><Stream url="wss://gw.example.com/media/twilio">"#),
        "{twiml}"
    );
    let stream = stream_token(&twiml);

    let (link, _writer) = InProcessLink::start(app.state.clone());
    let plan = link
        .plan_twilio_call(&stream, "MZstream")
        .await
        .expect("plan");
    assert_eq!(plan.agent_id.as_str(), agent);
    assert_eq!(plan.instructions, "Be brief.");
    assert_eq!(plan.settings.max_call_duration, 300);
    assert_eq!(plan.providers[0].api_key.expose(), "sk-test-platform");
    assert!(
        !format!("{plan:?}").contains("sk-test-platform"),
        "keys never print"
    );
    // The token works once.
    assert_eq!(
        link.plan_twilio_call(&stream, "MZstream").await,
        Err(PlanError::InvalidToken)
    );
    assert_eq!(
        link.plan_twilio_call("made-up", "MZstream").await,
        Err(PlanError::InvalidToken)
    );

    let call_id = plan.call_id.clone();
    let live = app
        .get(&format!("/api/v1/workspaces/{ws}/calls/live"), &token)
        .await;
    assert_eq!(live.body["active_calls"][0]["id"], call_id.as_str());

    let usage = Usage {
        input_text_tokens: 420,
        input_audio_tokens: 900,
        cached_input_tokens: 640,
        output_text_tokens: 40,
        output_audio_tokens: 160,
        ..Usage::default()
    };
    let events = [
        CallEventKind::Answered,
        CallEventKind::Transcript {
            role: Role::Assistant,
            text: "Hello, salon!".into(),
            start_ms: 300,
            end_ms: 1500,
            confidence: None,
            truncated: false,
        },
        CallEventKind::Transcript {
            role: Role::User,
            text: "I need a booking.".into(),
            start_ms: 2000,
            end_ms: 3200,
            confidence: Some(0.93),
            truncated: false,
        },
        CallEventKind::Transcript {
            role: Role::Assistant,
            text: "Sure, when would".into(),
            start_ms: 3600,
            end_ms: 4100,
            confidence: None,
            truncated: true,
        },
        CallEventKind::Usage {
            provider: "openai".into(),
            model: "gpt-realtime".into(),
            usage,
        },
        CallEventKind::Ended(EndReason::CallerHangup),
    ];
    let all: Vec<CallEvent> = events
        .into_iter()
        .enumerate()
        .map(|(i, kind)| CallEvent {
            seq: i as u64 + 1,
            at_ms: i as u64 * 1000,
            kind,
        })
        .collect();
    for e in &all {
        link.emit(&call_id, e.clone());
    }
    // At-least-once delivery: a replay of every event changes nothing.
    for e in &all {
        link.emit(&call_id, e.clone());
    }
    let call_path = format!("/api/v1/workspaces/{ws}/calls/{call_id}");
    let mut call = app.get(&call_path, &token).await;
    for _ in 0..100 {
        if call.body["call"]["status"] == "completed"
            && app.count("SELECT COUNT(*) FROM call_events").await == 6
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        call = app.get(&call_path, &token).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    call = app.get(&call_path, &token).await;
    assert_eq!(call.body["call"]["status"], "completed", "{}", call.body);
    assert_eq!(call.body["call"]["end_reason"], "caller_hangup");
    assert_eq!(call.body["call"]["voice_provider_used"], "openai");
    // 21136 micro-dollars of provider cost (see pricing tests) + 20 % markup, per line.
    let expected: i64 = [1680i64, 8320, 256, 640, 10240]
        .iter()
        .map(|c| c + (c * 2000 + 5000) / 10000)
        .sum();
    assert_eq!(call.body["call"]["cost_total_micros"], expected);
    assert_eq!(call.body["call"]["cost_total"], format!("0.{expected:06}"));
    assert_eq!(app.count("SELECT COUNT(*) FROM usage_records").await, 5);
    assert_eq!(app.count("SELECT COUNT(*) FROM call_events").await, 6);

    let t = app.get(&format!("{call_path}/transcription"), &token).await;
    let turns = t.body["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[0]["role"], "assistant");
    assert_eq!(turns[1]["content"], "I need a booking.");
    assert_eq!(turns[1]["confidence"], 0.93);
    assert_eq!(turns[2]["truncated"], true);
    assert_eq!(turns[2]["duration_ms"], 500);
    assert!(
        t.body["transcription"]
            .as_str()
            .unwrap()
            .starts_with("Agent: Hello, salon!\nCaller: I need a booking.")
    );

    let ev = app.get(&format!("{call_path}/events"), &token).await;
    let types: Vec<&str> = ev.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "answered",
            "transcript",
            "transcript",
            "transcript",
            "usage",
            "ended"
        ]
    );
    assert!(
        app.get(&format!("/api/v1/workspaces/{ws}/calls/live"), &token)
            .await
            .body["active_calls"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Twilio's completed callback records its duration; a retry changes nothing; a late
    // out-of-order 'ringing' cannot reopen the call.
    let mut done = voice_params("CAwhole");
    done.retain(|(k, _)| *k != "CallStatus");
    done.push(("CallStatus", "completed"));
    done.push(("CallDuration", "42"));
    for _ in 0..2 {
        let (status, _) = app
            .twilio("/webhooks/calls/status", &done, Some(TWILIO_AUTH_TOKEN))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, _) = app
        .twilio(
            "/webhooks/calls/status",
            &voice_params("CAwhole"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let call = app.get(&call_path, &token).await;
    assert_eq!(call.body["call"]["duration_seconds"], 42);
    assert_eq!(call.body["call"]["status"], "completed");

    let list = app
        .get(
            &format!("/api/v1/workspaces/{ws}/calls?agent_id={agent}&direction=inbound"),
            &token,
        )
        .await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["calls"][0]["agent_name"], "Front desk");
}

async fn expired_tokens_fail_the_call_and_retried_webhooks_reuse_it(app: TestApp) {
    live_agent(&app).await;
    let (_, first) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CAretry"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    let (_, second) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CAretry"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_ne!(stream_token(&first), stream_token(&second));
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 1);

    sqlx::query("UPDATE call_stream_tokens SET expires_at = 0")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let (link, _writer) = InProcessLink::start(app.state.clone());
    assert_eq!(
        link.plan_twilio_call(&stream_token(&second), "MZ").await,
        Err(PlanError::InvalidToken)
    );
    let (status, code): (String, Option<String>) =
        sqlx::query_as("SELECT status, error_code FROM calls")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("stream_token_expired"))
    );
}

async fn a_workspaces_own_twilio_account_signs_its_numbers(app: TestApp) {
    let (_, ws, _) = live_agent(&app).await;
    let sealed = app
        .state
        .config
        .master_key
        .seal(r#"{"auth_token":"workspace-own-token"}"#);
    sqlx::query(
        "INSERT INTO integration_accounts (id, workspace_id, account_type, account_name, external_account_id,
                                           credentials_encrypted, status, is_active, created_at, updated_at)
         VALUES ('ia_1', $1, 'twilio', 'Our Twilio', 'ACworkspace', $2, 'active', 1, 0, 0)",
    )
    .bind(&ws)
    .bind(&sealed)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let mut params = voice_params("CAown");
    params.retain(|(k, _)| *k != "AccountSid");
    params.push(("AccountSid", "ACworkspace"));
    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &params,
            Some("workspace-own-token"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Connect>"), "{twiml}");
    // The platform token does not sign for the workspace's account.
    let (status, _) = app
        .twilio("/webhooks/calls/inbound", &params, Some(TWILIO_AUTH_TOKEN))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (integration,): (Option<String>,) =
        sqlx::query_as("SELECT integration_account_id FROM calls")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(integration.as_deref(), Some("ia_1"));
}

/// The event writer applies what queued up in one transaction: each event's outcome is
/// its own (a replay is a duplicate, a stranger's call is unknown) and the rest land.
async fn a_batch_of_events_applies_each_once(app: TestApp) {
    use vocalized_control::calls::ingest::{self, Applied};
    live_agent(&app).await;
    let (_, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CAbatch"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let plan = link
        .plan_twilio_call(&stream_token(&twiml), "MZ")
        .await
        .unwrap();
    let call = plan.call_id.as_str();
    let event = |seq, kind| CallEvent {
        seq,
        at_ms: seq * 10,
        kind,
    };
    let answered = event(101, CallEventKind::Answered);
    let said = event(
        102,
        CallEventKind::Transcript {
            role: Role::User,
            text: "Hello there".into(),
            start_ms: 0,
            end_ms: 900,
            confidence: None,
            truncated: false,
        },
    );
    let usage = event(
        103,
        CallEventKind::Usage {
            provider: "openai".into(),
            model: "gpt-4o-mini-transcribe".into(),
            usage: Usage {
                audio_input_ms: 60_000,
                ..Usage::default()
            },
        },
    );
    let applied = ingest::apply_batch(
        &app.state.db,
        &[
            (call, &answered),
            (call, &said),
            ("call_nobody", &said),
            (call, &answered),
            (call, &usage),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        applied,
        [
            Applied::New,
            Applied::New,
            Applied::UnknownCall,
            Applied::Duplicate,
            Applied::New
        ]
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_events WHERE seq > 100")
            .await,
        3
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM call_transcripts").await, 1);
    // One minute at $0.003 = 3000 micro-dollars, plus 20 % markup.
    assert_eq!(
        app.count("SELECT CAST(SUM(final_cost_micros) AS BIGINT) FROM usage_records")
            .await,
        3600
    );
    // Replaying the whole batch (as after a failed commit) changes nothing.
    let again = ingest::apply_batch(&app.state.db, &[(call, &said), (call, &usage)])
        .await
        .unwrap();
    assert_eq!(again, [Applied::Duplicate, Applied::Duplicate]);
    assert_eq!(app.count("SELECT COUNT(*) FROM call_transcripts").await, 1);
    assert_eq!(
        app.count("SELECT CAST(SUM(final_cost_micros) AS BIGINT) FROM usage_records")
            .await,
        3600
    );
}

/// Places a call on NUMBER through the signed webhook and redeems its stream token; returns
/// the call id.
async fn placed_call(app: &TestApp, link: &InProcessLink, call_sid: &'static str) -> String {
    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params(call_sid),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    let plan = link
        .plan_twilio_call(&stream_token(&twiml), "MZ")
        .await
        .unwrap();
    plan.call_id.as_str().to_owned()
}

/// Applies `kinds` to `call` as events 1, 2, ... at the given media-clock times.
async fn apply_all(app: &TestApp, call: &str, kinds: Vec<(u64, CallEventKind)>) {
    use vocalized_control::calls::ingest;
    let events: Vec<CallEvent> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, (at_ms, kind))| CallEvent {
            seq: i as u64 + 1,
            at_ms,
            kind,
        })
        .collect();
    let batch: Vec<(&str, &CallEvent)> = events.iter().map(|e| (call, e)).collect();
    ingest::apply_batch(&app.state.db, &batch).await.unwrap();
    // Replayed (at-least-once delivery): nothing is billed twice.
    ingest::apply_batch(&app.state.db, &batch).await.unwrap();
}

async fn cost_of(app: &TestApp, call: &str) -> i64 {
    let (cost,): (i64,) = sqlx::query_as("SELECT cost_total_micros FROM calls WHERE id = $1")
        .bind(call)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    cost
}

/// M1: a model missing from the catalogue is not free. It is priced at the provider's
/// highest active price for each unit and the rows are flagged for an admin.
async fn unpriced_models_cost_the_providers_highest_price_and_are_flagged(app: TestApp) {
    live_agent(&app).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let call = placed_call(&app, &link, "CAunpriced").await;
    apply_all(
        &app,
        &call,
        vec![(
            1_000,
            CallEventKind::Usage {
                provider: "openai".into(),
                model: "gpt-realtime-2025-08-28".into(),
                usage: Usage {
                    output_audio_tokens: 1_000_000,
                    ..Usage::default()
                },
            },
        )],
    )
    .await;
    // OpenAI's highest audio output price is gpt-realtime's $64/M, plus 20 % markup.
    assert_eq!(cost_of(&app, &call).await, 76_800_000);
    let (cost, flagged): (i64, i64) = sqlx::query_as(
        "SELECT total_cost_micros, CAST(price_fallback AS BIGINT) FROM usage_records WHERE call_id = $1",
    )
    .bind(&call)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!((cost, flagged), (64_000_000, 1));

    // A catalogued model is priced from its own row and not flagged.
    let call = placed_call(&app, &link, "CApriced").await;
    apply_all(
        &app,
        &call,
        vec![(
            1_000,
            CallEventKind::Usage {
                provider: "openai".into(),
                model: "gpt-realtime-mini".into(),
                usage: Usage {
                    output_audio_tokens: 1_000_000,
                    ..Usage::default()
                },
            },
        )],
    )
    .await;
    assert_eq!(cost_of(&app, &call).await, 24_000_000);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM usage_records WHERE price_fallback = 1")
            .await,
        1
    );
}

/// M1: providers billed per connected minute are charged for the time between their
/// `provider_connected` and the failover away from them or the call's end, on the media
/// plane's clock (event `at_ms`), not when the events reached the database.
async fn per_minute_providers_are_charged_per_connected_minute(app: TestApp) {
    live_agent(&app).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let connected = |p: &str| CallEventKind::ProviderConnected { provider: p.into() };
    let failover = |from: &str, to: &str, reason: &str| CallEventKind::Failover {
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
    };

    // ElevenLabs for exactly 60 s: one session price ($0.10), plus 20 % markup. Its audio
    // counts are recorded too, at the catalogue's (zero) audio price.
    let call = placed_call(&app, &link, "CAeleven").await;
    apply_all(
        &app,
        &call,
        vec![
            (0, CallEventKind::Answered),
            (1_000, connected("elevenlabs")),
            (
                30_000,
                CallEventKind::Usage {
                    provider: "elevenlabs".into(),
                    model: "convai".into(),
                    usage: Usage {
                        audio_output_ms: 12_000,
                        ..Usage::default()
                    },
                },
            ),
            (61_000, CallEventKind::Ended(EndReason::CallerHangup)),
        ],
    )
    .await;
    assert_eq!(cost_of(&app, &call).await, 120_000);
    let (quantity, unit, model, cost): (i64, String, String, i64) = sqlx::query_as(
        "SELECT quantity, unit, model_id, total_cost_micros FROM usage_records
         WHERE call_id = $1 AND resource_type = 'session_time'",
    )
    .bind(&call)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (quantity, unit.as_str(), model.as_str(), cost),
        (60_000, "ms", "convai", 100_000)
    );

    // Deepgram ($0.075/min) for 30 s, then a failover to OpenAI (priced by tokens, no
    // session charge); then a rollover of OpenAI changes nothing either.
    let call = placed_call(&app, &link, "CAdeepgram").await;
    apply_all(
        &app,
        &call,
        vec![
            (0, CallEventKind::Answered),
            (200, connected("deepgram")),
            (30_200, failover("deepgram", "openai", "provider_closed")),
            (30_500, connected("openai")),
            (60_000, failover("openai", "openai", "session_rollover")),
            (60_300, connected("openai")),
            (90_000, CallEventKind::Ended(EndReason::CallerHangup)),
        ],
    )
    .await;
    // 37 500 + 20 % = 45 000.
    assert_eq!(cost_of(&app, &call).await, 45_000);

    // A rollover of ElevenLabs (a new session of the same provider) ends one session and
    // starts the next: 30 s + 30 s; a provider that failed before connecting costs nothing.
    let call = placed_call(&app, &link, "CAroll").await;
    apply_all(
        &app,
        &call,
        vec![
            (
                0,
                failover("deepgram", "elevenlabs", "provider_connect_failed"),
            ),
            (1_000, connected("elevenlabs")),
            (
                31_000,
                failover("elevenlabs", "elevenlabs", "session_rollover"),
            ),
            (31_200, connected("elevenlabs")),
            (61_200, CallEventKind::Ended(EndReason::CallerHangup)),
        ],
    )
    .await;
    assert_eq!(cost_of(&app, &call).await, 120_000);
}

/// L13: a prepaid workspace's balance pays for its calls, in the same transaction as the
/// usage rows, with one ledger row per priced report; a replay debits nothing more.
async fn a_prepaid_balance_is_debited_by_exactly_the_calls_cost(app: TestApp) {
    let (_, ws, _) = live_agent(&app).await;
    sqlx::query(
        "INSERT INTO workspace_balances (workspace_id, balance_micros, updated_at) VALUES ($1, $2, $3)",
    )
    .bind(&ws)
    .bind(10_000_000i64)
    .bind(1i64)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let call = placed_call(&app, &link, "CAprepaid").await;
    let usage = |tokens| CallEventKind::Usage {
        provider: "openai".into(),
        model: "gpt-realtime".into(),
        usage: Usage {
            output_audio_tokens: tokens,
            ..Usage::default()
        },
    };
    apply_all(
        &app,
        &call,
        vec![
            (0, CallEventKind::Answered),
            (5_000, usage(10_000)),
            (9_000, usage(5_000)),
            (10_000, CallEventKind::Ended(EndReason::CallerHangup)),
        ],
    )
    .await;
    let cost = cost_of(&app, &call).await;
    // 15 000 audio tokens at $64/M = 960 000, plus 20 % = 1 152 000.
    assert_eq!(cost, 1_152_000);
    let (balance,): (i64,) =
        sqlx::query_as("SELECT balance_micros FROM workspace_balances WHERE workspace_id = $1")
            .bind(&ws)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(balance, 10_000_000 - cost);
    let ledger: Vec<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT type, category, amount_micros, balance_after_micros, reference_id
         FROM balance_transactions WHERE workspace_id = $1 ORDER BY balance_after_micros DESC",
    )
    .bind(&ws)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        [
            (
                "debit".into(),
                "call".into(),
                -768_000,
                9_232_000,
                Some(call.clone())
            ),
            (
                "debit".into(),
                "call".into(),
                -384_000,
                8_848_000,
                Some(call.clone())
            ),
        ]
    );
}

/// L13: provider-reported counts are u64; a hostile or broken report saturates and never
/// wraps into a negative cost (a credit).
async fn absurd_usage_saturates_and_never_credits(app: TestApp) {
    let (_, ws, _) = live_agent(&app).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let call = placed_call(&app, &link, "CAhuge").await;
    let huge = Usage {
        input_text_tokens: u64::MAX,
        input_audio_tokens: u64::MAX,
        cached_input_tokens: u64::MAX,
        output_text_tokens: u64::MAX,
        output_audio_tokens: u64::MAX,
        audio_input_ms: u64::MAX,
        audio_output_ms: u64::MAX,
    };
    let usage = |model: &str| CallEventKind::Usage {
        provider: "openai".into(),
        model: model.into(),
        usage: huge.clone(),
    };
    apply_all(
        &app,
        &call,
        vec![
            (1, usage("gpt-realtime")),
            (2, usage("gpt-realtime")),
            (3, usage("nope")),
        ],
    )
    .await;
    assert!(cost_of(&app, &call).await > 0);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM usage_records WHERE final_cost_micros < 0 OR quantity <= 0"
        )
        .await,
        0
    );
    // The monthly spend still sums.
    let (spent,): (i64,) = sqlx::query_as(
        "SELECT CAST(SUM(final_cost_micros) AS BIGINT) FROM usage_records WHERE workspace_id = $1",
    )
    .bind(&ws)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert!(spent > 0);
}

fn connects(twiml: &str) -> bool {
    twiml.contains("<Connect><Stream")
}

async fn a_workspace_at_its_plans_cap_turns_callers_away_politely(app: TestApp) {
    let (_, ws, agent) = live_agent(&app).await;
    sqlx::query(
        "UPDATE subscription_tiers SET max_concurrent_calls = 2
         WHERE tier_name = (SELECT subscription_tier FROM workspaces WHERE id = $1)",
    )
    .bind(&ws)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let inbound = |sid: &'static str| {
        let app = &app;
        async move {
            app.twilio(
                "/webhooks/calls/inbound",
                &voice_params(sid),
                Some(TWILIO_AUTH_TOKEN),
            )
            .await
            .1
        }
    };
    let first = inbound("CAcap1").await;
    assert!(connects(&first), "{first}");
    assert!(connects(&inbound("CAcap2").await));
    // Two calls wait for their streams: the third caller hears the lines are busy.
    let third = inbound("CAcap3").await;
    assert!(twiml_says_busy(&third) && !connects(&third), "{third}");
    let (status, code): (String, Option<String>) =
        sqlx::query_as("SELECT status, error_code FROM calls WHERE provider_call_sid = 'CAcap3'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("concurrency_limit"))
    );
    // Twilio retrying an admitted call's webhook keeps its place rather than taking one.
    let retried = inbound("CAcap1").await;
    assert!(connects(&retried), "{retried}");
    // A browser call to the same workspace counts against the same cap.
    let (key,): (String,) =
        sqlx::query_as("SELECT widget_public_key FROM voice_agents WHERE id = $1")
            .bind(&agent)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    let (link, _writer) = InProcessLink::start(app.state.clone());
    assert_eq!(
        link.plan_web_call(&key, "10.6.0.1").await,
        Err(PlanError::Refused {
            code: "concurrency_limit".into()
        })
    );
    // The first call streams, then ends: its place is free for the next caller.
    let plan = link
        .plan_twilio_call(&stream_token(&retried), "MZcap1")
        .await
        .expect("plan");
    assert!(!connects(&inbound("CAcap4").await), "still two calls");
    link.emit(
        &plan.call_id,
        CallEvent {
            seq: 1,
            at_ms: 0,
            kind: CallEventKind::Ended(EndReason::CallerHangup),
        },
    );
    let fifth = inbound("CAcap5").await;
    assert!(connects(&fifth), "{fifth}");
}

fn twiml_says_busy(twiml: &str) -> bool {
    twiml.contains("<Say>Sorry, all our lines are busy right now.")
        && twiml.ends_with("<Hangup/></Response>")
}

on_both_databases!(
    a_workspace_at_its_plans_cap_turns_callers_away_politely,
    bad_or_missing_signatures_are_refused_and_write_nothing,
    unknown_numbers_hear_not_in_service,
    refusals_hang_up_politely_and_record_why,
    a_whole_call_from_webhook_to_priced_transcript,
    expired_tokens_fail_the_call_and_retried_webhooks_reuse_it,
    a_workspaces_own_twilio_account_signs_its_numbers,
    a_batch_of_events_applies_each_once,
    unpriced_models_cost_the_providers_highest_price_and_are_flagged,
    per_minute_providers_are_charged_per_connected_minute,
    a_prepaid_balance_is_debited_by_exactly_the_calls_cost,
    absurd_usage_saturates_and_never_credits,
);

/// Caller transcription usage (billed by OpenAI apart from responses) is priced too.
#[tokio::test]
async fn transcription_usage_is_priced_from_the_catalogue() {
    use vocalized_control::calls::ingest;
    let app = TestApp::new(vocalized_control::db::Dialect::Sqlite)
        .await
        .unwrap();
    live_agent(&app).await;
    let (_, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("CAtx"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let plan = link
        .plan_twilio_call(&stream_token(&twiml), "MZ")
        .await
        .unwrap();
    let usage = Usage {
        audio_input_ms: 90_000,
        ..Usage::default()
    };
    let event = CallEvent {
        seq: 1,
        at_ms: 0,
        kind: CallEventKind::Usage {
            provider: "openai".into(),
            model: "gpt-4o-mini-transcribe".into(),
            usage,
        },
    };
    ingest::apply(&app.state.db, plan.call_id.as_str(), &event)
        .await
        .unwrap();
    // 1.5 minutes at $0.003 = 4500 micro-dollars, plus 20 % markup.
    assert_eq!(
        app.count("SELECT CAST(SUM(final_cost_micros) AS BIGINT) FROM usage_records")
            .await,
        5400
    );
}
