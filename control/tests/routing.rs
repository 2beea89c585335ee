//! Provider routing as calls see it: the plan's chain comes from the platform's providers,
//! the workspace's own keys and strategy and the agent's provider; call events feed
//! provider health, an open circuit takes a provider out of the next plan at once, and
//! health rows reach `provider_health_status` and the admin dashboard.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TestApp};
use vocalized_control::calls::link::InProcessLink;
use vocalized_control::calls::plan;
use vocalized_control::util::now_ms;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::{CallPlan, CallSource, ProviderKind};

const NUMBER: &str = "+14155550142";

struct Workspace {
    id: String,
    widget_key: String,
}

/// A workspace with a live agent on `voice_provider` (and, when `number` is given, that
/// phone number).
async fn workspace_with_agent(
    app: &TestApp,
    owner: &str,
    voice_provider: &str,
    number: Option<&str>,
) -> Workspace {
    let (token, _, _) = app.signup(owner).await;
    let ws = app.workspace(&token, owner).await;
    // A catalogued model of the agent's provider (the API refuses any other).
    let model = match voice_provider {
        "openai" => "gpt-realtime-mini",
        "google" => "gemini-live-2.5-flash-preview",
        other => panic!("no test model for {other}"),
    };
    let mut agent = json!({ "name": "Desk", "voice_provider": voice_provider,
                            "voice_config": { "model": model },
                            "config": { "instructions": "Be brief." } });
    if let Some(number) = number {
        let n = app
            .post(
                &format!("/api/v1/workspaces/{ws}/phone-numbers"),
                Some(&token),
                json!({ "phone_number": number }),
            )
            .await;
        assert_eq!(n.status, StatusCode::CREATED, "{}", n.body);
        agent["phone_number_id"] = n.body["phone_number"]["id"].clone();
        app.verify_number(n.body["phone_number"]["id"].as_str().unwrap())
            .await;
    }
    let a = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            agent,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let agent_id = a.body["agent"]["id"].as_str().unwrap().to_owned();
    let live = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}/activate"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    // These tests plan many calls and never end them: lift the plan's cap on calls at
    // once (tested in web_calls.rs and calls.rs) so only routing decides.
    sqlx::query("UPDATE subscription_tiers SET max_concurrent_calls = NULL")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    Workspace {
        id: ws,
        widget_key: a.body["agent"]["widget_public_key"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

/// Configures a platform provider (key sealed as the admin API stores it), its URL set
/// by a super_admin (trusted with workspaces' own keys).
async fn platform_provider(
    app: &TestApp,
    provider: &str,
    priority: i64,
    key: Option<&str>,
    cost_per_minute_micros: i64,
    config: &str,
) {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO platform_provider_configs (provider, api_key_encrypted, config, priority, is_enabled,
                cost_per_minute_micros, region, base_url, base_url_trusted, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, $5, 'global', $6, 1, $7, $7)",
    )
    .bind(provider)
    .bind(key.map(|k| app.state.config.master_key.seal(k)))
    .bind(config)
    .bind(priority as i32)
    .bind(cost_per_minute_micros)
    .bind(format!("ws://127.0.0.1:9/{provider}-fake"))
    .bind(now)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

/// The workspace brings its own key for `provider` (or, with `uses_platform_key`, stores
/// one but keeps using the platform's).
async fn own_key(app: &TestApp, ws: &str, provider: &str, key: &str, uses_platform_key: bool) {
    sqlx::query(
        "INSERT INTO workspace_provider_configs (id, workspace_id, provider, uses_platform_key,
                api_key_encrypted, config, priority, is_enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, '{}', 0, 1, $6, $6)",
    )
    .bind(vocalized_control::util::new_id("wpc"))
    .bind(ws)
    .bind(provider)
    .bind(i32::from(uses_platform_key))
    .bind(app.state.config.master_key.seal(key))
    .bind(now_ms())
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

/// Replaces the workspace's strategy row.
async fn strategy(
    app: &TestApp,
    ws: &str,
    name: &str,
    preferred: Option<&str>,
    config: &str,
    fallback: bool,
) {
    let pool = &app.state.db.pool;
    sqlx::query("DELETE FROM workspace_provider_strategies WHERE workspace_id = $1")
        .bind(ws)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO workspace_provider_strategies (workspace_id, strategy, preferred_provider, config,
                fallback_enabled, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ws)
    .bind(name)
    .bind(preferred)
    .bind(config)
    .bind(i32::from(fallback))
    .bind(now_ms())
    .execute(pool)
    .await
    .unwrap();
}

/// Plans a browser call; each from its own address, so the per-address limit never bites.
async fn web_plan(app: &TestApp, ws: &Workspace) -> Result<CallPlan, PlanError> {
    let ip = format!("10.1.0.{}", rand_octet());
    plan::start_web_call(&app.state, &ws.widget_key, &ip).await
}

fn rand_octet() -> u8 {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Plans a phone call to NUMBER through the signed voice webhook and the stream token.
async fn phone_plan(app: &TestApp, call_sid: &str) -> CallPlan {
    let params = [
        ("AccountSid", TWILIO_ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+12349013030"),
        ("To", NUMBER),
    ];
    let (status, twiml) = app
        .twilio("/webhooks/calls/inbound", &params, Some(TWILIO_AUTH_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    let marker = r#"name="token" value=""#;
    let start = twiml.find(marker).expect("a stream token") + marker.len();
    let token = &twiml[start..start + twiml[start..].find('"').unwrap()];
    plan::redeem_twilio(&app.state, token, "MZrouting")
        .await
        .expect("a phone plan")
}

fn kinds(plan: &CallPlan) -> Vec<ProviderKind> {
    plan.providers.iter().map(|p| p.kind).collect()
}

/// The routing warning recorded for a call (seq 0), if any.
async fn routing_warning(app: &TestApp, call_id: &str) -> Option<String> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT event_data FROM call_events WHERE call_id = $1 AND seq = 0 AND event_type = 'warning'",
    )
    .bind(call_id)
    .fetch_optional(&app.state.db.pool)
    .await
    .unwrap();
    row.map(|r| r.0)
}

async fn a_byo_key_wins_and_never_reaches_another_workspace(app: TestApp) {
    platform_provider(&app, "openai", 0, Some("sk-platform-row"), 0, "{}").await;
    let byo = workspace_with_agent(&app, "byo@a.example", "openai", None).await;
    let plain = workspace_with_agent(&app, "plain@b.example", "openai", None).await;
    let stored = workspace_with_agent(&app, "stored@c.example", "openai", None).await;
    own_key(&app, &byo.id, "openai", "sk-byo-workspace-a", false).await;
    // A key stored while the workspace still uses the platform's is not used.
    own_key(&app, &stored.id, "openai", "sk-parked-c", true).await;

    let mine = web_plan(&app, &byo).await.unwrap();
    assert_eq!(kinds(&mine), [ProviderKind::Openai]);
    assert_eq!(mine.providers[0].api_key.expose(), "sk-byo-workspace-a");
    assert_eq!(
        mine.providers[0].model, "gpt-realtime-mini",
        "the agent's model"
    );
    assert_eq!(mine.providers[0].url, "ws://127.0.0.1:9/openai-fake");

    for other in [&plain, &stored] {
        let theirs = web_plan(&app, other).await.unwrap();
        assert_eq!(theirs.providers[0].api_key.expose(), "sk-platform-row");
        let wire = serde_json::to_string(&theirs).unwrap();
        assert!(!wire.contains("sk-byo-workspace-a"), "{wire}");
        assert!(!wire.contains("sk-parked-c"));
    }
    // The plan's Debug (what a log line would show) has no key at all.
    assert!(!format!("{mine:?}").contains("sk-byo"));
}

async fn the_chain_follows_the_workspace_strategy(app: TestApp) {
    // Priorities: gemini 0, openai 10, elevenlabs 20; deepgram has no key.
    platform_provider(&app, "gemini", 0, Some("g-key"), 200_000, "{}").await;
    platform_provider(&app, "openai", 10, Some("o-key"), 50_000, "{}").await;
    platform_provider(
        &app,
        "elevenlabs",
        20,
        Some("e-key"),
        0,
        r#"{"agent_id": "agent_42"}"#,
    )
    .await;
    platform_provider(&app, "deepgram", 30, None, 0, "{}").await;
    let ws = workspace_with_agent(&app, "strategy@ws.example", "openai", Some(NUMBER)).await;
    use ProviderKind::{Elevenlabs, Gemini, Openai};

    // No strategy: auto, the agent's provider first, then by priority.
    let auto = web_plan(&app, &ws).await.unwrap();
    assert_eq!(kinds(&auto), [Openai, Gemini, Elevenlabs]);
    assert_eq!(auto.providers[1].model, "gemini-live-2.5-flash-preview");
    assert_eq!(auto.providers[1].url, "ws://127.0.0.1:9/gemini-fake");
    assert_eq!(auto.providers[1].api_key.expose(), "g-key");
    assert_eq!(
        auto.providers[2].model, "agent_42",
        "the configured agent id"
    );
    let warning = routing_warning(&app, auto.call_id.as_str())
        .await
        .expect("the skipped provider is recorded");
    assert!(warning.contains("providers_skipped"), "{warning}");
    assert!(warning.contains("deepgram/global (no_key)"), "{warning}");

    // Cheapest first: openai's 50k, elevenlabs' catalogue 100k a minute, gemini's 200k.
    strategy(&app, &ws.id, "cost_optimized", None, "{}", true).await;
    assert_eq!(
        kinds(&web_plan(&app, &ws).await.unwrap()),
        [Openai, Elevenlabs, Gemini]
    );

    strategy(&app, &ws.id, "specific", Some("gemini"), "{}", false).await;
    assert_eq!(kinds(&web_plan(&app, &ws).await.unwrap()), [Gemini]);
    strategy(&app, &ws.id, "specific", Some("gemini"), "{}", true).await;
    assert_eq!(
        kinds(&web_plan(&app, &ws).await.unwrap()),
        [Gemini, Openai, Elevenlabs]
    );

    let per_source = r#"{"by_source": {"twilio": ["elevenlabs", "gemini"], "web": ["gemini"]}}"#;
    strategy(&app, &ws.id, "custom", None, per_source, false).await;
    assert_eq!(kinds(&web_plan(&app, &ws).await.unwrap()), [Gemini]);
    let phone = phone_plan(&app, "CAroute1").await;
    assert_eq!(phone.source, CallSource::Twilio);
    assert_eq!(kinds(&phone), [Elevenlabs, Gemini]);

    // A stored row the policy cannot read routes as auto instead of refusing calls.
    strategy(
        &app,
        &ws.id,
        "custom",
        None,
        r#"{"by_source": {"fax": ["x"]}}"#,
        false,
    )
    .await;
    assert_eq!(
        kinds(&web_plan(&app, &ws).await.unwrap()),
        [Openai, Gemini, Elevenlabs]
    );

    // Nothing usable: refused as before, and the call's events say why.
    strategy(&app, &ws.id, "specific", Some("deepgram"), "{}", false).await;
    assert_eq!(
        web_plan(&app, &ws).await,
        Err(PlanError::Refused {
            code: "provider_unavailable".into()
        })
    );
    let (call_id, error_code): (String, Option<String>) = sqlx::query_as(
        "SELECT id, error_code FROM calls WHERE workspace_id = $1 AND error_code IS NOT NULL",
    )
    .bind(&ws.id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(error_code.as_deref(), Some("provider_unavailable"));
    let warning = routing_warning(&app, &call_id).await.unwrap();
    assert!(warning.contains("deepgram/global (no_key)"), "{warning}");
    assert_eq!(
        app.state.health.tracked_calls(),
        7,
        "refused plans are not tracked"
    );
}

fn event(seq: u64, kind: CallEventKind) -> CallEvent {
    CallEvent {
        seq,
        at_ms: seq * 100,
        kind,
    }
}

async fn failure_events_open_the_circuit_and_the_next_plan_skips_it(app: TestApp) {
    platform_provider(&app, "openai", 0, Some("o-key"), 0, "{}").await;
    platform_provider(&app, "gemini", 10, Some("g-key"), 0, "{}").await;
    let ws = workspace_with_agent(&app, "health@ws.example", "openai", None).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let admin = app.admin("ops@vocalized.example", "support").await;

    // openai refuses every call's setup; gemini takes over and serves.
    let threshold = 5;
    for _ in 0..threshold {
        let plan = link
            .plan_web_call(&ws.widget_key, &format!("10.2.0.{}", rand_octet()))
            .await
            .unwrap();
        assert_eq!(kinds(&plan), [ProviderKind::Openai, ProviderKind::Gemini]);
        let events = [
            CallEventKind::Failover {
                from: "openai".into(),
                to: "gemini".into(),
                reason: "provider_connect_failed".into(),
            },
            CallEventKind::ProviderConnected {
                provider: "gemini".into(),
            },
            CallEventKind::ProviderAudioStarted { ttfa_ms: 640 },
            CallEventKind::Ended(EndReason::CallerHangup),
        ];
        for (i, kind) in events.into_iter().enumerate() {
            link.emit(&plan.call_id, event(i as u64 + 1, kind));
        }
    }

    // The very next plan leaves openai out, without waiting for anything.
    let next = link
        .plan_web_call(&ws.widget_key, "10.2.1.1")
        .await
        .unwrap();
    assert_eq!(kinds(&next), [ProviderKind::Gemini]);
    let warning = routing_warning(&app, next.call_id.as_str()).await.unwrap();
    assert!(
        warning.contains("openai/global (circuit_open)"),
        "{warning}"
    );

    // Its only provider fails too: the end of the call reports it.
    link.emit(
        &next.call_id,
        event(
            1,
            CallEventKind::Ended(EndReason::ProviderError {
                code: "all_providers_failed".into(),
            }),
        ),
    );

    // The writer puts the rows in provider_health_status; the dashboard shows them.
    let mut rows: Vec<(String, String, i64, Option<i64>)> = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as(
            "SELECT provider, status, CAST(consecutive_failures AS BIGINT), CAST(ttfa_ms AS BIGINT)
             FROM provider_health_status ORDER BY provider",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        if rows.len() == 2 && rows[0].2 == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows,
        [
            ("gemini".into(), "healthy".into(), 1, Some(640)),
            ("openai".into(), "down".into(), threshold, None),
        ]
    );
    let dash = app.get("/api/v1/admin/providers/health", &admin).await;
    assert_eq!(dash.status, StatusCode::OK, "{}", dash.body);
    assert_eq!(dash.body["providers"][1]["provider"], "openai");
    assert_eq!(dash.body["providers"][1]["status"], "down");
    assert_eq!(dash.body["providers"][1]["details"]["circuit"], "open");
    assert_eq!(app.state.health.tracked_calls(), 0, "every call ended");
}

async fn providers_keyed_in_the_environment_join_the_chain_at_their_configured_url(app: TestApp) {
    let ws = workspace_with_agent(&app, "env@a.example", "google", None).await;
    // Without an environment key Gemini has no key at all: only OpenAI can serve.
    let plain = web_plan(&app, &ws).await.unwrap();
    assert_eq!(kinds(&plain), [ProviderKind::Openai]);

    let mut config = (*app.state.config).clone();
    config.gemini.url = "ws://127.0.0.1:9/gemini-fake".into();
    config.gemini.api_key = Some(vocalized_shared::plan::Secret("AIza-env".into()));
    let state = vocalized_control::AppState::new(app.state.db.clone(), config);
    let ip = format!("10.1.0.{}", rand_octet());
    let plan = plan::start_web_call(&state, &ws.widget_key, &ip)
        .await
        .unwrap();
    assert_eq!(kinds(&plan), [ProviderKind::Gemini, ProviderKind::Openai]);
    assert_eq!(plan.providers[0].url, "ws://127.0.0.1:9/gemini-fake");
    assert_eq!(plan.providers[0].api_key.expose(), "AIza-env");
}

on_both_databases!(
    providers_keyed_in_the_environment_join_the_chain_at_their_configured_url,
    a_byo_key_wins_and_never_reaches_another_workspace,
    the_chain_follows_the_workspace_strategy,
    failure_events_open_the_circuit_and_the_next_plan_skips_it,
);
