//! The control plane's fuzz targets on the stable toolchain (engine:
//! `vocalized_media::fuzzing::engine`): Twilio webhook forms and signatures, and every
//! JSON request body of the API sent through the real router. A short deterministic run
//! in CI; a long one on demand:
//!
//! ```text
//! VOCALIZED_FUZZ_ITERS=10000000 VOCALIZED_FUZZ_SEED=$RANDOM \
//!   cargo test --release -p vocalized-control --test fuzz -- --nocapture --test-threads 1
//! ```

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use support::TestApp;
use vocalized_control::db::Dialect;
use vocalized_control::fuzzing;
use vocalized_control::http::ratelimit::{Limit, RateLimits};
use vocalized_control::{AppState, router};
use vocalized_media::fuzzing::engine::{Corpus, fuzz};

#[test]
fn fuzz_webhook_form() {
    let seeds: Vec<&[u8]> = fuzzing::WEBHOOK_SEEDS
        .iter()
        .map(|s| s.as_bytes())
        .collect();
    let corpus = Corpus::new(&seeds, fuzzing::WEBHOOK_DICT).with_max_len(1_024);
    fuzz("webhook_form", 5_000, &corpus, None, fuzzing::webhook_form);
}

/// One JSON route: method, path, whose token, and bodies it accepts.
struct Route {
    method: &'static str,
    path: String,
    token: Token,
    seeds: Vec<Value>,
}

#[derive(Clone, Copy)]
enum Token {
    None,
    User,
    Admin,
}

/// An app with a workspace owner, an agent, a number and a super admin, whose limits let
/// every body reach validation: no IP limits, and the per-email login limit at zero so a
/// well-formed login is refused (429) after validation instead of costing argon2 work.
struct Fixture {
    _app: TestApp,
    router: axum::Router,
    user: String,
    admin: String,
    routes: Vec<Route>,
}

