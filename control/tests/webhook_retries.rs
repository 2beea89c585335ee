//! Twilio retries a voice webhook it got no answer to (security review L9). A retry gets
//! the same call and a fresh stream token, and every earlier unused token of that call
//! stops working, so two streams can never both be bridged for one call.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TestApp};
use vocalized_control::calls::link::InProcessLink;
use vocalized_shared::link::{ControlLink, PlanError};

const NUMBER: &str = "+14155550142";

async fn live_agent(app: &TestApp) {
    let config = json!({ "instructions": "Be brief." });
    app.live_agent("owner@retries.example", NUMBER, true, config)
        .await;
}

/// Sends the voice webhook for `call_sid` and returns the stream token of its TwiML.
async fn webhook_token(app: &TestApp, call_sid: &str) -> Option<String> {
    let params = [
        ("AccountSid", TWILIO_ACCOUNT_SID),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("From", "+12349013030"),
        ("To", NUMBER),
    ];
    let (status, twiml) = app
        .twilio("/webhooks/calls/inbound", &params, Some(TWILIO_AUTH_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    let marker = r#"name="token" value=""#;
    let start = twiml.find(marker)? + marker.len();
    Some(twiml[start..].split('"').next().unwrap().to_owned())
}

async fn a_retry_invalidates_the_earlier_unused_token(app: TestApp) {
    live_agent(&app).await;
    let first = webhook_token(&app, "CAretry").await.expect("a stream");
    let second = webhook_token(&app, "CAretry").await.expect("a stream");
    assert_ne!(first, second);
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 1);
    let (link, _writer) = InProcessLink::start(app.state.clone());
    assert_eq!(
        link.plan_twilio_call(&first, "MZold").await,
        Err(PlanError::InvalidToken),
        "the token the retry replaced must not redeem"
    );
    link.plan_twilio_call(&second, "MZnew")
        .await
        .expect("the newest token redeems");
    // The stale stream did not fail the call the newest one connected.
    let (status,): (String,) = sqlx::query_as("SELECT status FROM calls")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "in-progress");
    // A retry after the stream connected does not mint another token.
    assert_eq!(webhook_token(&app, "CAretry").await, None);
}

async fn concurrent_redemptions_for_one_call_leave_one_plan(app: TestApp) {
    live_agent(&app).await;
    let first = webhook_token(&app, "CArace").await.expect("a stream");
    let second = webhook_token(&app, "CArace").await.expect("a stream");
    let (link, _writer) = InProcessLink::start(app.state.clone());
    let (a, b) = tokio::join!(
        link.plan_twilio_call(&first, "MZa"),
        link.plan_twilio_call(&second, "MZb")
    );
    let plans = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(plans, 1, "{a:?} / {b:?}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_stream_tokens WHERE used_at IS NOT NULL")
            .await,
        1
    );
}

on_both_databases!(
    a_retry_invalidates_the_earlier_unused_token,
    concurrent_redemptions_for_one_call_leave_one_plan,
);
