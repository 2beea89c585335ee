//! Platform admins, the calling switch and its default, platform settings, health,
//! readiness, metrics and the OpenAPI document.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;
use vocalized_control::http::openapi::{Access, ENDPOINTS};

async fn admins_switch_calling_per_workspace_and_set_the_default(app: TestApp) {
    let root = app.admin("root@vocalized.test", "super_admin").await;
    let ops = app.admin("ops@vocalized.test", "admin").await;
    let (owner, _, _) = app.signup("owner@acme.example").await;
    let ws = app.workspace(&owner, "Acme").await;
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &owner)
            .await
            .body["workspace"]["call_enabled"],
        true
    );

    let off = app
        .call(
            "PUT",
            &format!("/api/v1/admin/workspaces/{ws}"),
            Some(&ops),
            Some(json!({ "call_enabled": false })),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &owner)
            .await
            .body["workspace"]["call_enabled"],
        false
    );
    let log = app.get("/api/v1/admin/logs/activity", &ops).await;
    assert_eq!(log.body["logs"][0]["action"], "updated_workspace");
    assert_eq!(log.body["logs"][0]["admin_email"], "ops@vocalized.test");
    assert_eq!(log.body["logs"][0]["details"]["call_enabled"], false);

    // Workspace admins cannot flip the platform's switch through their own API.
    let sneaky = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}"),
            Some(&owner),
            Some(json!({ "call_enabled": true })),
        )
        .await;
    assert_eq!(sneaky.status, StatusCode::OK);
    assert_eq!(sneaky.body["workspace"]["call_enabled"], false);

    // The default for new workspaces is a platform setting (super admins only).
    let bad = app
        .call("PUT", "/api/v1/admin/config/settings", Some(&root), Some(json!({ "settings": [
            { "key": "default_call_enabled", "value": "nope" }, { "key": "made_up", "value": 1 } ] })))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.bad_fields(), ["settings[0].value", "settings[1].value"]);
    let set = app
        .call(
            "PUT",
            "/api/v1/admin/config/settings",
            Some(&root),
            Some(json!({ "settings": [
            { "key": "default_call_enabled", "value": false } ] })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let ws2 = app.workspace(&owner, "Acme Two").await;
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws2}"), &owner)
            .await
            .body["workspace"]["call_enabled"],
        false
    );

    let suspended = app
        .post(
            &format!("/api/v1/admin/workspaces/{ws}/suspend"),
            Some(&ops),
            json!({ "reason": "unpaid invoice" }),
        )
        .await;
    assert_eq!(suspended.body["workspace"]["status"], "suspended");
    let listed = app
        .get("/api/v1/admin/workspaces?status=suspended", &ops)
        .await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(
        listed.body["workspaces"][0]["owner_email"],
        "owner@acme.example"
    );
    let searched = app.get("/api/v1/admin/workspaces?search=two", &ops).await;
    assert_eq!(searched.body["total"], 1);
}