async fn fixture() -> Fixture {
    let app = TestApp::new(Dialect::Sqlite).await.expect("sqlite");
    let (user, refresh, user_id) = app.signup("owner@example.com").await;
    let ws = app.workspace(&user, "Fuzz Co").await;
    let admin = app.admin("root@example.com", "super_admin").await;
    let agent = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&user),
            json!({"name": "Agent"}),
        )
        .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{}", agent.body);
    let agent = agent.body["agent"]["id"]
        .as_str()
        .unwrap_or("agt_x")
        .to_owned();
    let number = app
        .post(
            &format!("/api/v1/workspaces/{ws}/phone-numbers"),
            Some(&user),
            json!({"phone_number": "+15550001111", "friendly_name": "Main"}),
        )
        .await;
    let number = number.body["phone_number"]["id"]
        .as_str()
        .unwrap_or("pn_x")
        .to_owned();

    let unlimited = Limit::new(u32::MAX, 1);
    let mut config = (*app.state.config).clone();
    config.rate_limits = RateLimits {
        login_per_ip: unlimited,
        login_per_email: Limit::new(0, 3_600),
        signup_per_ip: unlimited,
        forgot_per_ip: unlimited,
        forgot_per_email: unlimited,
    };
    let router = router(AppState::new(app.state.db.clone(), config));

    let call_settings = json!({"silence_timeout": 30, "max_call_duration": 600,
        "interruption_enabled": true, "end_call_phrase": "bye", "greeting": "Hello"});
    let agent_body = json!({"name": "Support", "voice_provider": "openai",
        "voice_config": {"voice": "alloy"}, "enabled_call": true, "enabled_chat": false,
        "phone_number_id": number,
        "config": {"instructions": "Be brief.", "call": call_settings,
            "tools": [{"name": "lookup_order", "description": "d",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}]}});
    let provider_body = json!({"provider": "openai", "uses_platform_key": false,
        "api_key": "sk-test", "priority": 10, "is_enabled": true,
        "config": {"model": "gpt-realtime", "voice": "alloy"}});
    let route = |method, path: String, token, seeds: Vec<Value>| Route {
        method,
        path,
        token,
        seeds,
    };
    let routes = vec![
        route(
            "POST",
            "/api/v1/auth/signup".into(),
            Token::None,
            vec![
                json!({"email": "new@example.com", "password": "short", "name": "New"}),
                json!({"email": "not-an-email", "password": "password123", "name": "x"}),
                // A valid signup costs argon2 work: the seeds sit just outside validity.
                json!({"email": "owner@example.com", "password": "1234567", "name": ""}),
            ],
        ),
        route(
            "POST",
            "/api/v1/auth/login".into(),
            Token::None,
            vec![
                json!({"email": "owner@example.com", "password": "password123"}),
                json!({"email": "", "password": ""}),
            ],
        ),
        route(
            "POST",
            "/api/v1/auth/refresh".into(),
            Token::None,
            vec![
                // Not the owner's real token: rotating it would end the session the other
                // routes use. Its shape, with another value.
                json!({"refresh_token": format!("{}x", &refresh[..refresh.len() - 1])}),
                json!({"refresh_token": "rt_nope"}),
            ],
        ),
        route(
            "POST",
            "/api/v1/auth/verify-email".into(),
            Token::None,
            vec![json!({"token": "abc"})],
        ),
        route(
            "POST",
            "/api/v1/auth/forgot-password".into(),
            Token::None,
            vec![json!({"email": "owner@example.com"})],
        ),
        route(
            "POST",
            "/api/v1/auth/reset-password".into(),
            Token::None,
            vec![json!({"token": "abc", "password": "password456"})],
        ),
        route(
            "POST",
            "/api/v1/admin/auth/login".into(),
            Token::None,
            vec![json!({"email": "root@example.com", "password": "adminpass123"})],
        ),
        route(
            "POST",
            "/api/v1/admin/auth/refresh".into(),
            Token::None,
            vec![json!({"refresh_token": "x"})],
        ),
        route(
            "POST",
            "/api/v1/workspaces".into(),
            Token::User,
            vec![json!({"name": "Second", "industry": "retail", "timezone": "Europe/Paris"})],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}"),
            Token::User,
            vec![json!({"name": "Renamed", "industry": "health", "timezone": "UTC"})],
        ),
        route(
            "POST",
            format!("/api/v1/workspaces/{ws}/agents"),
            Token::User,
            vec![agent_body.clone()],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}/agents/{agent}"),
            Token::User,
            vec![agent_body],
        ),
        route(
            "POST",
            format!("/api/v1/workspaces/{ws}/members"),
            Token::User,
            vec![json!({"email": "member@example.com", "role": "member"})],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}/members/{user_id}"),
            Token::User,
            vec![json!({"role": "admin"})],
        ),
        route(
            "POST",
            format!("/api/v1/workspaces/{ws}/phone-numbers"),
            Token::User,
            vec![
                json!({"phone_number": "+15550002222", "friendly_name": "Second", "provider": "twilio", "provider_sid": "PN1"}),
            ],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}/phone-numbers/{number}"),
            Token::User,
            vec![json!({"friendly_name": "Renamed", "status": "active"})],
        ),
        route(
            "POST",
            format!("/api/v1/workspaces/{ws}/voice/providers"),
            Token::User,
            vec![provider_body.clone()],
        ),
        route(
            "PATCH",
            format!("/api/v1/workspaces/{ws}/voice/providers/openai"),
            Token::User,
            vec![provider_body.clone()],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}/voice/providers/google"),
            Token::User,
            vec![provider_body.clone()],
        ),
        route(
            "PUT",
            format!("/api/v1/workspaces/{ws}/voice/strategy"),
            Token::User,
            vec![
                json!({"strategy": "priority", "fallback_enabled": true, "providers": ["openai", "google"]}),
            ],
        ),
        route(
            "POST",
            "/api/v1/admin/providers".into(),
            Token::Admin,
            vec![json!({"provider": "google",
            "api_key": "k", "region": "us", "priority": 5, "is_enabled": true,
            "base_url": "wss://example.com/x", "cost_per_minute_micros": 1000, "config": {}})],
        ),
        route(
            "PATCH",
            "/api/v1/admin/providers/openai".into(),
            Token::Admin,
            vec![json!({"priority": 1,
            "base_url": null, "cost_per_minute_micros": 5})],
        ),
        route(
            "PUT",
            "/api/v1/admin/providers/routing".into(),
            Token::Admin,
            vec![
                json!({"providers": [{"provider": "openai", "priority": 0, "is_enabled": true}]}),
                json!({"fallback_chain": ["openai", "google"]}),
            ],
        ),
        route(
            "PUT",
            "/api/v1/admin/config/settings".into(),
            Token::Admin,
            vec![json!({"settings": [{"key": "signup_enabled", "value": true}]})],
        ),
        route(
            "PUT",
            format!("/api/v1/admin/workspaces/{ws}"),
            Token::Admin,
            vec![
                json!({"name": "Fuzz Co", "status": "active", "subscription_tier": "free", "call_enabled": true}),
            ],
        ),
    ];
    Fixture {
        _app: app,
        router,
        user,
        admin,
        routes,
    }
}

