//! The OpenAPI document at `/api/openapi.json`, generated from one table of every
//! endpoint. A test walks the table against the live router, so an endpoint that exists
//! but is not listed here (or the reverse) fails the build's tests.

use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};

mod schemas;

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        access,
    }
}

use Access::{Admin, Public, User};

pub const ENDPOINTS: &[Endpoint] = &[
    ep("GET", "/healthz", Public, "Liveness"),
    ep("GET", "/readyz", Public, "Readiness (checks the database)"),
    ep("GET", "/metrics", Public, "Prometheus metrics"),
    ep("GET", "/api/openapi.json", Public, "This document"),
    ep(
        "POST",
        "/api/v1/auth/signup",
        Public,
        "Create an account; returns tokens",
    ),
    ep(
        "POST",
        "/api/v1/auth/login",
        Public,
        "Log in; returns tokens and workspaces",
    ),
    ep("POST", "/api/v1/auth/logout", User, "End this session"),
    ep(
        "GET",
        "/api/v1/auth/me",
        User,
        "The signed-in user and their workspaces",
    ),
    ep(
        "POST",
        "/api/v1/auth/refresh",
        Public,
        "Rotate a refresh token for a new pair",
    ),
    ep(
        "POST",
        "/api/v1/auth/verify-email",
        Public,
        "Confirm an email address with its token",
    ),
    ep(
        "POST",
        "/api/v1/auth/forgot-password",
        Public,
        "Email a password reset token",
    ),
    ep(
        "POST",
        "/api/v1/auth/reset-password",
        Public,
        "Set a new password with a reset token",
    ),
    ep(
        "GET",
        "/api/v1/workspaces",
        User,
        "Workspaces the user belongs to",
    ),
    ep(
        "POST",
        "/api/v1/workspaces",
        User,
        "Create a workspace (you become its owner)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}",
        User,
        "A workspace, its members and plan",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}",
        User,
        "Update a workspace (owner, admin)",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}",
        User,
        "Delete a workspace (owner)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/members",
        User,
        "Members and pending invitations",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/members",
        User,
        "Invite someone by email (owner, admin)",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/members/{user_id}",
        User,
        "Change a member's role (owner, admin)",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/members/{user_id}",
        User,
        "Remove a member, or leave",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/invitations/{invitation_id}",
        User,
        "Revoke an invitation (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/invitations/{token}",
        Public,
        "What an invitation offers",
    ),
    ep(
        "POST",
        "/api/v1/invitations/{token}/accept",
        User,
        "Accept an invitation",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/agents",
        User,
        "List agents",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/agents",
        User,
        "Create an agent (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}",
        User,
        "An agent with its stats",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}",
        User,
        "Update an agent (owner, admin)",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}",
        User,
        "Delete an agent (owner, admin)",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/activate",
        User,
        "Put an agent live (owner, admin)",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/pause",
        User,
        "Pause an agent (owner, admin)",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/widget-key",
        User,
        "Rotate the agent's public widget key (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/phone-numbers",
        User,
        "List phone numbers",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/phone-numbers",
        User,
        "Register a number you own (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}",
        User,
        "A phone number",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}",
        User,
        "Update a number (owner, admin)",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}",
        User,
        "Release a number (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/calls",
        User,
        "Calls, filtered and paged",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/calls/live",
        User,
        "Calls in progress on this node",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/calls/{call_id}",
        User,
        "One call with cost",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/calls/{call_id}/events",
        User,
        "A call's events in order",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/calls/{call_id}/transcription",
        User,
        "A call's transcript turns with timings",
    ),
    ep(
        "POST",
        "/webhooks/calls/inbound",
        Public,
        "Twilio voice webhook (signed): admits the call and answers TwiML",
    ),
    ep(
        "POST",
        "/webhooks/calls/status",
        Public,
        "Twilio status callback (signed)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/voice/providers",
        User,
        "The workspace's voice providers; is_configured, never the key",
    ),
    ep(
        "POST",
        "/api/v1/workspaces/{workspace_id}/voice/providers",
        User,
        "Configure a provider, optionally with your own key (owner, admin)",
    ),
    ep(
        "PATCH",
        "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}",
        User,
        "Change a provider; api_key absent keeps, null clears (owner, admin)",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}",
        User,
        "Create or change a provider (owner, admin)",
    ),
    ep(
        "DELETE",
        "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}",
        User,
        "Remove a provider and its key (owner, admin)",
    ),
    ep(
        "GET",
        "/api/v1/workspaces/{workspace_id}/voice/strategy",
        User,
        "How calls choose providers (auto when never set)",
    ),
    ep(
        "PUT",
        "/api/v1/workspaces/{workspace_id}/voice/strategy",
        User,
        "Set the routing strategy (owner, admin)",
    ),
    ep(
        "GET",
        "/widget/{public_key}/config",
        Public,
        "The call widget's public configuration (CORS: any origin)",
    ),
    ep("POST", "/api/v1/admin/auth/login", Public, "Admin log in"),
    ep("POST", "/api/v1/admin/auth/logout", Admin, "Admin log out"),
    ep("GET", "/api/v1/admin/auth/me", Admin, "The signed-in admin"),
    ep(
        "POST",
        "/api/v1/admin/auth/refresh",
        Public,
        "Rotate an admin refresh token",
    ),
    ep(
        "GET",
        "/api/v1/admin/workspaces",
        Admin,
        "All workspaces (support+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/workspaces/{workspace_id}",
        Admin,
        "A workspace in full (support+)",
    ),
    ep(
        "PUT",
        "/api/v1/admin/workspaces/{workspace_id}",
        Admin,
        "Change name, status, tier or the calling switch (admin+)",
    ),
    ep(
        "POST",
        "/api/v1/admin/workspaces/{workspace_id}/suspend",
        Admin,
        "Suspend a workspace (admin+)",
    ),
    ep(
        "POST",
        "/api/v1/admin/workspaces/{workspace_id}/activate",
        Admin,
        "Reactivate a workspace (admin+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/config/settings",
        Admin,
        "Platform settings (support+)",
    ),
    ep(
        "PUT",
        "/api/v1/admin/config/settings",
        Admin,
        "Change platform settings (super_admin)",
    ),
    ep(
        "GET",
        "/api/v1/admin/logs/activity",
        Admin,
        "The admin audit trail (admin+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/providers",
        Admin,
        "Platform voice providers; is_configured, never the key (support+)",
    ),
    ep(
        "POST",
        "/api/v1/admin/providers",
        Admin,
        "Configure a platform provider with its key (admin+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/providers/{provider}",
        Admin,
        "One platform provider (support+)",
    ),
    ep(
        "PATCH",
        "/api/v1/admin/providers/{provider}",
        Admin,
        "Change a platform provider; api_key absent keeps, null clears (admin+)",
    ),
    ep(
        "PUT",
        "/api/v1/admin/providers/{provider}",
        Admin,
        "Same as PATCH (the seed's verb) (admin+)",
    ),
    ep(
        "DELETE",
        "/api/v1/admin/providers/{provider}",
        Admin,
        "Remove a platform provider and its key (admin+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/providers/health",
        Admin,
        "Provider health per region (support+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/providers/costs",
        Admin,
        "Per-minute and model prices per provider (support+)",
    ),
    ep(
        "PUT",
        "/api/v1/admin/providers/routing",
        Admin,
        "Platform default priorities and enabled flags in one call (admin+)",
    ),
    ep(
        "GET",
        "/api/v1/admin/phone-numbers",
        Admin,
        "Registered phone numbers; ?verification_status=unverified is the queue (support+)",
    ),
    ep(
        "POST",
        "/api/v1/admin/phone-numbers/{number_id}/verify",
        Admin,
        "Verify that a number belongs to its workspace, so platform calls route (admin+)",
    ),
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let contract = schemas::contract(e.method, e.path);
        let mut params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(contract.query.iter().map(|(name, schema)| {
            json!({ "name": name, "in": "query", "required": false, "schema": schema })
        }));
        let mut op = json!({
            "summary": e.summary,
            "parameters": params,
            "responses": responses(&contract),
        });
        match &contract.request {
            Some(schemas::Body::Json(schema)) => {
                op["requestBody"] = json!({
                    "required": true,
                    "content": { "application/json": { "schema": schema } },
                });
            }
            Some(schemas::Body::Form(schema)) => {
                op["requestBody"] = json!({
                    "required": true,
                    "content": { "application/x-www-form-urlencoded": { "schema": schema } },
                });
            }
            None => {}
        }
        if e.access != Access::Public {
            op["security"] = json!([{ "bearer": [] }]);
            op["tags"] = json!([if e.access == Access::Admin {
                "admin"
            } else {
                "client"
            }]);
        }
        paths
            .entry(e.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path item is an object")
            .insert(e.method.to_lowercase(), op);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Vocalized API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": schemas::components(),
            "responses": { "Error": {
                "description": "An error: {\"error\":{\"code\",\"message\",\"details\"}}",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            }},
        },
    })
}

/// The success statuses with their bodies, then the errors: the shared set (400 for a
/// body, query or path that does not parse; 401/403 for credentials; 404; 422 for
/// invalid fields) and the endpoint's own (409, 429).
fn responses(contract: &schemas::Contract) -> Value {
    let mut responses = Map::new();
    for status in contract.ok {
        let mut success = json!({ "description": "Success" });
        if *status != 204 {
            let mut media = json!({});
            if let Some(schema) = &contract.response {
                media["schema"] = schema.clone();
            }
            success["content"] = json!({ contract.media_type: media });
        }
        responses.insert(status.to_string(), success);
    }
    let error = json!({ "$ref": "#/components/responses/Error" });
    for status in [400, 401, 403, 404, 422].iter().chain(contract.errors) {
        responses.insert(status.to_string(), error.clone());
    }
    Value::Object(responses)
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { axum::Json(document()) }),
    )
}
