//! The browser call widget's control-plane side: its public config (callEnabled only when
//! the workspace switch, the agent's capability and its live status all allow it; CORS for
//! any origin) and starting a web call (refusals, per-address limit, the record it makes).

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;
use vocalized_control::calls::link::InProcessLink;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::ids::CallId;
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::{CallSource, ProviderKind};

/// A workspace with a live echo agent; returns (owner token, workspace id, agent id, key).
async fn echo_agent(app: &TestApp) -> (String, String, String, String) {
    let (token, _, _) = app.signup("owner@web.example").await;
    let ws = app.workspace(&token, "Web Co").await;
    let a = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({ "name": "Echo desk", "voice_provider": "echo",
                    "config": { "call": { "callButtonText": "Talk to us", "callButtonColor": "#112233" } } }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let agent = a.body["agent"]["id"].as_str().unwrap().to_owned();
    let key = a.body["agent"]["widget_public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, ws, agent, key)
}

async fn widget_config_reflects_every_switch(app: TestApp) {
    let (token, ws, agent, key) = echo_agent(&app).await;
    let path = format!("/widget/{key}/config");
    let draft = app.call("GET", &path, None, None).await;
    assert_eq!(draft.status, StatusCode::OK);
    assert_eq!(
        draft.body["callEnabled"], false,
        "a draft agent takes no calls"
    );
    assert_eq!(draft.body["buttonText"], "Talk to us");
    assert_eq!(draft.body["buttonColor"], "#112233");
    assert_eq!(draft.body["buttonPosition"], "bottom-right");
    assert_eq!(draft.body["testProvider"], true);
    assert!(draft.body["iceServers"].is_array());

    app.post(
        &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(
        app.call("GET", &path, None, None).await.body["callEnabled"],
        true
    );

    app.call(
        "PUT",
        &format!("/api/v1/workspaces/{ws}/agents/{agent}"),
        Some(&token),
        Some(json!({ "enabled_call": false })),
    )
    .await;
    assert_eq!(
        app.call("GET", &path, None, None).await.body["callEnabled"],
        false
    );
    app.call(
        "PUT",
        &format!("/api/v1/workspaces/{ws}/agents/{agent}"),
        Some(&token),
        Some(json!({ "enabled_call": true })),
    )
    .await;
    sqlx::query("UPDATE workspaces SET call_enabled = 0 WHERE id = $1")
        .bind(&ws)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(
        app.call("GET", &path, None, None).await.body["callEnabled"],
        false
    );

    assert_eq!(
        app.call("GET", "/widget/pk_unknown/config", None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Any origin may read it.
    let req = axum::http::Request::builder()
        .uri(&path)
        .header("origin", "https://customer.example")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // The rest of the API is not opened up.
    let req = axum::http::Request::builder()
        .uri("/api/v1/auth/me")
        .header("origin", "https://customer.example")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

async fn web_calls_start_with_refusals_and_a_per_address_limit(app: TestApp) {
    let (token, ws, agent, key) = echo_agent(&app).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    assert_eq!(
        link.plan_web_call("pk_nope", "10.0.0.1").await,
        Err(PlanError::InvalidToken)
    );
    assert_eq!(
        link.plan_web_call(&key, "10.0.0.1").await,
        Err(PlanError::Refused {
            code: "agent_not_live".into()
        })
    );
    app.post(
        &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
        Some(&token),
        json!({}),
    )
    .await;

    let plan = link.plan_web_call(&key, "10.0.0.1").await.expect("plan");
    assert_eq!(plan.source, CallSource::Web);
    assert_eq!(plan.providers[0].kind, ProviderKind::Echo);
    let call = app
        .get(
            &format!("/api/v1/workspaces/{ws}/calls/{}", plan.call_id),
            &token,
        )
        .await;
    assert_eq!(call.body["call"]["source"], "web");
    // Ringing until the browser's peer connects (the media plane's `answered` event).
    assert_eq!(call.body["call"]["status"], "ringing");
    assert_eq!(call.body["call"]["answered_at"], serde_json::Value::Null);
    assert_eq!(call.body["call"]["caller_number"], serde_json::Value::Null);
    let live = app
        .get(&format!("/api/v1/workspaces/{ws}/calls/live"), &token)
        .await;
    assert_eq!(live.body["active_calls"][0]["source"], "web");

    for _ in 0..2 {
        link.plan_web_call(&key, "10.0.0.1")
            .await
            .expect("within the limit");
    }
    assert_eq!(
        link.plan_web_call(&key, "10.0.0.1").await,
        Err(PlanError::Refused {
            code: "too_many_calls".into()
        })
    );
    link.plan_web_call(&key, "10.0.0.2")
        .await
        .expect("another address is not limited");

    sqlx::query("UPDATE workspaces SET call_enabled = 0 WHERE id = $1")
        .bind(&ws)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(
        link.plan_web_call(&key, "10.0.0.3").await,
        Err(PlanError::Refused {
            code: "calling_disabled".into()
        })
    );
}

const STATIC_TURN_CREDENTIAL: &str = "static-turn-long-term-credential";

fn ice_servers() -> Vec<vocalized_control::config::IceServer> {
    vocalized_shared::ice::parse_ice_servers(&format!(
        r#"[{{"urls":"stun:stun.example.com:3478"}},
            {{"urls":["turn:turn.example.com:3478"],"username":"gateway",
              "credential":"{STATIC_TURN_CREDENTIAL}"}}]"#
    ))
    .unwrap()
}

/// The widget's ICE servers as the browser gets them.
async fn widget_ice_servers(app: &TestApp) -> (String, serde_json::Value) {
    let (_, _, _, key) = echo_agent(app).await;
    let r = app
        .call("GET", &format!("/widget/{key}/config"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    (r.body.to_string(), r.body["iceServers"].clone())
}

/// Security review L7: the TURN server's long-term credential stays on the server. With
/// no shared secret the browser gets the STUN servers only.
#[tokio::test]
async fn widget_config_never_hands_out_the_static_turn_credential() {
    let app = TestApp::with_config(vocalized_control::db::Dialect::Sqlite, |c| {
        c.ice_servers = ice_servers();
    })
    .await
    .unwrap();
    let (body, servers) = widget_ice_servers(&app).await;
    assert!(!body.contains(STATIC_TURN_CREDENTIAL), "{body}");
    assert_eq!(
        servers,
        json!([{ "urls": ["stun:stun.example.com:3478"] }]),
        "a TURN URL without credentials would only make the browser fail"
    );
}

/// With a TURN shared secret, each config carries short-lived TURN REST credentials
/// (coturn's `use-auth-secret`): username "<expiry unix s>:<id>", credential
/// base64(HMAC-SHA1(secret, username)).
#[tokio::test]
async fn widget_config_issues_short_lived_turn_credentials() {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let app = TestApp::with_config(vocalized_control::db::Dialect::Sqlite, |c| {
        c.ice_servers = ice_servers();
        c.turn_shared_secret = Some(vocalized_shared::plan::Secret("turn-shared-secret".into()));
    })
    .await
    .unwrap();
    let (body, servers) = widget_ice_servers(&app).await;
    assert!(!body.contains(STATIC_TURN_CREDENTIAL), "{body}");
    assert!(!body.contains("turn-shared-secret"), "{body}");
    assert_eq!(
        servers[0],
        json!({ "urls": ["stun:stun.example.com:3478"] })
    );
    let turn = &servers[1];
    assert_eq!(turn["urls"], json!(["turn:turn.example.com:3478"]));
    let username = turn["username"].as_str().unwrap();
    let (expiry, _id) = username.split_once(':').expect("expiry:id");
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry > now && expiry <= now + 24 * 3600,
        "short-lived: {expiry} vs now {now}"
    );
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"turn-shared-secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected.as_str());
/// Sets the workspace's plan cap on calls at once (`subscription_tiers.max_concurrent_calls`
/// of its tier).
async fn cap_concurrent_calls(app: &TestApp, ws: &str, cap: i64) {
    sqlx::query(
        "UPDATE subscription_tiers SET max_concurrent_calls = $1
         WHERE tier_name = (SELECT subscription_tier FROM workspaces WHERE id = $2)",
    )
    .bind(cap)
    .bind(ws)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

/// Starts `n` web calls at once, each from `address(i)`; returns the plans made and the
/// refusal codes, in no particular order.
async fn start_at_once(
    link: &InProcessLink,
    key: &str,
    n: usize,
    address: impl Fn(usize) -> String,
) -> (Vec<vocalized_shared::plan::CallPlan>, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (link, key, ip) = (link.clone(), key.to_owned(), address(i));
        tasks.spawn(async move { link.plan_web_call(&key, &ip).await });
    }
    let (mut plans, mut refused) = (Vec::new(), Vec::new());
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(plan) => plans.push(plan),
            Err(PlanError::Refused { code }) => refused.push(code),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (plans, refused)
}

/// Ends a call as the media plane would, and waits until the writer has recorded it.
async fn end_call(app: &TestApp, link: &InProcessLink, call_id: &CallId) {
    link.emit(
        call_id,
        CallEvent {
            seq: 1,
            at_ms: 0,
            kind: CallEventKind::Ended(EndReason::CallerHangup),
        },
    );
    // The writer task removes the call once its `ended` event is written.
    for _ in 0..500 {
        if !app.state.live.contains_key(call_id.as_str()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the call's end was never written");
}

async fn concurrent_offers_from_one_address_get_exactly_the_limit(app: TestApp) {
    let (token, ws, agent, key) = echo_agent(&app).await;
    app.post(
        &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
        Some(&token),
        json!({}),
    )
    .await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    // Ten offers race through the awaits of planning together (H1 of the review).
    let (plans, refused) = start_at_once(&link, &key, 10, |_| "10.9.0.1".into()).await;
    assert_eq!(plans.len(), 3, "refused: {refused:?}");
    assert_eq!(refused, vec!["too_many_calls"; 7]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM calls").await,
        3,
        "a refused offer writes no call"
    );
    // A call that ends gives its slot back.
    end_call(&app, &link, &plans[0].call_id).await;
    link.plan_web_call(&key, "10.9.0.1")
        .await
        .expect("a slot was freed");
    assert_eq!(
        link.plan_web_call(&key, "10.9.0.1").await,
        Err(PlanError::Refused {
            code: "too_many_calls".into()
        })
    );
}

async fn a_workspace_takes_at_most_its_plans_calls_at_once(app: TestApp) {
    let (token, ws, agent, key) = echo_agent(&app).await;
    app.post(
        &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
        Some(&token),
        json!({}),
    )
    .await;
    let (default_cap,): (Option<i64>,) = sqlx::query_as(
        "SELECT CAST(max_concurrent_calls AS BIGINT) FROM subscription_tiers WHERE tier_name = 'starter'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert!(
        default_cap.is_some_and(|c| c > 0),
        "the starter plan has a cap: {default_cap:?}"
    );
    cap_concurrent_calls(&app, &ws, 4).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    // Many addresses, so only the workspace's cap can refuse.
    let (plans, refused) = start_at_once(&link, &key, 9, |i| format!("10.8.0.{i}")).await;
    assert_eq!(plans.len(), 4, "refused: {refused:?}");
    assert_eq!(refused, vec!["concurrency_limit"; 5]);
    end_call(&app, &link, &plans[0].call_id).await;
    link.plan_web_call(&key, "10.8.1.1")
        .await
        .expect("a slot was freed");
    assert_eq!(
        link.plan_web_call(&key, "10.8.1.2").await,
        Err(PlanError::Refused {
            code: "concurrency_limit".into()
        })
    );
}

async fn a_plan_that_fails_gives_its_slot_back(app: TestApp) {
    let (token, ws, agent, key) = echo_agent(&app).await;
    app.post(
        &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
        Some(&token),
        json!({}),
    )
    .await;
    cap_concurrent_calls(&app, &ws, 1).await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    // The agent's stored config no longer reads: planning fails after the slot was taken.
    let (config,): (String,) = sqlx::query_as("SELECT config FROM voice_agents WHERE id = $1")
        .bind(&agent)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE voice_agents SET config = 'not json' WHERE id = $1")
        .bind(&agent)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let failed = link.plan_web_call(&key, "10.7.0.1").await;
    assert!(
        matches!(failed, Err(PlanError::Unavailable(_))),
        "{failed:?}"
    );
    sqlx::query("UPDATE voice_agents SET config = $1 WHERE id = $2")
        .bind(&config)
        .bind(&agent)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    link.plan_web_call(&key, "10.7.0.1")
        .await
        .expect("the failed call's slot was given back");
}

on_both_databases!(
    widget_config_reflects_every_switch,
    web_calls_start_with_refusals_and_a_per_address_limit,
    concurrent_offers_from_one_address_get_exactly_the_limit,
    a_workspace_takes_at_most_its_plans_calls_at_once,
    a_plan_that_fails_gives_its_slot_back,
);