/// Sends one raw body; a user error must be a 4xx with a JSON error, never a 5xx.
async fn send(fixture: &Fixture, route: &Route, body: &[u8]) -> StatusCode {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = Request::builder()
        .method(route.method)
        .uri(&route.path)
        .header("content-type", "application/json");
    match route.token {
        Token::None => {}
        Token::User => req = req.header("authorization", format!("Bearer {}", fixture.user)),
        Token::Admin => req = req.header("authorization", format!("Bearer {}", fixture.admin)),
    }
    let req = req.body(Body::from(body.to_vec())).unwrap();
    let resp = fixture.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        !status.is_server_error(),
        "{} {} answered {status}: {}",
        route.method,
        route.path,
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status} without a JSON body: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert!(
            v["error"]["code"].is_string(),
            "{status} without an error code: {v}"
        );
    }
    status
}

#[test]
fn fuzz_api_json_bodies() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fixture = rt.block_on(fixture());
    let every_seed: Vec<Vec<u8>> = fixture
        .routes
        .iter()
        .flat_map(|r| r.seeds.iter().map(|s| s.to_string().into_bytes()))
        .collect();
    let dict = [
        "email",
        "password",
        "name",
        "refresh_token",
        "token",
        "industry",
        "timezone",
        "config",
        "instructions",
        "call",
        "tools",
        "parameters",
        "voice_provider",
        "voice_config",
        "enabled_call",
        "enabled_chat",
        "phone_number_id",
        "template_id",
        "role",
        "owner",
        "admin",
        "viewer",
        "phone_number",
        "friendly_name",
        "provider",
        "provider_sid",
        "status",
        "uses_platform_key",
        "api_key",
        "priority",
        "is_enabled",
        "strategy",
        "fallback_chain",
        "providers",
        "region",
        "base_url",
        "cost_per_minute_micros",
        "subscription_tier",
        "call_enabled",
        "silence_timeout",
        "max_call_duration",
        "end_call_phrase",
        "openai",
        "google",
        "elevenlabs",
        "deepgram",
        "echo",
    ];
    let mut total = 0;
    for route in &fixture.routes {
        // This route's bodies first, then every other route's as more seeds.
        let mut seeds: Vec<Vec<u8>> = route
            .seeds
            .iter()
            .map(|s| s.to_string().into_bytes())
            .collect();
        seeds.extend(every_seed.iter().cloned());
        let refs: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        let corpus = Corpus::new(&refs, &dict).with_max_len(2_048);
        let name = format!("api {} {}", route.method, route.path);
        // Which answers the bodies got: shows they reach validation (422) and beyond.
        let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
        let stats = fuzz(&name, 200, &corpus, None, |body| {
            let status = rt.block_on(send(&fixture, route, body));
            *statuses.entry(status.as_u16()).or_default() += 1;
        });
        println!("  statuses: {statuses:?}");
        total += stats.inputs;
    }
    println!(
        "fuzz api: {total} bodies over {} routes",
        fixture.routes.len()
    );
}
