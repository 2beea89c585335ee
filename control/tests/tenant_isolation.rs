//! The tenant isolation matrix: every workspace-scoped endpoint × {owner, admin, member,
//! viewer, a user of another workspace, anonymous, platform support}, each case on a fresh
//! workspace, asserting the status AND that a refused request changed nothing. Then every
//! admin endpoint × {super_admin, admin, support, client user, anonymous}. One forgotten
//! check anywhere fails a case here.

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use support::TestApp;
use vocalized_control::util::{new_id, now_ms};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Owner,
    Admin,
    Member,
    Viewer,
    Outsider,
    Anonymous,
    Support,
}

const EVERYONE: [Who; 7] = [
    Who::Owner,
    Who::Admin,
    Who::Member,
    Who::Viewer,
    Who::Outsider,
    Who::Anonymous,
    Who::Support,
];

/// The least workspace role an endpoint needs.
#[derive(Clone, Copy, Debug)]
enum Needs {
    Read,
    Admin,
    Owner,
}

struct People {
    owner: (String, String),
    admin: (String, String),
    member: (String, String),
    viewer: (String, String),
    target: String,
    outsider: String,
    support: String,
    /// The outsider's own workspace, agent and number.
    other_ws: String,
    other_agent: String,
    other_number: String,
}

impl People {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Owner => Some(&self.owner.0),
            Who::Admin => Some(&self.admin.0),
            Who::Member => Some(&self.member.0),
            Who::Viewer => Some(&self.viewer.0),
            Who::Outsider => Some(&self.outsider),
            Who::Anonymous => None,
            Who::Support => Some(&self.support),
        }
    }
}

async fn people(app: &TestApp) -> People {
    let owner = app.signup("owner@example.com").await;
    let admin = app.signup("admin@example.com").await;
    let member = app.signup("member@example.com").await;
    let viewer = app.signup("viewer@example.com").await;
    let target = app.signup("target@example.com").await;
    let outsider = app.signup("outsider@example.com").await;
    let support = app.admin("support@vocalized.test", "support").await;
    let other_ws = app.workspace(&outsider.0, "Other Co").await;
    let number = app
        .post(
            &format!("/api/v1/workspaces/{other_ws}/phone-numbers"),
            Some(&outsider.0),
            json!({"phone_number": "+442071838750"}),
        )
        .await;
    assert_eq!(number.status, StatusCode::CREATED, "{}", number.body);
    let other_number = number.body["phone_number"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent = app
        .post(
            &format!("/api/v1/workspaces/{other_ws}/agents"),
            Some(&outsider.0),
            json!({"name": "Their agent", "phone_number_id": other_number}),
        )
        .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{}", agent.body);
    People {
        owner: (owner.0, owner.2),
        admin: (admin.0, admin.2),
        member: (member.0, member.2),
        viewer: (viewer.0, viewer.2),
        target: target.2,
        outsider: outsider.0,
        support,
        other_agent: agent.body["agent"]["id"].as_str().unwrap().to_owned(),
        other_ws,
        other_number,
    }
}

struct Fixture {
    ws: String,
    agent: String,
    number: String,
    invitation: String,
    call: String,
}

static NUMBERS: AtomicU32 = AtomicU32::new(1000);

fn fresh_number() -> String {
    format!("+1415555{:04}", NUMBERS.fetch_add(1, Ordering::Relaxed))
}

/// A workspace with all four roles, a target member, an agent on a number and a pending
/// invitation, written straight to the database (fast: no password hashing).
async fn fixture(app: &TestApp, p: &People) -> Fixture {
    let pool = &app.state.db.pool;
    let now = now_ms();
    let ws = new_id("ws");
    sqlx::query(
        "INSERT INTO workspaces (id, name, owner_id, status, subscription_tier, timezone, call_enabled, created_at, updated_at)
         VALUES ($1, 'Acme', $2, 'active', 'enterprise', 'UTC', 1, $3, $3)",
    )
    .bind(&ws)
    .bind(&p.owner.1)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    for (user, role) in [
        (&p.owner.1, "owner"),
        (&p.admin.1, "admin"),
        (&p.member.1, "member"),
        (&p.viewer.1, "viewer"),
        (&p.target, "member"),
    ] {
        sqlx::query("INSERT INTO workspace_members (workspace_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)")
            .bind(&ws)
            .bind(user)
            .bind(role)
            .bind(now)
            .execute(pool)
            .await
            .unwrap();
    }
    let number = new_id("pn");
    sqlx::query(
        "INSERT INTO phone_numbers (id, workspace_id, phone_number, provider, status, created_at, updated_at)
         VALUES ($1, $2, $3, 'twilio', 'active', $4, $4)",
    )
    .bind(&number)
    .bind(&ws)
    .bind(fresh_number())
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let agent = new_id("agt");
    sqlx::query(
        "INSERT INTO voice_agents (id, workspace_id, phone_number_id, name, config, voice_provider, voice_config,
                                   status, enabled_chat, enabled_call, widget_public_key, created_at, updated_at)
         VALUES ($1, $2, $3, 'Front desk', '{}', 'openai', '{}', 'draft', 1, 1, $4, $5, $5)",
    )
    .bind(&agent)
    .bind(&ws)
    .bind(&number)
    .bind(format!("pk_{agent}"))
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO workspace_provider_configs (id, workspace_id, provider, uses_platform_key, config, priority, is_enabled, created_at, updated_at)
         VALUES ($1, $2, 'openai', 1, '{}', 0, 1, $3, $3)",
    )
    .bind(new_id("wpc"))
    .bind(&ws)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let invitation = new_id("inv");
    sqlx::query(
        "INSERT INTO invitations (id, workspace_id, email, role, token_hash, invited_by, expires_at, created_at)
         VALUES ($1, $2, 'invitee@example.com', 'viewer', $3, $4, $5, $6)",
    )
    .bind(&invitation)
    .bind(&ws)
    .bind(new_id("hash"))
    .bind(&p.owner.1)
    .bind(now + 3_600_000)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let call = new_id("call");
    sqlx::query(
        "INSERT INTO calls (id, workspace_id, agent_id, phone_number_id, source, direction, status, caller_number,
                            to_number, started_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'twilio', 'inbound', 'completed', '+12349013030', '+14155550000', $5, $5, $5)",
    )
    .bind(&call)
    .bind(&ws)
    .bind(&agent)
    .bind(&number)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    Fixture {
        ws,
        agent,
        number,
        invitation,
        call,
    }
}

