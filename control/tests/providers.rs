//! Voice provider keys (issue 6 "Keys"): the admin provider endpoints, a workspace's own
//! providers and strategy, and master key rotation. Every response body is kept and
//! checked for the raw keys: a key goes in once and never comes out, not even in errors.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{Reply, TestApp};
use vocalized_control::MasterKey;
use vocalized_control::crypto::{SealError, SealedAt};
use vocalized_control::db::rotate::{RotateError, SEALED_COLUMNS, rotate_master_key};
use vocalized_control::routing::Strategy;
use vocalized_control::util::{new_id, now_ms};

const PLATFORM_KEY: &str = "sk-platform-0a1b2c3d4e5f-secret";
const PLATFORM_KEY_2: &str = "sk-platform-second-9z8y7x-secret";
const BYO_KEY: &str = "sk-byo-workspace-77aa88bb-secret";

/// Every reply a test received, to prove no key leaked into any of them.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn call(
        &mut self,
        app: &TestApp,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let r = app.call(method, path, token, body).await;
        self.0.push(format!("{} {}", r.status, r.body));
        r
    }

    fn assert_never_shown(&self, secrets: &[&str]) {
        assert!(!self.0.is_empty());
        for body in &self.0 {
            for secret in secrets {
                assert!(
                    !body.contains(secret),
                    "a key leaked into a response: {body}"
                );
            }
        }
    }
}

async fn platform_sealed(app: &TestApp, provider: &str) -> Option<String> {
    let (sealed,): (Option<String>,) = sqlx::query_as(
        "SELECT api_key_encrypted FROM platform_provider_configs WHERE provider = $1",
    )
    .bind(provider)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    sealed
}

async fn workspace_sealed(app: &TestApp, ws: &str, provider: &str) -> Option<String> {
    let (sealed,): (Option<String>,) = sqlx::query_as(
        "SELECT api_key_encrypted FROM workspace_provider_configs WHERE workspace_id = $1 AND provider = $2",
    )
    .bind(ws)
    .bind(provider)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    sealed
}

/// The stored value is sealed under the app's master key, bound to its row, and opens
/// there to `plain`.
fn assert_sealed(app: &TestApp, sealed: &str, at: &SealedAt, plain: &str) {
    assert!(sealed.starts_with("v2:"), "{sealed}");
    assert!(!sealed.contains(plain));
    assert_eq!(
        app.state.config.master_key.open_at(sealed, at).unwrap(),
        plain
    );
}

async fn audit_actions(app: &TestApp) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT action, resource_id, details FROM admin_activity_logs ORDER BY timestamp, id",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap()
}

