//! A platform provider's `base_url` receives every key routed to it (security review M2):
//! only a super_admin may point a provider somewhere else, and a workspace's own (BYO)
//! key is never sent to a non-default URL that no super_admin set.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;
use vocalized_control::calls::link::InProcessLink;
use vocalized_control::util::now_ms;
use vocalized_shared::link::{ControlLink, PlanError};

const PLATFORM_KEY: &str = "sk-platform-base-url-test";
const BYO_KEY: &str = "sk-workspace-own-key";
const EVIL_URL: &str = "wss://evil.example/v1/realtime";

async fn an_admin_cannot_repoint_a_provider_but_a_super_admin_can(app: TestApp) {
    let admin = app.admin("ops@vocalized.test", "admin").await;
    let root = app.admin("root@vocalized.test", "super_admin").await;
    let base = "/api/v1/admin/providers";
    let r = app
        .post(
            base,
            Some(&admin),
            json!({"provider": "openai", "api_key": PLATFORM_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // Changing where the stored key goes is super_admin's alone.
    let r = app
        .call(
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"base_url": EVIL_URL})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let (url,): (Option<String>,) =
        sqlx::query_as("SELECT base_url FROM platform_provider_configs WHERE provider = 'openai'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(url, None, "nothing changed");
    // Creating a provider with a URL is the same thing.
    let r = app
        .post(
            base,
            Some(&admin),
            json!({"provider": "gemini", "api_key": "g-key", "base_url": EVIL_URL}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Everything else stays an admin's job.
    let r = app
        .call(
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"priority": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let r = app
        .call(
            "PATCH",
            &format!("{base}/openai"),
            Some(&root),
            Some(json!({"base_url": "wss://eu.openai.example/v1/realtime"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["provider"]["base_url"],
        "wss://eu.openai.example/v1/realtime"
    );
    assert_eq!(r.body["provider"]["is_configured"], true, "the key is kept");
}

/// A workspace with a live OpenAI agent and its own OpenAI key; returns the widget key.
async fn byo_workspace(app: &TestApp) -> String {
    let (token, _, _) = app.signup("owner@byo.example").await;
    let ws = app.workspace(&token, "BYO").await;
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/voice/providers"),
            Some(&token),
            json!({"provider": "openai", "api_key": BYO_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let a = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({"name": "Desk", "voice_provider": "openai",
                   "config": {"instructions": "Be brief."}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let agent = a.body["agent"]["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.body["agent"]["widget_public_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_byo_key_never_goes_to_a_url_no_super_admin_set(app: TestApp) {
    let key = byo_workspace(&app).await;
    // A URL stored by an admin before super_admin owned it (or written to the database
    // directly): not trusted with workspaces' keys.
    sqlx::query(
        "INSERT INTO platform_provider_configs (provider, api_key_encrypted, config, priority, is_enabled,
                cost_per_minute_micros, region, base_url, created_at, updated_at)
         VALUES ('openai', $1, '{}', 0, 1, 0, 'global', $2, $3, $3)",
    )
    .bind(app.state.config.master_key.seal(PLATFORM_KEY))
    .bind(EVIL_URL)
    .bind(now_ms())
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let plan = link.plan_web_call(&key, "10.0.0.1").await;
    if let Ok(plan) = &plan {
        for target in &plan.providers {
            assert!(
                !(target.url == EVIL_URL && target.api_key.expose() == BYO_KEY),
                "the workspace's key went to an untrusted URL"
            );
            // Nor is the workspace quietly moved onto the platform's key.
            assert_ne!(target.api_key.expose(), PLATFORM_KEY);
        }
    } else {
        assert_eq!(
            plan.unwrap_err(),
            PlanError::Refused {
                code: "provider_unavailable".into()
            }
        );
    }

    // Once a super_admin sets the URL, it is trusted with the workspace's key.
    let root = app.admin("root@vocalized.test", "super_admin").await;
    let r = app
        .call(
            "PATCH",
            "/api/v1/admin/providers/openai",
            Some(&root),
            Some(json!({"base_url": "wss://eu.openai.example/v1/realtime"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let plan = link
        .plan_web_call(&key, "10.0.0.2")
        .await
        .expect("a plan once the URL is trusted");
    assert_eq!(plan.providers[0].url, "wss://eu.openai.example/v1/realtime");
    assert_eq!(plan.providers[0].api_key.expose(), BYO_KEY);
}

on_both_databases!(
    an_admin_cannot_repoint_a_provider_but_a_super_admin_can,
    a_byo_key_never_goes_to_a_url_no_super_admin_set,
);
