//! Phone numbers prove their ownership before they take calls (security review H2): a
//! number a workspace registers starts unverified; a call to it through the platform's
//! Twilio account hangs up politely and creates no call in that workspace until a
//! platform admin verifies the number. A webhook signed by the workspace's own Twilio
//! integration account proves the number by that signature.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TestApp};

const NUMBER: &str = "+14155550177";

/// A workspace with a live agent on NUMBER, not yet verified; returns (owner token,
/// workspace id, number id).
async fn live_agent(app: &TestApp, email: &str) -> (String, String, String) {
    let config = json!({ "instructions": "Be brief." });
    let a = app.live_agent(email, NUMBER, false, config).await;
    (a.token, a.workspace_id, a.number_id)
}

fn voice_params(
    account_sid: &'static str,
    call_sid: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("AccountSid", account_sid),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("From", "+12349013030"),
        ("To", NUMBER),
    ]
}

async fn a_new_number_is_unverified_and_says_so(app: TestApp) {
    let (token, ws, number_id) = live_agent(&app, "owner@squat.example").await;
    let shown = app
        .get(
            &format!("/api/v1/workspaces/{ws}/phone-numbers/{number_id}"),
            &token,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(
        shown.body["phone_number"]["verification_status"], "unverified",
        "{}",
        shown.body
    );
    assert!(shown.body["phone_number"]["verified_at"].is_null());
}

async fn an_unverified_platform_number_hangs_up_and_creates_no_call(app: TestApp) {
    let (token, ws, _) = live_agent(&app, "squatter@squat.example").await;
    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params(TWILIO_ACCOUNT_SID, "CAsquat"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!twiml.contains("<Connect>"), "{twiml}");
    assert!(
        twiml.contains("<Say>") && twiml.ends_with("<Hangup/></Response>"),
        "{twiml}"
    );
    assert!(twiml.contains("number_unverified"), "{twiml}");
    // The squatter learns nothing: no call row (no caller number), no token.
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM call_stream_tokens").await,
        0
    );
    let calls = app
        .get(&format!("/api/v1/workspaces/{ws}/calls"), &token)
        .await;
    assert_eq!(calls.body["total"], 0, "{}", calls.body);
}

async fn a_platform_admin_verifies_and_then_calls_route(app: TestApp) {
    let (token, ws, number_id) = live_agent(&app, "owner@verified.example").await;
    let verify = format!("/api/v1/admin/phone-numbers/{number_id}/verify");

    // Only platform admins (admin or super_admin) verify: not support, not the customer.
    let support = app.admin("support@platform.example", "support").await;
    let r = app.post(&verify, Some(&support), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.post(&verify, Some(&token), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let admin = app.admin("admin@platform.example", "admin").await;
    let r = app
        .post(
            "/api/v1/admin/phone-numbers/pn_nope/verify",
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // The admin finds unverified numbers in a list.
    let pending = app
        .get(
            "/api/v1/admin/phone-numbers?verification_status=unverified",
            &admin,
        )
        .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);
    assert_eq!(pending.body["phone_numbers"][0]["id"], number_id.as_str());
    assert_eq!(
        pending.body["phone_numbers"][0]["workspace_id"],
        ws.as_str()
    );

    let r = app.post(&verify, Some(&admin), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["phone_number"]["verification_status"], "verified");
    assert!(r.body["phone_number"]["verified_at"].is_i64());
    // Audited like every admin change.
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM admin_activity_logs WHERE action = 'verified_phone_number'"
        )
        .await,
        1
    );
    // The customer sees it too.
    let shown = app
        .get(
            &format!("/api/v1/workspaces/{ws}/phone-numbers/{number_id}"),
            &token,
        )
        .await;
    assert_eq!(
        shown.body["phone_number"]["verification_status"],
        "verified"
    );

    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params(TWILIO_ACCOUNT_SID, "CAok"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Connect>"), "{twiml}");
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 1);

    // A number registered again after deletion starts over unverified.
    let r = app
        .call(
            "DELETE",
            &format!("/api/v1/workspaces/{ws}/phone-numbers/{number_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let again = app
        .post(
            &format!("/api/v1/workspaces/{ws}/phone-numbers"),
            Some(&token),
            json!({ "phone_number": NUMBER }),
        )
        .await;
    assert_eq!(
        again.body["phone_number"]["verification_status"],
        "unverified"
    );
}

async fn the_workspaces_own_twilio_account_proves_its_number(app: TestApp) {
    let (_, ws, _) = live_agent(&app, "owner@own-account.example").await;
    let sealed = app
        .state
        .config
        .master_key
        .seal(r#"{"auth_token":"workspace-own-token"}"#);
    sqlx::query(
        "INSERT INTO integration_accounts (id, workspace_id, account_type, account_name, external_account_id,
                                           credentials_encrypted, status, is_active, created_at, updated_at)
         VALUES ('ia_own', $1, 'twilio', 'Our Twilio', 'ACworkspace', $2, 'active', 1, 0, 0)",
    )
    .bind(&ws)
    .bind(&sealed)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let (status, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params("ACworkspace", "CAown"),
            Some("workspace-own-token"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Connect>"), "{twiml}");
    // The same unverified number through the platform account still does not route.
    let (_, twiml) = app
        .twilio(
            "/webhooks/calls/inbound",
            &voice_params(TWILIO_ACCOUNT_SID, "CAplatform"),
            Some(TWILIO_AUTH_TOKEN),
        )
        .await;
    assert!(!twiml.contains("<Connect>"), "{twiml}");
    assert_eq!(app.count("SELECT COUNT(*) FROM calls").await, 1);
}

on_both_databases!(
    a_new_number_is_unverified_and_says_so,
    an_unverified_platform_number_hangs_up_and_creates_no_call,
    a_platform_admin_verifies_and_then_calls_route,
    the_workspaces_own_twilio_account_proves_its_number,
);
