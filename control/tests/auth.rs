//! Client and admin authentication: signup, login, refresh rotation, logout, email
//! verification, password reset, validation, conflicts and rate limits.

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{TestApp, token_after};
use vocalized_control::db::Dialect;
use vocalized_control::http::ratelimit::{Limit, RateLimits};

async fn signup_login_me_and_logout(app: TestApp) {
    let (token, refresh, user_id) = app.signup("Alice@Example.com").await;
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["id"], user_id.as_str());
    assert_eq!(me.body["user"]["email"], "alice@example.com");
    assert_eq!(me.body["user"]["email_verified"], false);
    assert!(!refresh.is_empty());

    let wrong = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"alice@example.com","password":"nope-nope"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let unknown = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"bob@example.com","password":"password123"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );

    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"ALICE@example.com","password":"password123"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["user"]["id"], user_id.as_str());
    assert!(login.body["workspaces"].as_array().unwrap().is_empty());
    let second = login.body["token"].as_str().unwrap().to_owned();

    // Logging out ends that session only: its access token stops working at once.
    let out = app
        .call("POST", "/api/v1/auth/logout", Some(&second), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/auth/me", &second).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/api/v1/auth/me", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/auth/me", "not-a-jwt").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn refresh_tokens_rotate_and_replay_ends_the_session(app: TestApp) {
    let (access, refresh, _) = app.signup("carol@example.com").await;
    let r1 = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.body);
    let refresh2 = r1.body["refresh_token"].as_str().unwrap().to_owned();
    let access2 = r1.body["token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(
        app.get("/api/v1/auth/me", &access2).await.status,
        StatusCode::OK
    );

    // The used token is refused, and presenting it again revokes the whole session.
    let replay = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    let after = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh2}),
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/auth/me", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &access2).await.status,
        StatusCode::UNAUTHORIZED
    );

    let missing = app.post("/api/v1/auth/refresh", None, json!({})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.bad_fields(), ["refresh_token"]);
    // A client refresh token is not an admin refresh token.
    let (_, refresh3, _) = app.signup("dave@example.com").await;
    let cross = app
        .post(
            "/api/v1/admin/auth/refresh",
            None,
            json!({"refresh_token": refresh3}),
        )
        .await;
    assert_eq!(cross.status, StatusCode::UNAUTHORIZED);
}

async fn email_verification_is_single_use(app: TestApp) {
    let (token, _, _) = app.signup("erin@example.com").await;
    let (template, body) = app.last_email("erin@example.com").await;
    assert_eq!(template, "verify_email");
    let code = token_after(&body, "verify-email: ");
    let ok = app
        .post("/api/v1/auth/verify-email", None, json!({"token": code}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        app.get("/api/v1/auth/me", &token).await.body["user"]["email_verified"],
        true
    );
    let again = app
        .post("/api/v1/auth/verify-email", None, json!({"token": code}))
        .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.bad_fields(), ["token"]);
}

async fn password_reset_changes_the_password_and_ends_sessions(app: TestApp) {
    let (token, _, _) = app.signup("frank@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email":"frank@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Unknown addresses get the same answer and no email.
    let unknown = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email":"nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::ACCEPTED);
    assert_eq!(unknown.body, r.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE to_email = 'nobody@example.com'")
            .await,
        0
    );

    let (template, body) = app.last_email("frank@example.com").await;
    assert_eq!(template, "reset_password");
    let code = token_after(&body, "reset-password: ");
    let weak = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": code, "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak.bad_fields(), ["new_password"]);
    // The rejected attempt did not use the token up.
    let ok = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": code, "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let reuse = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": code, "new_password": "new-password-2"}),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        app.get("/api/v1/auth/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let old = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"frank@example.com","password":"password123"}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"frank@example.com","password":"new-password-1"}),
        )
        .await;
    assert_eq!(new.status, StatusCode::OK);
}

