//! What the property-based contract run (`scripts/api-contract`) found, kept as plain
//! tests: bad query strings, forms and bodies are JSON 400s, paging works and cannot
//! overflow, and the document declares what the endpoints answer.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use support::TestApp;

/// `page` and `limit` on the admin lists were refused whatever their value (serde's
/// `flatten` hands query values over as strings).
async fn admin_lists_page(app: TestApp) {
    let admin = app.admin("root@vocalized.test", "super_admin").await;
    let (owner, _, _) = app.signup("owner@acme.example").await;
    app.workspace(&owner, "Acme").await;
    app.workspace(&owner, "Acme two").await;

    let first = app
        .get("/api/v1/admin/workspaces?page=1&limit=1", &admin)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(first.body["total"], 2);
    assert_eq!(first.body["limit"], 1);
    let second = app
        .get("/api/v1/admin/workspaces?page=2&limit=1", &admin)
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_ne!(
        second.body["workspaces"][0]["id"],
        first.body["workspaces"][0]["id"]
    );

    let log = app
        .get("/api/v1/admin/logs/activity?page=1&limit=5", &admin)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    assert_eq!(log.body["page"], 1);
}

/// A page number near i64::MAX is an empty page (it overflowed `(page - 1) * limit`).
async fn a_huge_page_is_empty(app: TestApp) {
    let admin = app.admin("root@vocalized.test", "super_admin").await;
    let (owner, _, _) = app.signup("owner@acme.example").await;
    let ws = app.workspace(&owner, "Acme").await;
    let huge = i64::MAX;
    let calls = app
        .get(
            &format!("/api/v1/workspaces/{ws}/calls?page={huge}&limit=200"),
            &owner,
        )
        .await;
    assert_eq!(calls.status, StatusCode::OK, "{}", calls.body);
    assert_eq!(calls.body["calls"], json!([]));
    let list = app
        .get(
            &format!("/api/v1/admin/workspaces?page={huge}&limit=200"),
            &admin,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["workspaces"], json!([]));
}

/// Query strings, forms and bodies that do not parse are JSON 400s like every other error.
async fn unparsable_input_is_a_json_400(app: TestApp) {
    let (owner, _, _) = app.signup("owner@acme.example").await;
    let ws = app.workspace(&owner, "Acme").await;

    let query = app
        .get(&format!("/api/v1/workspaces/{ws}/calls?page=abc"), &owner)
        .await;
    assert_eq!(query.status, StatusCode::BAD_REQUEST);
    assert_eq!(query.code(), "invalid_query", "{}", query.body);

    // A webhook posted as JSON instead of a form (axum answered a plain-text 415).
    let form = app
        .call("POST", "/webhooks/calls/status", None, Some(json!({})))
        .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    assert_eq!(form.code(), "unsupported_media_type", "{}", form.body);

    // serde reads a struct from an array, so `[null, null]` was an empty update.
    let array = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}"),
            Some(&owner),
            Some(json!(["Renamed"])),
        )
        .await;
    assert_eq!(array.status, StatusCode::BAD_REQUEST);
    assert_eq!(array.code(), "invalid_body", "{}", array.body);
    let shown = app.get(&format!("/api/v1/workspaces/{ws}"), &owner).await;
    assert_eq!(shown.body["workspace"]["name"], "Acme");
}

/// A NUL character reached Postgres as a 500 (its text cannot hold one) and was stored
/// on SQLite: refused as a 400 on both, in bodies, paths, query strings and forms.
async fn nul_characters_are_refused(app: TestApp) {
    let (owner, _, _) = app.signup("owner@acme.example").await;
    let ws = app.workspace(&owner, "Acme").await;
    let body = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}"),
            Some(&owner),
            Some(json!({ "name": "Ac\u{0}me" })),
        )
        .await;
    assert_eq!(body.status, StatusCode::BAD_REQUEST, "{}", body.body);
    assert_eq!(body.code(), "nul_character");
    let nested = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&owner),
            json!({ "name": "Agent", "config": { "k\u{0}": 1 } }),
        )
        .await;
    assert_eq!(nested.code(), "nul_character", "{}", nested.body);
    let query = app
        .get(
            &format!("/api/v1/workspaces/{ws}/calls?status=a%00b"),
            &owner,
        )
        .await;
    assert_eq!(query.status, StatusCode::BAD_REQUEST);
    assert_eq!(query.code(), "nul_character");
    let path = app.get("/api/v1/workspaces/ws%00x", &owner).await;
    assert_eq!(path.code(), "nul_character");
    let req = Request::builder()
        .method("POST")
        .uri("/webhooks/calls/status")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("CallSid=CA%001&CallStatus=completed"))
        .unwrap();
    let form = app.send(req).await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    assert_eq!(form.code(), "nul_character");
    let shown = app.get(&format!("/api/v1/workspaces/{ws}"), &owner).await;
    assert_eq!(shown.body["workspace"]["name"], "Acme");
}

on_both_databases!(
    nul_characters_are_refused,
    admin_lists_page,
    a_huge_page_is_empty,
    unparsable_input_is_a_json_400,
);

/// The document declares each endpoint's success status with its body, and the request
/// body of those that take one, so a generated client (or the contract run) can use it.
#[tokio::test]
async fn the_document_declares_statuses_bodies_and_schemas() {
    let app = TestApp::new(vocalized_control::db::Dialect::Sqlite)
        .await
        .unwrap();
    let req = Request::builder()
        .uri("/api/openapi.json")
        .body(Body::empty())
        .unwrap();
    let doc = app.send(req).await.body;
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();

    let signup = op("/api/v1/auth/signup", "post");
    assert!(signup["responses"]["201"]["content"]["application/json"]["schema"].is_object());
    assert_eq!(
        signup["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["email", "password", "name"])
    );
    assert!(signup["responses"]["409"].is_object());
    assert!(signup["responses"]["429"].is_object());

    let delete = op("/api/v1/workspaces/{workspace_id}", "delete");
    assert!(delete["responses"]["204"].is_object());
    assert!(delete["responses"]["204"]["content"].is_null());
    assert!(delete["responses"]["200"].is_null());

    let metrics = op("/metrics", "get");
    assert!(metrics["responses"]["200"]["content"]["text/plain"].is_object());
    let inbound = op("/webhooks/calls/inbound", "post");
    assert!(inbound["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());

    let calls = op("/api/v1/workspaces/{workspace_id}/calls", "get");
    let names: Vec<&str> = calls["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"page") && names.contains(&"limit"),
        "{names:?}"
    );

    // Every $ref points at a schema the document has.
    let text = doc.to_string();
    for name in text.split("#/components/schemas/").skip(1) {
        let name = name.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "missing schema {name}"
        );
    }
}