/// Everything a request could change in one workspace, as comparable text.
async fn snapshot(app: &TestApp, ws: &str) -> String {
    let pool = &app.state.db.pool;
    let w: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT name, status, subscription_tier, call_enabled, updated_at FROM workspaces WHERE id = $1",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let m: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, role FROM workspace_members WHERE workspace_id = $1 ORDER BY user_id",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let a: Vec<(String, String, String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT id, name, status, widget_public_key, updated_at, phone_number_id FROM voice_agents
         WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let n: Vec<(String, Option<String>, String, i64)> = sqlx::query_as(
        "SELECT id, friendly_name, status, updated_at FROM phone_numbers WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let i: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT id, revoked_at FROM invitations WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let pc: Vec<(String, i64, i64, i64, Option<String>, i64)> = sqlx::query_as(
        "SELECT provider, uses_platform_key, priority, is_enabled, api_key_encrypted, updated_at
         FROM workspace_provider_configs WHERE workspace_id = $1 ORDER BY provider",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    let st: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT strategy, config, updated_at FROM workspace_provider_strategies WHERE workspace_id = $1",
    )
    .bind(ws)
    .fetch_all(pool)
    .await
    .unwrap();
    format!("{w:?}|{m:?}|{a:?}|{n:?}|{i:?}|{pc:?}|{st:?}")
}

fn expected(who: Who, needs: Needs, success: StatusCode) -> StatusCode {
    match (who, needs) {
        (Who::Anonymous, _) => StatusCode::UNAUTHORIZED,
        (Who::Support, _) => StatusCode::FORBIDDEN,
        (Who::Outsider, _) => StatusCode::NOT_FOUND,
        (Who::Owner, _) => success,
        (Who::Admin, Needs::Read | Needs::Admin) => success,
        (Who::Member | Who::Viewer, Needs::Read) => success,
        _ => StatusCode::FORBIDDEN,
    }
}

/// (method, path, body, needs, success status) for one fixture.
fn workspace_endpoints(
    f: &Fixture,
    p: &People,
) -> Vec<(&'static str, String, Option<Value>, Needs, StatusCode)> {
    let ws = format!("/api/v1/workspaces/{}", f.ws);
    let agent = format!("{ws}/agents/{}", f.agent);
    let number = format!("{ws}/phone-numbers/{}", f.number);
    use StatusCode as S;
    vec![
        ("GET", ws.clone(), None, Needs::Read, S::OK),
        (
            "PUT",
            ws.clone(),
            Some(json!({"name": "Renamed"})),
            Needs::Admin,
            S::OK,
        ),
        ("DELETE", ws.clone(), None, Needs::Owner, S::NO_CONTENT),
        ("GET", format!("{ws}/members"), None, Needs::Read, S::OK),
        (
            "POST",
            format!("{ws}/members"),
            Some(json!({"email": "new@example.com", "role": "member"})),
            Needs::Admin,
            S::CREATED,
        ),
        (
            "PUT",
            format!("{ws}/members/{}", p.target),
            Some(json!({"role": "viewer"})),
            Needs::Admin,
            S::OK,
        ),
        (
            "DELETE",
            format!("{ws}/members/{}", p.target),
            None,
            Needs::Admin,
            S::NO_CONTENT,
        ),
        (
            "DELETE",
            format!("{ws}/invitations/{}", f.invitation),
            None,
            Needs::Admin,
            S::NO_CONTENT,
        ),
        ("GET", format!("{ws}/agents"), None, Needs::Read, S::OK),
        (
            "POST",
            format!("{ws}/agents"),
            Some(json!({"name": "New agent"})),
            Needs::Admin,
            S::CREATED,
        ),
        ("GET", agent.clone(), None, Needs::Read, S::OK),
        (
            "PUT",
            agent.clone(),
            Some(json!({"name": "Renamed agent"})),
            Needs::Admin,
            S::OK,
        ),
        ("DELETE", agent.clone(), None, Needs::Admin, S::NO_CONTENT),
        (
            "POST",
            format!("{agent}/activate"),
            None,
            Needs::Admin,
            S::OK,
        ),
        ("POST", format!("{agent}/pause"), None, Needs::Admin, S::OK),
        (
            "POST",
            format!("{agent}/widget-key"),
            None,
            Needs::Admin,
            S::OK,
        ),
        (
            "GET",
            format!("{ws}/phone-numbers"),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "POST",
            format!("{ws}/phone-numbers"),
            Some(json!({"phone_number": fresh_number()})),
            Needs::Admin,
            S::CREATED,
        ),
        ("GET", number.clone(), None, Needs::Read, S::OK),
        (
            "PUT",
            number.clone(),
            Some(json!({"friendly_name": "Main line"})),
            Needs::Admin,
            S::OK,
        ),
        ("DELETE", number.clone(), None, Needs::Admin, S::NO_CONTENT),
        ("GET", format!("{ws}/calls"), None, Needs::Read, S::OK),
        ("GET", format!("{ws}/calls/live"), None, Needs::Read, S::OK),
        (
            "GET",
            format!("{ws}/calls/{}", f.call),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "GET",
            format!("{ws}/calls/{}/events", f.call),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "GET",
            format!("{ws}/calls/{}/transcription", f.call),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "GET",
            format!("{ws}/voice/providers"),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "POST",
            format!("{ws}/voice/providers"),
            Some(json!({"provider": "gemini", "api_key": "sk-matrix-byo"})),
            Needs::Admin,
            S::CREATED,
        ),
        (
            "PATCH",
            format!("{ws}/voice/providers/openai"),
            Some(json!({"priority": 3})),
            Needs::Admin,
            S::OK,
        ),
        (
            "PUT",
            format!("{ws}/voice/providers/deepgram"),
            Some(json!({})),
            Needs::Admin,
            S::CREATED,
        ),
        (
            "DELETE",
            format!("{ws}/voice/providers/openai"),
            None,
            Needs::Admin,
            S::NO_CONTENT,
        ),
        (
            "GET",
            format!("{ws}/voice/strategy"),
            None,
            Needs::Read,
            S::OK,
        ),
        (
            "PUT",
            format!("{ws}/voice/strategy"),
            Some(json!({"strategy": "quality_first"})),
            Needs::Admin,
            S::OK,
        ),
    ]
}

async fn workspace_matrix(app: TestApp) {
    let p = people(&app).await;
    let other_before = snapshot(&app, &p.other_ws).await;
    let endpoint_count = workspace_endpoints(&fixture(&app, &p).await, &p).len();
    let mut failures = Vec::new();
    for index in 0..endpoint_count {
        for who in EVERYONE {
            let f = fixture(&app, &p).await;
            let (method, path, body, needs, success) =
                workspace_endpoints(&f, &p).swap_remove(index);
            let before = snapshot(&app, &f.ws).await;
            let reply = app.call(method, &path, p.token(who), body).await;
            let want = expected(who, needs, success);
            if reply.status != want {
                failures.push(format!(
                    "{who:?} {method} {path}: got {} want {want}: {}",
                    reply.status, reply.body
                ));
            } else if !want.is_success() && snapshot(&app, &f.ws).await != before {
                failures.push(format!(
                    "{who:?} {method} {path}: refused with {want} but changed data"
                ));
            } else if want.is_success() && method != "GET" && snapshot(&app, &f.ws).await == before
            {
                failures.push(format!(
                    "{who:?} {method} {path}: succeeded but changed nothing"
                ));
            }
        }
    }
    assert_eq!(
        snapshot(&app, &p.other_ws).await,
        other_before,
        "the other workspace changed"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Ids of another workspace's agent and number, used through a workspace the caller owns,
/// are 404s and change nothing there.
async fn foreign_ids_through_own_workspace(app: TestApp) {
    let p = people(&app).await;
    let f = fixture(&app, &p).await;
    let before = snapshot(&app, &p.other_ws).await;
    let ws = format!("/api/v1/workspaces/{}", f.ws);
    let agent = format!("{ws}/agents/{}", p.other_agent);
    let number = format!("{ws}/phone-numbers/{}", p.other_number);
    for (method, path, body) in [
        ("GET", agent.clone(), None),
        ("PUT", agent.clone(), Some(json!({"name": "hijacked"}))),
        ("DELETE", agent.clone(), None),
        ("POST", format!("{agent}/activate"), None),
        ("POST", format!("{agent}/pause"), None),
        ("POST", format!("{agent}/widget-key"), None),
        ("GET", number.clone(), None),
        (
            "PUT",
            number.clone(),
            Some(json!({"friendly_name": "hijacked"})),
        ),
        ("DELETE", number.clone(), None),
    ] {
        let r = app.call(method, &path, Some(&p.owner.0), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.body
        );
    }
    // Attaching another workspace's number to one's own agent is refused too.
    let r = app
        .call(
            "PUT",
            &format!("{ws}/agents/{}", f.agent),
            Some(&p.owner.0),
            Some(json!({"phone_number_id": p.other_number})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.bad_fields(), ["phone_number_id"]);
    let r = app
        .post(
            &format!("{ws}/agents"),
            Some(&p.owner.0),
            json!({"name": "x", "phone_number_id": p.other_number}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(snapshot(&app, &p.other_ws).await, before);

    // Lists never include another tenant's rows.
    let mine = app.get("/api/v1/workspaces", &p.owner.0).await;
    let ids: Vec<&str> = mine.body["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&f.ws.as_str()) && !ids.contains(&p.other_ws.as_str()));
    let agents = app.get(&format!("{ws}/agents"), &p.owner.0).await;
    assert!(!agents.body.to_string().contains(&p.other_agent));
}

#[derive(Clone, Copy, Debug)]
enum AdminWho {
    SuperAdmin,
    Admin,
    Support,
    ClientUser,
    Anonymous,
}

async fn admin_matrix(app: TestApp) {
    let p = people(&app).await;
    let super_admin = app.admin("root@vocalized.test", "super_admin").await;
    let admin = app.admin("ops@vocalized.test", "admin").await;
    let ws = p.other_ws.clone();
    sqlx::query(
        "INSERT INTO platform_provider_configs (provider, config, priority, is_enabled, created_at, updated_at)
         VALUES ('openai', '{}', 0, 1, 0, 0)",
    )
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO phone_numbers (id, workspace_id, phone_number, created_at, updated_at)
         VALUES ('pn_matrix', $1, '+14155550177', 0, 0)",
    )
    .bind(&ws)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    // (method, path, body, least role: 0 support, 1 admin, 2 super_admin, success)
    let endpoints: Vec<(&str, String, Option<Value>, u8, StatusCode)> = vec![
        (
            "GET",
            "/api/v1/admin/auth/me".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/workspaces".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "GET",
            format!("/api/v1/admin/workspaces/{ws}"),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "PUT",
            format!("/api/v1/admin/workspaces/{ws}"),
            Some(json!({"call_enabled": false})),
            1,
            StatusCode::OK,
        ),
        (
            "POST",
            format!("/api/v1/admin/workspaces/{ws}/suspend"),
            Some(json!({"reason": "unpaid"})),
            1,
            StatusCode::OK,
        ),
        (
            "POST",
            format!("/api/v1/admin/workspaces/{ws}/activate"),
            None,
            1,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/config/settings".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "PUT",
            "/api/v1/admin/config/settings".into(),
            Some(json!({"settings": [{"key": "trial_duration_days", "value": 30}]})),
            2,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/logs/activity".into(),
            None,
            1,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/providers".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/providers/openai".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "PATCH",
            "/api/v1/admin/providers/openai".into(),
            Some(json!({"priority": 4})),
            1,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/providers/health".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/providers/costs".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/admin/phone-numbers".into(),
            None,
            0,
            StatusCode::OK,
        ),
        (
            "POST",
            "/api/v1/admin/phone-numbers/pn_matrix/verify".into(),
            None,
            1,
            StatusCode::OK,
        ),
        (
            "PUT",
            "/api/v1/admin/providers/routing".into(),
            Some(json!({"fallback_chain": ["openai"]})),
            1,
            StatusCode::OK,
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, least, success) in &endpoints {
        for who in [
            AdminWho::SuperAdmin,
            AdminWho::Admin,
            AdminWho::Support,
            AdminWho::ClientUser,
            AdminWho::Anonymous,
        ] {
            let (token, level) = match who {
                AdminWho::SuperAdmin => (Some(super_admin.as_str()), 2),
                AdminWho::Admin => (Some(admin.as_str()), 1),
                AdminWho::Support => (Some(p.support.as_str()), 0),
                AdminWho::ClientUser => (Some(p.owner.0.as_str()), -1),
                AdminWho::Anonymous => (None, -2),
            };
            let want = match level {
                -2 => StatusCode::UNAUTHORIZED,
                l if l >= i32::from(*least) => *success,
                _ => StatusCode::FORBIDDEN,
            };
            let logs_before = app.count("SELECT COUNT(*) FROM admin_activity_logs").await;
            let r = app.call(method, path, token, body.clone()).await;
            if r.status != want {
                failures.push(format!(
                    "{who:?} {method} {path}: got {} want {want}: {}",
                    r.status, r.body
                ));
            }
            // Every admin mutation leaves an audit row; refused ones leave none.
            let logs_after = app.count("SELECT COUNT(*) FROM admin_activity_logs").await;
            let mutation = *method != "GET";
            if mutation && want.is_success() && logs_after != logs_before + 1 {
                failures.push(format!(
                    "{who:?} {method} {path}: {} audit rows written",
                    logs_after - logs_before
                ));
            }
            if (!want.is_success() || !mutation) && logs_after != logs_before {
                failures.push(format!(
                    "{who:?} {method} {path}: audit rows written without a change"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

on_both_databases!(
    workspace_matrix,
    foreign_ids_through_own_workspace,
    admin_matrix
);