async fn admin_provider_crud_and_validation(app: TestApp) {
    let mut seen = Seen::default();
    // super_admin: this walk sets base_url, which is super_admin's alone
    // (provider_base_url.rs covers the admin role).
    let admin = app.admin("ops@vocalized.test", "super_admin").await;
    let support = app.admin("help@vocalized.test", "support").await;
    let base = "/api/v1/admin/providers";

    // support reads but cannot write.
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&support),
            Some(json!({"provider": "openai", "api_key": PLATFORM_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM platform_provider_configs")
            .await,
        0
    );

    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({
                "provider": "openai", "api_key": PLATFORM_KEY, "base_url": "wss://eu.openai.example/v1/realtime",
                "region": "eu", "priority": 5, "cost_per_minute_micros": 60_000,
                "config": {"model": "gpt-realtime"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let p = &r.body["provider"];
    assert_eq!(p["provider"], "openai");
    assert_eq!(p["is_configured"], true);
    assert_eq!(p["region"], "eu");
    assert_eq!(p["priority"], 5);
    assert_eq!(p["cost_per_minute_micros"], 60_000);
    assert_eq!(p["config"]["model"], "gpt-realtime");
    assert!(p.get("api_key").is_none() && p.get("api_key_encrypted").is_none());
    let first = platform_sealed(&app, "openai").await.unwrap();
    assert_sealed(
        &app,
        &first,
        &SealedAt::platform_provider_key("openai"),
        PLATFORM_KEY,
    );

    // A second config of the same provider is a conflict; echo needs no key.
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({"provider": "openai", "api_key": PLATFORM_KEY_2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({"provider": "echo"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["provider"]["is_configured"], false);

    // Bad input: every bad field named, nothing stored, no 500.
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({
                "provider": "vapi", "api_key": PLATFORM_KEY_2, "base_url": "https://api.openai.com/v1",
                "priority": -1, "cost_per_minute_micros": -5, "config": "nope", "region": "EU West"
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let mut fields = r.bad_fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "base_url",
            "config",
            "cost_per_minute_micros",
            "priority",
            "provider",
            "region"
        ]
    );
    // A key typed into the wrong field is not echoed by the shape error.
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({"provider": "gemini", "priority": PLATFORM_KEY_2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({"provider": "gemini", "api_key": "has space"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.bad_fields(), ["api_key"]);
    let r = seen
        .call(
            &app,
            "POST",
            base,
            Some(&admin),
            Some(json!({"provider": "gemini", "base_url": "ws://"})),
        )
        .await;
    assert_eq!(r.bad_fields(), ["base_url"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM platform_provider_configs")
            .await,
        2
    );

    // Reads: list and one, for support too.
    let r = seen.call(&app, "GET", base, Some(&support), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<&str> = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "openai"], "by priority: echo 0, openai 5");
    let r = seen
        .call(&app, "GET", &format!("{base}/openai"), Some(&support), None)
        .await;
    assert_eq!(r.body["provider"]["is_configured"], true);
    let r = seen
        .call(&app, "GET", &format!("{base}/gemini"), Some(&support), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // PATCH without api_key keeps the key; with one replaces it; null clears it.
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"priority": 1, "is_enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["provider"]["priority"], 1);
    assert_eq!(r.body["provider"]["is_enabled"], false);
    assert_eq!(platform_sealed(&app, "openai").await.unwrap(), first);
    let r = seen
        .call(
            &app,
            "PUT",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"api_key": PLATFORM_KEY_2, "base_url": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["provider"]["base_url"], Value::Null);
    let second = platform_sealed(&app, "openai").await.unwrap();
    assert_ne!(second, first);
    assert_sealed(
        &app,
        &second,
        &SealedAt::platform_provider_key("openai"),
        PLATFORM_KEY_2,
    );
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"api_key": ""})),
        )
        .await;
    assert_eq!(r.body["provider"]["is_configured"], false);
    assert_eq!(platform_sealed(&app, "openai").await, None);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"api_key": PLATFORM_KEY})),
        )
        .await;
    assert_eq!(r.body["provider"]["is_configured"], true);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"api_key": null})),
        )
        .await;
    assert_eq!(r.body["provider"]["is_configured"], false);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&admin),
            Some(json!({"base_url": "http://x"})),
        )
        .await;
    assert_eq!(r.bad_fields(), ["base_url"]);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/gemini"),
            Some(&admin),
            Some(json!({"priority": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&support),
            Some(json!({"priority": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = seen
        .call(
            &app,
            "DELETE",
            &format!("{base}/echo"),
            Some(&support),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = seen
        .call(&app, "DELETE", &format!("{base}/echo"), Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = seen
        .call(&app, "DELETE", &format!("{base}/echo"), Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // One audit row per successful write, naming the key's fate but never the key.
    let log = audit_actions(&app).await;
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|(a, id, _)| (a.as_str(), id.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        actions,
        [
            ("created_provider_config", "openai"),
            ("created_provider_config", "echo"),
            ("updated_provider_config", "openai"),
            ("updated_provider_config", "openai"),
            ("updated_provider_config", "openai"),
            ("updated_provider_config", "openai"),
            ("updated_provider_config", "openai"),
            ("deleted_provider_config", "echo"),
        ]
    );
    let notes: Vec<Value> = log
        .iter()
        .map(|(_, _, d)| {
            serde_json::from_str::<Value>(d.as_deref().unwrap()).unwrap()["api_key"].clone()
        })
        .collect();
    assert_eq!(
        notes[..7],
        [
            json!("set"),
            json!("kept"),
            json!("kept"),
            json!("set"),
            json!("cleared"),
            json!("set"),
            json!("cleared")
        ]
    );
    for (_, _, details) in &log {
        let details = details.as_deref().unwrap_or_default();
        assert!(!details.contains(PLATFORM_KEY) && !details.contains(PLATFORM_KEY_2));
    }
    seen.assert_never_shown(&[PLATFORM_KEY, PLATFORM_KEY_2]);
}

async fn admin_health_costs_and_routing(app: TestApp) {
    let mut seen = Seen::default();
    let admin = app.admin("ops@vocalized.test", "admin").await;
    let support = app.admin("help@vocalized.test", "support").await;
    for (provider, key) in [
        ("openai", Some(PLATFORM_KEY)),
        ("gemini", None),
        ("deepgram", None),
    ] {
        let r = seen
            .call(
                &app,
                "POST",
                "/api/v1/admin/providers",
                Some(&admin),
                Some(
                    json!({"provider": provider, "api_key": key, "cost_per_minute_micros": 10_000}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let now = now_ms();
    sqlx::query(
        "INSERT INTO provider_health_status (provider, region, status, last_check_at, error_rate, connect_ms, ttfa_ms, consecutive_failures)
         VALUES ('openai', 'global', 'degraded', $1, 0.25, 120, 640, 2)",
    )
    .bind(now)
    .execute(&app.state.db.pool)
    .await
    .unwrap();

    let r = seen
        .call(
            &app,
            "GET",
            "/api/v1/admin/providers/health",
            Some(&support),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["providers"],
        json!([{
            "provider": "openai", "region": "global", "status": "degraded", "last_check_at": now,
            "error_rate": 0.25, "avg_latency_ms": null, "connect_ms": 120, "ttfa_ms": 640,
            "consecutive_failures": 2, "details": null,
        }])
    );
    let r = seen
        .call(&app, "GET", "/api/v1/admin/providers", Some(&support), None)
        .await;
    let openai = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "openai")
        .unwrap();
    assert_eq!(openai["health_status"], "degraded");

    // Costs: the configured per-minute price and the catalogue's model prices.
    let r = seen
        .call(
            &app,
            "GET",
            "/api/v1/admin/providers/costs",
            Some(&support),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let openai = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "openai")
        .unwrap()
        .clone();
    assert_eq!(openai["cost_per_minute_micros"], 10_000);
    let transcribe = openai["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_name"] == "gpt-4o-mini-transcribe")
        .unwrap();
    assert_eq!(transcribe["text_input_per_mtok_micros"], 1_250_000);
    assert_eq!(transcribe["audio_input_per_minute_micros"], 3_000);

    // Routing: one call, one audit row, all or nothing.
    let logs_before = app.count("SELECT COUNT(*) FROM admin_activity_logs").await;
    let r = seen
        .call(
            &app,
            "PUT",
            "/api/v1/admin/providers/routing",
            Some(&support),
            Some(json!({"fallback_chain": ["gemini"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = seen
        .call(
            &app,
            "PUT",
            "/api/v1/admin/providers/routing",
            Some(&admin),
            Some(json!({"fallback_chain": ["deepgram", "openai", "gemini"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let order: Vec<(String, i64)> = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap().to_owned(),
                p["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("deepgram".into(), 0),
            ("openai".into(), 10),
            ("gemini".into(), 20)
        ]
    );
    let r = seen
        .call(
            &app,
            "PUT",
            "/api/v1/admin/providers/routing",
            Some(&admin),
            Some(json!({"providers": [{"provider": "gemini", "priority": 1}, {"provider": "deepgram", "is_enabled": false}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deepgram = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "deepgram")
        .unwrap()
        .clone();
    assert_eq!(
        (deepgram["priority"].clone(), deepgram["is_enabled"].clone()),
        (json!(0), json!(false))
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM admin_activity_logs").await,
        logs_before + 2
    );

    let before: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT provider, priority, is_enabled FROM platform_provider_configs ORDER BY provider",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    for (body, field) in [
        (
            json!({"providers": [{"provider": "openai", "priority": 3}, {"provider": "elevenlabs"}]}),
            "providers[1].provider",
        ),
        (
            json!({"providers": [{"provider": "openai", "priority": -3}]}),
            "providers[0].priority",
        ),
        (
            json!({"fallback_chain": ["openai", "openai"]}),
            "fallback_chain[1].provider",
        ),
        (
            json!({"fallback_chain": ["openai"], "providers": []}),
            "providers",
        ),
        (json!({}), "providers"),
    ] {
        let r = seen
            .call(
                &app,
                "PUT",
                "/api/v1/admin/providers/routing",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.bad_fields(), [field], "{body}");
    }
    let r = seen
        .call(
            &app,
            "PUT",
            "/api/v1/admin/providers/routing",
            Some(&admin),
            Some(json!({"providers": "openai"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let after: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT provider, priority, is_enabled FROM platform_provider_configs ORDER BY provider",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(before, after, "refused routing changes changed something");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM admin_activity_logs").await,
        logs_before + 2
    );
    seen.assert_never_shown(&[PLATFORM_KEY]);
}

async fn workspace_keys_byo_and_platform(app: TestApp) {
    let mut seen = Seen::default();
    let (owner, _, _) = app.signup("owner@example.com").await;
    let ws = app.workspace(&owner, "Acme").await;
    let (member, _, member_id) = app.signup("member@example.com").await;
    sqlx::query("INSERT INTO workspace_members (workspace_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)")
        .bind(&ws)
        .bind(&member_id)
        .bind(now_ms())
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let base = format!("/api/v1/workspaces/{ws}/voice/providers");

    // A key without saying otherwise means bring-your-own.
    let r = seen
        .call(
            &app,
            "POST",
            &base,
            Some(&owner),
            Some(json!({"provider": "openai", "api_key": BYO_KEY, "priority": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (
            r.body["provider"]["uses_platform_key"].clone(),
            r.body["provider"]["is_configured"].clone()
        ),
        (json!(false), json!(true))
    );
    let sealed = workspace_sealed(&app, &ws, "openai").await.unwrap();
    assert_sealed(
        &app,
        &sealed,
        &SealedAt::workspace_provider_key(&ws, "openai"),
        BYO_KEY,
    );

    // No key: the platform's.
    let r = seen
        .call(
            &app,
            "POST",
            &base,
            Some(&owner),
            Some(json!({"provider": "gemini"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (
            r.body["provider"]["uses_platform_key"].clone(),
            r.body["provider"]["is_configured"].clone()
        ),
        (json!(true), json!(false))
    );
    // Not using the platform key needs a key of one's own.
    let r = seen
        .call(
            &app,
            "POST",
            &base,
            Some(&owner),
            Some(json!({"provider": "deepgram", "uses_platform_key": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.bad_fields(), ["api_key"]);
    for (body, field) in [
        (json!({"provider": "google"}), "provider"),
        (
            json!({"provider": "deepgram", "priority": 10_001}),
            "priority",
        ),
        (json!({"provider": "deepgram", "config": [1]}), "config"),
        (json!({}), "provider"),
    ] {
        let r = seen
            .call(&app, "POST", &base, Some(&owner), Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.bad_fields(), [field], "{body}");
    }
    let r = seen
        .call(
            &app,
            "POST",
            &base,
            Some(&owner),
            Some(json!({"provider": "openai", "api_key": BYO_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = seen
        .call(
            &app,
            "POST",
            &base,
            Some(&owner),
            Some(json!({"provider": "openai", "uses_platform_key": BYO_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Members read, do not write.
    let r = seen.call(&app, "GET", &base, Some(&member), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let listed: Vec<(String, bool, bool)> = r.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap().to_owned(),
                p["uses_platform_key"].as_bool().unwrap(),
                p["is_configured"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("gemini".into(), true, false),
            ("openai".into(), false, true)
        ]
    );
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&member),
            Some(json!({"is_enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Switching to the platform key keeps the stored key; clearing it while bringing
    // one's own is refused; clearing after switching works.
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&owner),
            Some(json!({"api_key": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(workspace_sealed(&app, &ws, "openai").await.unwrap(), sealed);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&owner),
            Some(json!({"uses_platform_key": true, "is_enabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["provider"]["uses_platform_key"], true);
    assert_eq!(r.body["provider"]["is_configured"], true);
    assert_eq!(r.body["provider"]["is_enabled"], false);
    assert_eq!(r.body["provider"]["priority"], 2);
    assert_eq!(workspace_sealed(&app, &ws, "openai").await.unwrap(), sealed);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/openai"),
            Some(&owner),
            Some(json!({"api_key": ""})),
        )
        .await;
    assert_eq!(r.body["provider"]["is_configured"], false);
    assert_eq!(workspace_sealed(&app, &ws, "openai").await, None);

    // PUT is the seed's create-or-change.
    let r = seen
        .call(
            &app,
            "PUT",
            &format!("{base}/elevenlabs"),
            Some(&owner),
            Some(json!({"api_key": BYO_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["provider"]["uses_platform_key"], false);
    let r = seen
        .call(
            &app,
            "PUT",
            &format!("{base}/elevenlabs"),
            Some(&owner),
            Some(json!({"config": {"agent_id": "ag_1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["provider"]["config"], json!({"agent_id": "ag_1"}));
    assert_eq!(r.body["provider"]["is_configured"], true);
    let r = seen
        .call(
            &app,
            "PUT",
            &format!("{base}/vapi"),
            Some(&owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = seen
        .call(
            &app,
            "PATCH",
            &format!("{base}/deepgram"),
            Some(&owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = seen
        .call(
            &app,
            "DELETE",
            &format!("{base}/elevenlabs"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = seen
        .call(
            &app,
            "DELETE",
            &format!("{base}/elevenlabs"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    seen.assert_never_shown(&[BYO_KEY]);
}

/// The workspace's strategy row as the call planner parses it.
async fn stored_strategy(app: &TestApp, ws: &str) -> Strategy {
    let (name, preferred, config, fallback): (String, Option<String>, String, i64) =
        sqlx::query_as(
            "SELECT strategy, preferred_provider, config, fallback_enabled
             FROM workspace_provider_strategies WHERE workspace_id = $1",
        )
        .bind(ws)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    Strategy::from_row(&name, preferred.as_deref(), &config, fallback != 0).unwrap()
}

async fn workspace_strategy(app: TestApp) {
    let mut seen = Seen::default();
    let (owner, _, _) = app.signup("owner@example.com").await;
    let ws = app.workspace(&owner, "Acme").await;
    let path = format!("/api/v1/workspaces/{ws}/voice/strategy");

    let r = seen.call(&app, "GET", &path, Some(&owner), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["strategy"], "auto", "no row reads as auto");
    assert_eq!(r.body["fallback_enabled"], true);

    for (body, field) in [
        (json!({"strategy": "fastest"}), "strategy"),
        (json!({}), "strategy"),
        (json!({"strategy": "specific"}), "preferred_provider"),
        (
            json!({"strategy": "specific", "preferred_provider": "vapi"}),
            "preferred_provider",
        ),
        (json!({"strategy": "custom"}), "config"),
        (
            json!({"strategy": "custom", "config": {}}),
            "config.providers",
        ),
        (
            json!({"strategy": "custom", "config": {"providers": []}}),
            "config.providers",
        ),
        (
            json!({"strategy": "custom", "config": {"providers": ["openai", "bolna"]}}),
            "config.providers[1]",
        ),
        (
            json!({"strategy": "custom", "config": {"providers": ["openai", "openai"]}}),
            "config.providers[1]",
        ),
        (
            json!({"strategy": "custom", "config": {"providers": ["openai"], "by_source": {"sms": ["openai"]}}}),
            "config.by_source.sms",
        ),
        (
            json!({"strategy": "custom", "config": {"providers": "openai"}}),
            "config.providers",
        ),
        (json!({"strategy": "auto", "config": 5}), "config"),
    ] {
        let r = seen
            .call(&app, "PUT", &path, Some(&owner), Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.bad_fields(), [field], "{body}");
    }
    let r = seen
        .call(
            &app,
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"strategy": "auto", "fallback_enabled": "yes"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM workspace_provider_strategies")
            .await,
        0
    );

    let r = seen
        .call(&app, "PUT", &path, Some(&owner), Some(json!({"strategy": "specific", "preferred_provider": "gemini", "fallback_enabled": false})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["strategy"], "specific");
    assert_eq!(r.body["preferred_provider"], "gemini");
    assert_eq!(r.body["fallback_enabled"], false);
    assert_eq!(
        stored_strategy(&app, &ws).await,
        Strategy::Specific {
            provider: "gemini".into(),
            fallback_enabled: false
        }
    );

    let r = seen
        .call(
            &app,
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"strategy": "custom", "preferred_provider": "gemini", "config": {
                "providers": ["gemini", "openai"], "by_source": {"phone": ["deepgram", "openai"], "web": ["openai"]}
            }})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Stored in the router's form; the preferred provider only means something to `specific`.
    assert_eq!(
        r.body["config"],
        json!({"order": ["gemini", "openai"], "by_source": {"twilio": ["deepgram", "openai"], "web": ["openai"]}})
    );
    assert_eq!(r.body["preferred_provider"], Value::Null);
    assert_eq!(r.body["fallback_enabled"], true);
    let r = seen.call(&app, "GET", &path, Some(&owner), None).await;
    assert_eq!(r.body["strategy"], "custom");
    // The call planner reads the stored row with the routing policy's parser.
    assert_eq!(
        stored_strategy(&app, &ws).await,
        Strategy::Custom {
            order: vec!["gemini".into(), "openai".into()],
            twilio: Some(vec!["deepgram".into(), "openai".into()]),
            web: Some(vec!["openai".into()]),
            fallback_enabled: true,
        }
    );
    // Per-source lists alone are enough.
    let r = seen
        .call(
            &app,
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"strategy": "custom", "config": {"by_source": {"web": ["echo"]}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = seen
        .call(
            &app,
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"strategy": "cost_optimized", "config": {"providers": ["openai"]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["config"], json!({}));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM workspace_provider_strategies")
            .await,
        1
    );
}

/// Every sealed value in the database, in a fixed order.
/// Every sealed value opened with `key` where it is stored, in `sealed_values` order.
async fn open_all(app: &TestApp, key: &MasterKey) -> Vec<Result<String, SealError>> {
    let mut out = Vec::new();
    for col in SEALED_COLUMNS {
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {b}, {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {id}",
            b = col.binding,
            c = col.column,
            t = col.table,
            id = col.id
        )))
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        out.extend(rows.into_iter().map(|(bound_to, value)| {
            key.open_at(&value, &SealedAt::new(col.table, col.column, bound_to))
        }));
    }
    out
}

async fn sealed_values(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for col in SEALED_COLUMNS {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {id}",
            c = col.column,
            t = col.table,
            id = col.id
        )))
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        out.extend(rows.into_iter().map(|(v,)| v));
    }
    out
}

/// Secrets in every kind of sealed column: platform and BYO provider keys through the
/// API, Twilio credentials and a webhook secret as the integrations code stores them.
async fn seed_secrets(app: &TestApp) -> (String, Vec<&'static str>) {
    let admin = app.admin("ops@vocalized.test", "admin").await;
    let r = app
        .post(
            "/api/v1/admin/providers",
            Some(&admin),
            json!({"provider": "openai", "api_key": PLATFORM_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (owner, _, _) = app.signup("owner@example.com").await;
    let ws = app.workspace(&owner, "Acme").await;
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/voice/providers"),
            Some(&owner),
            json!({"provider": "gemini", "api_key": BYO_KEY}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let key = &app.state.config.master_key;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO integration_accounts (id, workspace_id, account_type, account_name, external_account_id,
                                           credentials_encrypted, webhook_secret_encrypted, status, is_active, created_at, updated_at)
         VALUES ($1, $2, 'twilio', 'Our Twilio', 'ACws', $3, $4, 'active', 1, $5, $5)",
    )
    .bind(new_id("ia"))
    .bind(&ws)
    .bind(key.seal(r#"{"auth_token":"twilio-token-secret"}"#))
    .bind(key.seal("whsec-integration-secret"))
    .bind(now)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, workspace_id, url, secret_encrypted, created_at, updated_at)
         VALUES ($1, $2, 'https://hooks.example.com/x', $3, $4, $4)",
    )
    .bind(new_id("whe"))
    .bind(&ws)
    .bind(key.seal("whsec-endpoint-secret"))
    .bind(now)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    (
        ws,
        vec![
            PLATFORM_KEY,
            BYO_KEY,
            r#"{"auth_token":"twilio-token-secret"}"#,
            "whsec-integration-secret",
            "whsec-endpoint-secret",
        ],
    )
}

async fn rotation_re_encrypts_every_secret(app: TestApp) {
    let (_, plains) = seed_secrets(&app).await;
    let old = app.state.config.master_key.clone();
    let new = MasterKey::generate();
    let before = sealed_values(&app).await;
    assert_eq!(before.len(), 5);

    let report = rotate_master_key(&app.state.db, &old, &new).await.unwrap();
    assert_eq!(report.total(), 5);
    let counts: Vec<(String, u64)> = report
        .columns
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (format!("{}.{}", c.table, c.column), *n))
        .collect();
    assert_eq!(
        counts,
        [
            ("platform_provider_configs.api_key_encrypted".into(), 1),
            ("workspace_provider_configs.api_key_encrypted".into(), 1),
            ("integration_accounts.credentials_encrypted".into(), 1),
            ("integration_accounts.webhook_secret_encrypted".into(), 1),
            ("webhook_endpoints.secret_encrypted".into(), 1),
        ]
    );
    let after = sealed_values(&app).await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(a, b);
        // Every secret is bound to its row afterwards, the unbound v1 ones included.
        assert!(a.starts_with("v2:"), "{a}");
    }
    assert!(
        open_all(&app, &old).await.iter().all(Result::is_err),
        "the old key still opens a rotated secret"
    );
    let mut opened: Vec<String> = open_all(&app, &new)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    opened.sort();
    let mut plains: Vec<String> = plains.iter().map(|p| p.to_string()).collect();
    plains.sort();
    assert_eq!(opened, plains);

    // The old key no longer opens anything: a second rotation from it changes nothing.
    let err = rotate_master_key(&app.state.db, &old, &MasterKey::generate())
        .await
        .unwrap_err();
    assert!(matches!(err, RotateError::DoesNotOpen { .. }), "{err}");
    assert_eq!(sealed_values(&app).await, after);
    assert!(matches!(
        rotate_master_key(&app.state.db, &new, &new).await,
        Err(RotateError::SameKey)
    ));
}

async fn rotation_with_a_wrong_or_partial_key_changes_nothing(app: TestApp) {
    let (ws, _) = seed_secrets(&app).await;
    let old = app.state.config.master_key.clone();
    let before = sealed_values(&app).await;

    let wrong = MasterKey::generate();
    let err = rotate_master_key(&app.state.db, &wrong, &MasterKey::generate())
        .await
        .unwrap_err();
    match &err {
        RotateError::DoesNotOpen { table, column, .. } => {
            assert_eq!(
                (*table, *column),
                ("platform_provider_configs", "api_key_encrypted")
            )
        }
        other => panic!("{other}"),
    }
    assert!(!err.to_string().contains(PLATFORM_KEY));
    assert_eq!(sealed_values(&app).await, before);

    // One secret sealed under another key, late in the order: the rows rotated before it
    // are rolled back with it.
    let stray = wrong.seal("stray-secret");
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, workspace_id, url, secret_encrypted, created_at, updated_at)
         VALUES ('whe_stray', $1, 'https://hooks.example.com/stray', $2, 0, 0)",
    )
    .bind(&ws)
    .bind(&stray)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let before = sealed_values(&app).await;
    let err = rotate_master_key(&app.state.db, &old, &MasterKey::generate())
        .await
        .unwrap_err();
    match &err {
        RotateError::DoesNotOpen { table, id, .. } => {
            assert_eq!((*table, id.as_str()), ("webhook_endpoints", "whe_stray"))
        }
        other => panic!("{other}"),
    }
    assert_eq!(sealed_values(&app).await, before);
    let opened = open_all(&app, &old).await;
    for (value, opened) in before.iter().zip(&opened) {
        if value != &stray {
            assert!(opened.is_ok());
        }
    }
}

/// M1c and L2: a tenant names only an active catalogue model of its provider, in plain
/// characters, for an agent (`voice_config.model`) or a provider config (`config.model`);
/// anything else is a 422 naming the field, and nothing is stored.
async fn tenant_models_must_be_active_catalogue_models(app: TestApp) {
    let (owner, _, _) = app.signup("models@example.com").await;
    let ws = app.workspace(&owner, "Models Co").await;
    // Room for several agents.
    sqlx::query("UPDATE workspaces SET subscription_tier = 'enterprise' WHERE id = $1")
        .bind(&ws)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let agents = format!("/api/v1/workspaces/{ws}/agents");
    let agent = |provider: &str, model: Value| json!({"name": "Desk", "voice_provider": provider, "voice_config": {"model": model}});

    for (provider, model) in [
        ("openai", json!("gpt-realtime-2025-08-28")), // a snapshot the catalogue lacks
        ("openai", json!("gemini-live-2.5-flash-preview")), // another provider's model
        ("openai", json!("gpt-realtime&foo=bar")),
        ("openai", json!("x".repeat(101))),
        ("openai", json!(42)),
        ("google", json!("gpt-realtime")),
        ("elevenlabs", json!("agent_someone_elses")), // an agent id on the platform's account
    ] {
        let r = app
            .post(&agents, Some(&owner), agent(provider, model.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{provider} {model}: {}",
            r.body
        );
        assert_eq!(r.bad_fields(), ["voice_config.model"], "{}", r.body);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM voice_agents").await, 0);

    // Catalogued models (Google agents use the catalogue's gemini rows), and no model.
    for (provider, model) in [
        ("openai", json!("gpt-realtime-mini")),
        ("google", json!("gemini-live-2.5-flash-preview")),
        ("deepgram", json!("voice-agent")),
        ("openai", Value::Null),
    ] {
        let r = app
            .post(&agents, Some(&owner), agent(provider, model.clone()))
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{provider} {model}: {}",
            r.body
        );
    }
    let r = app
        .post(&agents, Some(&owner), json!({"name": "Plain"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["agent"]["id"].as_str().unwrap().to_owned();

    // Update: a bad model, or a provider its stored model does not belong to.
    let path = format!("{agents}/{id}");
    let r = app
        .call(
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"voice_config": {"model": "nope"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.bad_fields(), ["voice_config.model"]);
    let r = app
        .call(
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"voice_config": {"model": "gpt-realtime"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call(
            "PUT",
            &path,
            Some(&owner),
            Some(json!({"voice_provider": "google"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.bad_fields(), ["voice_config.model"]);
    let r = app
        .call("PUT", &path, Some(&owner), Some(json!({"name": "Renamed"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["agent"]["voice_config"]["model"], "gpt-realtime");

    // A deactivated catalogue model is refused too.
    sqlx::query("UPDATE realtime_models SET is_active = 0 WHERE model_name = 'gpt-realtime-mini'")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let r = app
        .post(
            &agents,
            Some(&owner),
            agent("openai", json!("gpt-realtime-mini")),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    // Workspace provider configs: the same rule for `model`, on create, PUT and PATCH.
    let providers = format!("/api/v1/workspaces/{ws}/voice/providers");
    let r = app
        .post(
            &providers,
            Some(&owner),
            json!({"provider": "openai", "config": {"model": "gpt-realtime#x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.bad_fields(), ["config.model"]);
    let r = app
        .call(
            "PUT",
            &format!("{providers}/gemini"),
            Some(&owner),
            Some(json!({"config": {"model": "gpt-realtime"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.bad_fields(), ["config.model"]);
    let r = app
        .post(
            &providers,
            Some(&owner),
            json!({"provider": "openai", "config": {"model": "gpt-realtime"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .call(
            "PATCH",
            &format!("{providers}/openai"),
            Some(&owner),
            Some(json!({"config": {"model": "made-up-model"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM workspace_provider_configs WHERE config LIKE '%made-up%'")
            .await,
        0
    );
}

on_both_databases!(
    admin_provider_crud_and_validation,
    admin_health_costs_and_routing,
    workspace_keys_byo_and_platform,
    workspace_strategy,
    rotation_re_encrypts_every_secret,
    rotation_with_a_wrong_or_partial_key_changes_nothing,
    tenant_models_must_be_active_catalogue_models,
);