async fn admin_sessions_and_tokens_stay_in_their_lane(app: TestApp) {
    let r = app
        .post(
            "/api/v1/admin/auth/login",
            None,
            json!({ "email": "nobody@vocalized.test", "password": "whatever1" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let admin = app.admin("ops@vocalized.test", "admin").await;
    let me = app.get("/api/v1/admin/auth/me", &admin).await;
    assert_eq!(me.body["admin"]["role"], "admin");
    // An admin token is not a client token and the reverse.
    assert_eq!(
        app.get("/api/v1/auth/me", &admin).await.status,
        StatusCode::FORBIDDEN
    );
    let (user, _, _) = app.signup("someone@example.com").await;
    assert_eq!(
        app.get("/api/v1/admin/auth/me", &user).await.status,
        StatusCode::FORBIDDEN
    );
    let out = app
        .call("POST", "/api/v1/admin/auth/logout", Some(&admin), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/admin/auth/me", &admin).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The CLI's create_admin refuses duplicates and bad input with a reason.
    let dup = vocalized_control::create_admin(
        &app.state.db,
        "OPS@vocalized.test",
        "Again",
        "password123",
        "admin",
    )
    .await;
    assert!(matches!(
        dup,
        Err(vocalized_control::CreateAdminError::EmailTaken)
    ));
    let bad_role = vocalized_control::create_admin(
        &app.state.db,
        "x@vocalized.test",
        "X",
        "password123",
        "god",
    )
    .await;
    assert!(matches!(
        bad_role,
        Err(vocalized_control::CreateAdminError::Invalid(_))
    ));
}

async fn health_readiness_and_metrics(app: TestApp) {
    let h = app.call("GET", "/healthz", None, None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["database"], "ok");
    app.call("GET", "/api/v1/auth/me", None, None).await;
    let m = app.call("GET", "/metrics", None, None).await;
    let text = m.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"vocalized_http_requests_total{method="GET",route="/api/v1/auth/me",status="401"} 1"#
        ),
        "{text}"
    );
    // Once the database is gone, readiness says so (and liveness does not).
    app.state.db.pool.close().await;
    assert_eq!(
        app.call("GET", "/readyz", None, None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.call("GET", "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

/// hyper accepts any token as a method; odd methods must not each become a new series.
#[tokio::test]
async fn odd_methods_add_a_bounded_number_of_metric_series() {
    let app = TestApp::new(vocalized_control::db::Dialect::Sqlite)
        .await
        .unwrap();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("vocalized_http_requests_total{"))
            .count()
    };
    app.call("GET", "/healthz", None, None).await;
    let before = series(
        app.call("GET", "/metrics", None, None)
            .await
            .body
            .as_str()
            .unwrap(),
    );
    for i in 0..1000 {
        let r = app.call(&format!("AAAA{i}"), "/healthz", None, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = app.call("GET", "/metrics", None, None).await;
    let text = text.body.as_str().unwrap();
    assert!(series(text) <= before + 3, "{}", series(text));
    assert!(
        text.lines().any(
            |l| l.starts_with(r#"vocalized_http_requests_total{method="OTHER""#)
                && l.ends_with(r#"status="405"} 1000"#)
        ),
        "{text}"
    );
}

/// A page number near i64::MAX is an empty page, not an overflow (a panic in debug
/// builds, a negative OFFSET and a 500 on Postgres in release).
async fn huge_page_numbers_are_empty_pages(app: TestApp) {
    let ops = app.admin("ops@vocalized.test", "admin").await;
    let (owner, _, _) = app.signup("owner@acme.example").await;
    let ws = app.workspace(&owner, "Acme").await;
    let max = i64::MAX;
    for (path, token, list) in [
        (
            format!("/api/v1/workspaces/{ws}/calls?page={max}"),
            &owner,
            "calls",
        ),
        (
            format!("/api/v1/workspaces/{ws}/calls?page={max}&limit=200"),
            &owner,
            "calls",
        ),
        (
            format!("/api/v1/admin/workspaces?page={max}"),
            &ops,
            "workspaces",
        ),
        (
            format!("/api/v1/admin/logs/activity?page={max}&limit=200"),
            &ops,
            "logs",
        ),
    ] {
        let r = app.get(&path, token).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.body[list], json!([]), "{path}");
    }
}

on_both_databases!(
    huge_page_numbers_are_empty_pages,
    admins_switch_calling_per_workspace_and_set_the_default,
    admin_sessions_and_tokens_stay_in_their_lane,
    health_readiness_and_metrics,
);

/// Every endpoint the OpenAPI document lists is routed (no fallback 404 or 405), and the
/// protected ones refuse anonymous callers; the served document lists them all.
#[tokio::test]
async fn openapi_lists_every_endpoint_and_every_listed_endpoint_exists() {
    let app = TestApp::new(vocalized_control::db::Dialect::Sqlite)
        .await
        .unwrap();
    let doc = app.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut listed = 0;
    for e in ENDPOINTS {
        let path = e.path.replace('{', "x").replace('}', "");
        let r = app.call(e.method, &path, None, Some(json!({}))).await;
        assert_ne!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            e.method,
            e.path
        );
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body["error"]["message"] == "route not found"),
            "{} {} is listed but not routed",
            e.method,
            e.path
        );
        if e.access != Access::Public {
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{} {} is open",
                e.method,
                e.path
            );
        }
        assert!(doc.body["paths"][e.path][e.method.to_lowercase()].is_object());
        listed += 1;
    }
    assert!(listed >= 49);
}

/// With a metrics token configured, `/metrics` answers only a scraper that presents it.
#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let app = TestApp::new(vocalized_control::db::Dialect::Sqlite)
        .await
        .unwrap();
    let mut config = (*app.state.config).clone();
    config.metrics_token = Some(vocalized_shared::plan::Secret("scrape-token".into()));
    let state = vocalized_control::AppState::new(app.state.db.clone(), config);
    let router = vocalized_control::router(state);
    let status = |auth: Option<&'static str>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let mut req = axum::http::Request::builder().uri("/metrics");
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            let req = req.body(axum::body::Body::empty()).unwrap();
            router.oneshot(req).await.unwrap().status()
        }
    };
    assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some("Bearer nope")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(Some("Basic scrape-token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(Some("Bearer scrape-token")).await, StatusCode::OK);
    assert_eq!(status(Some("bearer scrape-token")).await, StatusCode::OK);
}
