//! Shared helpers for the control plane's API tests: an app on a fresh database of either
//! dialect, requests through the real router, and quick fixtures.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vocalized_control::db::Dialect;
use vocalized_control::http::ratelimit::RateLimits;
use vocalized_control::testing::TestDb;
use vocalized_control::{AppState, ControlConfig, MasterKey};

pub const TWILIO_ACCOUNT_SID: &str = "ACplatform0000000000000000000000";
pub const TWILIO_AUTH_TOKEN: &str = "platform-twilio-auth-token";

/// What [`TestApp::live_agent`] made.
pub struct LiveAgent {
    pub token: String,
    pub workspace_id: String,
    pub number_id: String,
    pub agent_id: String,
}

pub struct TestApp {
    pub state: AppState,
    pub router: axum::Router,
    /// The platform admin `verify_number` signs in as, created on first use.
    verifier: tokio::sync::OnceCell<String>,
    _db: TestDb,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The field names of a 422's `details.fields`.
    pub fn bad_fields(&self) -> Vec<String> {
        self.body["error"]["details"]["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    pub async fn new(dialect: Dialect) -> Option<Self> {
        Self::with_limits(dialect, RateLimits::default()).await
    }

    pub async fn with_limits(dialect: Dialect, limits: RateLimits) -> Option<Self> {
        Self::with_config(dialect, |config| config.rate_limits = limits).await
    }

    /// An app whose configuration `adjust` changes from the tests' default.
    pub async fn with_config(
        dialect: Dialect,
        adjust: impl FnOnce(&mut ControlConfig),
    ) -> Option<Self> {
        let db = TestDb::new(dialect).await?;
        let mut config = ControlConfig::new(
            db.url.clone(),
            "https://gw.example.com".into(),
            MasterKey::generate(),
        );
        config.twilio = Some(vocalized_control::config::TwilioAccount {
            account_sid: TWILIO_ACCOUNT_SID.into(),
            auth_token: vocalized_shared::plan::Secret(TWILIO_AUTH_TOKEN.into()),
        });
        config.openai.url = "ws://127.0.0.1:9/openai-fake".into();
        config.openai.api_key = Some(vocalized_shared::plan::Secret("sk-test-platform".into()));
        adjust(&mut config);
        let state = AppState::new(db.db.clone(), config);
        let router = vocalized_control::router(state.clone());
        Some(Self {
            state,
            router,
            verifier: tokio::sync::OnceCell::new(),
            _db: db,
        })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call("POST", path, token, Some(body)).await
    }

    /// Signs up `email` and returns (access token, refresh token, user id).
    pub async fn signup(&self, email: &str) -> (String, String, String) {
        let r = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({ "email": email, "password": "password123", "name": "Test User" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "signup {email}: {}", r.body);
        (
            r.body["token"].as_str().unwrap().to_owned(),
            r.body["refresh_token"].as_str().unwrap().to_owned(),
            r.body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a platform admin with `role` and logs in; returns its access token.
    pub async fn admin(&self, email: &str, role: &str) -> String {
        vocalized_control::create_admin(&self.state.db, email, "Admin", "adminpass123", role)
            .await
            .unwrap();
        let r = self
            .post(
                "/api/v1/admin/auth/login",
                None,
                json!({ "email": email, "password": "adminpass123" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Verifies a phone number as a platform admin: calls through the platform's Twilio
    /// account route only to verified numbers.
    pub async fn verify_number(&self, number_id: &str) {
        let admin = self
            .verifier
            .get_or_init(|| self.admin("verifier@platform.example", "admin"))
            .await;
        let r = self
            .post(
                &format!("/api/v1/admin/phone-numbers/{number_id}/verify"),
                Some(admin),
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "verify {number_id}: {}", r.body);
    }

    /// Signs `email` up, creates a workspace, registers `number` (verified by a platform
    /// admin when `verified`, so platform-account calls route to it) and puts a live agent
    /// with `config` on it.
    pub async fn live_agent(
        &self,
        email: &str,
        number: &str,
        verified: bool,
        config: Value,
    ) -> LiveAgent {
        let (token, _, _) = self.signup(email).await;
        let workspace_id = self.workspace(&token, "Front office").await;
        let ws = |rest: &str| format!("/api/v1/workspaces/{workspace_id}{rest}");
        let n = self
            .post(
                &ws("/phone-numbers"),
                Some(&token),
                json!({ "phone_number": number }),
            )
            .await;
        assert_eq!(n.status, StatusCode::CREATED, "{}", n.body);
        let number_id = n.body["phone_number"]["id"].as_str().unwrap().to_owned();
        if verified {
            self.verify_number(&number_id).await;
        }
        let a = self
            .post(
                &ws("/agents"),
                Some(&token),
                json!({ "name": "Front desk", "phone_number_id": number_id, "config": config }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let agent_id = a.body["agent"]["id"].as_str().unwrap().to_owned();
        let live = self
            .post(
                &ws(&format!("/agents/{agent_id}/activate")),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(live.status, StatusCode::OK, "{}", live.body);
        LiveAgent {
            token,
            workspace_id,
            number_id,
            agent_id,
        }
    }

    /// Creates a workspace owned by `token`'s user; returns its id.
    pub async fn workspace(&self, token: &str, name: &str) -> String {
        let r = self
            .post("/api/v1/workspaces", Some(token), json!({ "name": name }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["workspace"]["id"].as_str().unwrap().to_owned()
    }

    /// The newest email in the outbox to `to`, as (template, body), the body unsealed.
    pub async fn last_email(&self, to: &str) -> (String, String) {
        let (template, sealed): (String, String) = sqlx::query_as(
            "SELECT template, body FROM email_outbox WHERE to_email = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(to)
        .fetch_one(&self.state.db.pool)
        .await
        .unwrap();
        let body = vocalized_control::email::open_body(&self.state.config.master_key, &sealed)
            .expect("outbox bodies open under the master key");
        (template, body)
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql)
            .fetch_one(&self.state.db.pool)
            .await
            .unwrap();
        n
    }
}

impl TestApp {
    /// POSTs a Twilio webhook form, signed with `auth_token` (or unsigned if `None`).
    pub async fn twilio(
        &self,
        path: &str,
        params: &[(&str, &str)],
        auth_token: Option<&str>,
    ) -> (StatusCode, String) {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(owned.iter())
            .finish();
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(token) = auth_token {
            let url = format!("https://gw.example.com{path}");
            req = req.header(
                "x-twilio-signature",
                vocalized_control::twilio::signature::compute(&url, &owned, token),
            );
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The token an email's body carries after `marker` (up to the next whitespace).
pub fn token_after(body: &str, marker: &str) -> String {
    let start = body.find(marker).expect("marker in email") + marker.len();
    body[start..].split_whitespace().next().unwrap().to_owned()
}

/// Runs each named `async fn(TestApp)` once on SQLite and once on Postgres.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = $crate::support::TestApp::new(vocalized_control::db::Dialect::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    match $crate::support::TestApp::new(vocalized_control::db::Dialect::Postgres).await {
                        Some(app) => super::$name(app).await,
                        None => eprintln!("Postgres switched off (VOCALIZED_TEST_POSTGRES_URL=skip)"),
                    }
                }
            )*
        }
    };
}
