//! Sealed secrets are bound to their row (security review L8): someone who can write the
//! database but lacks the master key cannot move workspace A's provider key into workspace
//! B's row and have B's calls use it.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;
use vocalized_control::calls::link::InProcessLink;
use vocalized_shared::link::{ControlLink, PlanError};

/// A workspace with its own OpenAI key and a live OpenAI agent; returns (id, widget key).
async fn byo_workspace(app: &TestApp, email: &str, key: &str) -> (String, String) {
    let (token, _, _) = app.signup(email).await;
    let ws = app.workspace(&token, email).await;
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/voice/providers"),
            Some(&token),
            json!({"provider": "openai", "api_key": key}),
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
    let agent = a.body["agent"]["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents/{agent}/activate"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let widget = a.body["agent"]["widget_public_key"].as_str().unwrap();
    (ws, widget.to_owned())
}

async fn a_key_copied_to_another_workspaces_row_does_not_open(app: TestApp) {
    let (a, _) = byo_workspace(&app, "a@sealed.example", "sk-workspace-a").await;
    let (b, b_widget) = byo_workspace(&app, "b@sealed.example", "sk-workspace-b").await;
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let plan = link.plan_web_call(&b_widget, "10.9.0.1").await.unwrap();
    assert_eq!(plan.providers[0].api_key.expose(), "sk-workspace-b");

    sqlx::query(
        "UPDATE workspace_provider_configs SET api_key_encrypted =
             (SELECT api_key_encrypted FROM workspace_provider_configs WHERE workspace_id = $1)
         WHERE workspace_id = $2",
    )
    .bind(&a)
    .bind(&b)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let plan = link.plan_web_call(&b_widget, "10.9.0.2").await;
    match plan {
        Ok(plan) => {
            for target in &plan.providers {
                assert_ne!(
                    target.api_key.expose(),
                    "sk-workspace-a",
                    "A's key opened in B"
                );
            }
        }
        // B's key no longer opens; B is not moved onto the platform's key either.
        Err(e) => assert_eq!(
            e,
            PlanError::Refused {
                code: "provider_unavailable".into()
            }
        ),
    }
}

on_both_databases!(a_key_copied_to_another_workspaces_row_does_not_open);