async fn bad_signups_are_rejected_and_write_nothing(app: TestApp) {
    let r = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email":"not-an-email","password":"short"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "validation_failed");
    assert_eq!(r.bad_fields(), ["email", "name", "password"]);

    let wrong_type = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": 42, "password": "password123", "name": "x"}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_type.code(), "invalid_body");

    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/auth/signup")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"email\": \"a@b.co\", "))
        .unwrap();
    let malformed = app.send(req).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "malformed_json");

    app.signup("grace@example.com").await;
    let dup = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email":"GRACE@example.com","password":"password123","name":"Again"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "email_taken");
    assert_eq!(app.count("SELECT COUNT(*) FROM client_users").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM email_outbox").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM user_tokens").await, 1);
}

async fn unknown_routes_and_methods_are_json_errors(app: TestApp) {
    let r = app.call("GET", "/api/v1/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let m = app.call("DELETE", "/api/v1/auth/signup", None, None).await;
    assert_eq!(m.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(m.code(), "method_not_allowed");
}

/// Rotation claims the old token and inserts the new one together: when the insert fails,
/// the old token still works and the session lives on (L11).
async fn a_failed_rotation_leaves_the_session_alive(app: TestApp) {
    let (access, refresh, _) = app.signup("kim@example.com").await;
    let pool = &app.state.db.pool;
    let (create, drop): (&[&str], &[&str]) = match app.state.db.dialect {
        Dialect::Sqlite => (
            &[
                "CREATE TRIGGER no_new_tokens BEFORE INSERT ON refresh_tokens
               BEGIN SELECT RAISE(ABORT, 'refresh_tokens is read-only'); END",
            ],
            &["DROP TRIGGER no_new_tokens"],
        ),
        Dialect::Postgres => (
            &[
                "CREATE FUNCTION no_new_tokens() RETURNS trigger AS $$
                 BEGIN RAISE EXCEPTION 'refresh_tokens is read-only'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER no_new_tokens BEFORE INSERT ON refresh_tokens
                 FOR EACH ROW EXECUTE FUNCTION no_new_tokens()",
            ],
            &[
                "DROP TRIGGER no_new_tokens ON refresh_tokens",
                "DROP FUNCTION no_new_tokens()",
            ],
        ),
    };
    for sql in create {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let failed = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.body
    );
    // Meanwhile the session was never without a live token.
    assert_eq!(
        app.get("/api/v1/auth/me", &access).await.status,
        StatusCode::OK
    );
    for sql in drop {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let retried = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
}

on_both_databases!(
    outbox_bodies_do_not_hold_usable_tokens,
    a_failed_rotation_leaves_the_session_alive,
    signup_login_me_and_logout,
    refresh_tokens_rotate_and_replay_ends_the_session,
    email_verification_is_single_use,
    password_reset_changes_the_password_and_ends_sessions,
    bad_signups_are_rejected_and_write_nothing,
    unknown_routes_and_methods_are_json_errors,
);

#[tokio::test]
async fn login_signup_and_forgot_password_are_rate_limited() {
    let limits = RateLimits {
        login_per_ip: Limit::new(100, 60),
        login_per_email: Limit::new(3, 300),
        signup_per_ip: Limit::new(2, 3600),
        forgot_per_ip: Limit::new(100, 3600),
        forgot_per_email: Limit::new(1, 3600),
    };
    let app = TestApp::with_limits(Dialect::Sqlite, limits).await.unwrap();
    app.signup("henry@example.com").await;
    app.signup("ivy@example.com").await;
    let third = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email":"jack@example.com","password":"password123","name":"J"}),
        )
        .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.code(), "rate_limited");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM client_users WHERE email = 'jack@example.com'")
            .await,
        0
    );

    for _ in 0..3 {
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email":"henry@example.com","password":"wrong-pass"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The fourth try in the window is refused even with the right password.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"henry@example.com","password":"password123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Another email is not affected.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email":"ivy@example.com","password":"password123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email":"ivy@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email":"ivy@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

/// An over-long "email" is refused with a 422 before it can become a rate-limit key.
#[tokio::test]
async fn logins_with_over_long_emails_are_refused_on_the_field() {
    let app = TestApp::new(Dialect::Sqlite).await.unwrap();
    let long = format!("{}@example.com", "a".repeat(250));
    for path in ["/api/v1/auth/login", "/api/v1/admin/auth/login"] {
        let r = app
            .post(
                path,
                None,
                json!({"email": long, "password": "password123"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            r.body
        );
        assert_eq!(r.bad_fields(), ["email"]);
    }
    // A 1 MB one too (the body limit is 2 MB).
    let huge = "x".repeat(1 << 20);
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": huge, "password": "password123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.state.limiter.len(),
        1,
        "only the per-IP window was kept"
    );
}

/// Behind a proxy, the address the proxy appended (the right-most) is the client's, so
/// a client cannot escape the per-IP limit by sending its own `X-Forwarded-For`.
#[tokio::test]
async fn the_per_ip_limit_keys_on_the_address_the_proxy_appended() {
    use axum::body::Body;
    use tower::ServiceExt;
    let limits = RateLimits {
        login_per_ip: Limit::new(2, 60),
        ..RateLimits::default()
    };
    let app = TestApp::with_limits(Dialect::Sqlite, limits).await.unwrap();
    let mut config = (*app.state.config).clone();
    config.trust_forwarded_for = true;
    let router = vocalized_control::router(vocalized_control::AppState::new(
        app.state.db.clone(),
        config,
    ));
    let mut statuses = Vec::new();
    for spoofed in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login")
            .header("content-type", "application/json")
            .header("x-forwarded-for", format!("{spoofed}, 203.0.113.9"))
            .body(Body::from(
                json!({"email": format!("u{spoofed}@example.com"), "password": "password123"})
                    .to_string(),
            ))
            .unwrap();
        statuses.push(router.clone().oneshot(req).await.unwrap().status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

/// One-time tokens never sit in the outbox in plain text (L4): a leaked table or backup
/// must not give working reset or verification links.
async fn outbox_bodies_do_not_hold_usable_tokens(app: TestApp) {
    app.signup("lena@example.com").await;
    let r = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email":"lena@example.com"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let (_, reset) = app.last_email("lena@example.com").await;
    let token = token_after(&reset, "reset-password: ");
    let rows: Vec<(String,)> = sqlx::query_as("SELECT body FROM email_outbox")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the verification and the reset email");
    for (stored,) in &rows {
        assert!(!stored.contains(&token), "raw reset token in the outbox");
        assert!(!stored.contains("token"), "{stored}");
        // The sender opens it with the master key.
        assert!(vocalized_control::email::open_body(&app.state.config.master_key, stored).is_ok());
    }
    // And the token the email carries works.
    let ok = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": token, "new_password": "another-password-1"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

/// A login through a proxy that trusts `X-Forwarded-For`, from `ip`.
async fn login_from(router: &axum::Router, ip: &str, email: &str, password: &str) -> StatusCode {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
        .body(axum::body::Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .unwrap();
    router.clone().oneshot(req).await.unwrap().status()
}

/// The per-account limit stops guessing, but a stranger filling it does not lock the owner
/// out from an address they signed in from before (L5).
#[tokio::test]
async fn a_stranger_cannot_lock_the_owner_out() {
    let limits = RateLimits {
        login_per_email: Limit::new(3, 300),
        ..RateLimits::default()
    };
    let app = TestApp::with_limits(Dialect::Sqlite, limits).await.unwrap();
    let mut config = (*app.state.config).clone();
    config.trust_forwarded_for = true;
    let router = vocalized_control::router(vocalized_control::AppState::new(
        app.state.db.clone(),
        config,
    ));
    app.signup("mona@example.com").await;
    let (home, attacker, cafe) = ("198.51.100.7", "203.0.113.66", "192.0.2.44");
    assert_eq!(
        login_from(&router, home, "mona@example.com", "password123").await,
        StatusCode::OK
    );
    for _ in 0..2 {
        assert_eq!(
            login_from(&router, attacker, "mona@example.com", "guess-guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The account's window is full: strangers are refused, right password or not...
    assert_eq!(
        login_from(&router, attacker, "mona@example.com", "guess-again").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&router, cafe, "mona@example.com", "password123").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...but the owner's known address still signs in.
    assert_eq!(
        login_from(&router, home, "mona@example.com", "password123").await,
        StatusCode::OK
    );
}
