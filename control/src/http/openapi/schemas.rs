//! What each endpoint takes and answers, beyond the table in `openapi.rs`: its success
//! status, request body, query parameters and success body, as JSON Schema. The
//! property-based contract run (`scripts/api-contract`) checks every response against
//! these, and generates requests from them.
//!
//! Request bodies say what the server accepts: an optional field may also be `null`
//! (serde reads both as absent), and unknown fields are ignored. A field the handler
//! requires is `required`, though a missing one is a 422 rather than a 400.

use serde_json::{Value, json};

/// An endpoint's contract; `Contract::default()` is a JSON 200 with any body.
pub struct Contract {
    /// The success statuses (more than one where, e.g., PUT creates or updates).
    pub ok: &'static [u16],
    /// The success body's schema; `None` for 204s and non-JSON bodies.
    pub response: Option<Value>,
    /// The success body's media type, when it is not JSON.
    pub media_type: &'static str,
    pub request: Option<Body>,
    pub query: Vec<(&'static str, Value)>,
    /// Error statuses beyond the ones every endpoint may answer.
    pub errors: &'static [u16],
}

pub enum Body {
    Json(Value),
    Form(Value),
}

impl Default for Contract {
    fn default() -> Self {
        Contract {
            ok: &[200],
            response: Some(json!({ "type": "object" })),
            media_type: "application/json",
            request: None,
            query: Vec::new(),
            errors: &[],
        }
    }
}

fn ok(response: Value) -> Contract {
    Contract {
        response: Some(response),
        ..Contract::default()
    }
}

fn created(response: Value) -> Contract {
    Contract {
        ok: &[201],
        response: Some(response),
        ..Contract::default()
    }
}

fn no_content() -> Contract {
    Contract {
        ok: &[204],
        response: None,
        ..Contract::default()
    }
}

impl Contract {
    fn body(mut self, schema: Value) -> Self {
        self.request = Some(Body::Json(schema));
        self
    }

    fn query(mut self, params: &[(&'static str, Value)]) -> Self {
        self.query = params.to_vec();
        self
    }

    fn errors(mut self, statuses: &'static [u16]) -> Self {
        self.errors = statuses;
        self
    }
}

// Schema shorthands.

fn string() -> Value {
    json!({ "type": "string" })
}
fn integer() -> Value {
    json!({ "type": "integer" })
}
fn boolean() -> Value {
    json!({ "type": "boolean" })
}
fn any() -> Value {
    json!({})
}
fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}
fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}
fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}
fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An object with these properties, all of them present (responses: every field the
/// handler writes is always there, `null` or not).
fn object(properties: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = properties.iter().map(|(k, _)| *k).collect();
    json!({
        "type": "object",
        "required": required,
        "properties": properties.iter().cloned().map(|(k, v)| (k.to_owned(), v)).collect::<serde_json::Map<_, _>>(),
    })
}

/// A request body: `required` fields must be present and not null; the rest may be
/// absent or null.
fn request(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut properties = serde_json::Map::new();
    for (k, v) in required {
        properties.insert((*k).to_owned(), v.clone());
    }
    for (k, v) in optional {
        properties.insert((*k).to_owned(), nullable(v.clone()));
    }
    let names: Vec<&str> = required.iter().map(|(k, _)| *k).collect();
    json!({ "type": "object", "required": names, "properties": properties })
}

const ROLES: &[&str] = &["admin", "member", "viewer"];

/// The shared schemas under `#/components/schemas`.
pub fn components() -> Value {
    let s = string;
    let i = integer;
    let b = boolean;
    let ns = || nullable(string());
    let ni = || nullable(integer());
    json!({
        "User": object(&[("id", s()), ("email", s()), ("name", s())]),
        "WorkspaceSummary": object(&[
            ("id", s()), ("name", s()), ("industry", ns()), ("role", s()), ("status", s()),
            ("subscription_tier", s()),
        ]),
        "Workspace": object(&[
            ("id", s()), ("name", s()), ("industry", ns()), ("owner_id", s()), ("status", s()),
            ("subscription_tier", s()), ("trial_ends_at", ni()), ("timezone", s()),
            ("call_enabled", b()), ("created_at", i()), ("updated_at", i()),
        ]),
        "Member": object(&[
            ("user_id", s()), ("email", s()), ("name", s()), ("role", s()), ("joined_at", i()),
        ]),
        "Subscription": object(&[
            ("tier", s()), ("display_name", s()), ("monthly_fee_micros", i()),
            ("price_per_minute_micros", i()),
            ("limits", object(&[
                ("included_minutes", ni()), ("max_agents", ni()), ("max_phone_numbers", ni()),
            ])),
            ("usage", object(&[("agents", i()), ("phone_numbers", i())])),
        ]),
        "Agent": object(&[
            ("id", s()), ("workspace_id", s()), ("name", s()), ("status", s()),
            ("phone_number_id", ns()), ("phone_number", ns()), ("template_id", ns()),
            ("template_name", ns()), ("config", json!({ "type": "object" })),
            ("voice_provider", s()), ("voice_config", any()), ("enabled_call", b()),
            ("enabled_chat", b()), ("widget_public_key", s()), ("created_at", i()),
            ("updated_at", i()), ("activated_at", ni()),
        ]),
        "PhoneNumber": object(&[
            ("id", s()), ("phone_number", s()), ("friendly_name", ns()), ("provider", s()),
            ("provider_sid", ns()), ("status", s()), ("agent_id", ns()), ("agent_name", ns()),
            ("created_at", i()), ("updated_at", i()),
        ]),
        "Call": object(&[
            ("id", s()), ("agent_id", ns()), ("agent_name", ns()), ("source", s()),
            ("direction", s()), ("status", s()), ("caller_number", ns()), ("to_number", ns()),
            ("duration_seconds", ni()), ("cost_total_micros", i()), ("cost_total", s()),
            ("error_code", ns()), ("started_at", i()), ("ended_at", ni()),
        ]),
        "WorkspaceProvider": object(&[
            ("provider", s()), ("uses_platform_key", b()), ("is_configured", b()),
            ("config", any()), ("priority", i()), ("is_enabled", b()), ("created_at", i()),
            ("updated_at", i()),
        ]),
        "Strategy": object(&[
            ("strategy", s()), ("preferred_provider", ns()), ("config", any()),
            ("fallback_enabled", b()), ("updated_at", ni()),
        ]),
        "PlatformProvider": object(&[
            ("provider", s()), ("region", s()), ("priority", i()), ("is_enabled", b()),
            ("base_url", ns()), ("cost_per_minute_micros", i()), ("config", any()),
            ("is_configured", b()), ("health_status", ns()), ("last_check_at", ni()),
            ("created_at", i()), ("updated_at", i()),
        ]),
        "Admin": object(&[("id", s()), ("email", s()), ("name", s()), ("role", s())]),
        "AdminWorkspace": object(&[
            ("id", s()), ("name", s()), ("industry", ns()), ("owner_email", s()),
            ("status", s()), ("subscription_tier", s()), ("call_enabled", b()),
            ("created_at", i()),
        ]),
        "Setting": object(&[
            ("key", s()), ("value", any()), ("description", ns()), ("updated_at", i()),
        ]),
        "Error": object(&[("error", json!({
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": { "code": s(), "message": s(), "details": any() },
        }))]),
    })
}

/// The contract of `method path`; endpoints not named here get `Contract::default()`.
pub fn contract(method: &str, path: &str) -> Contract {
    let c = component;
    let s = string;
    let i = integer;
    let b = boolean;
    let ns = || nullable(string());
    let ni = || nullable(integer());
    let tokens = || object(&[("token", s()), ("refresh_token", s())]);
    let email_password = || request(&[("email", s()), ("password", s())], &[]);
    let page = || [("page", i()), ("limit", i())];
    let provider_settings = || {
        vec![
            ("priority", i()),
            ("is_enabled", b()),
            ("config", any()),
            ("api_key", s()),
        ]
    };
    let ws = "/api/v1/workspaces/{workspace_id}";
    match (method, path) {
        ("GET", "/healthz") => ok(object(&[("status", s())])),
        ("GET", "/readyz") => Contract {
            ok: &[200, 503],
            ..ok(object(&[("status", s()), ("database", s())]))
        },
        ("GET", "/metrics") => Contract {
            response: None,
            media_type: "text/plain",
            ..Contract::default()
        },
        ("GET", "/api/openapi.json") => {
            ok(json!({ "type": "object", "required": ["openapi", "paths"] }))
        }

        ("POST", "/api/v1/auth/signup") => created(object(&[
            ("token", s()),
            ("refresh_token", s()),
            ("user", c("User")),
        ]))
        .body(request(
            &[("email", s()), ("password", s()), ("name", s())],
            &[],
        ))
        .errors(&[409, 429]),
        ("POST", "/api/v1/auth/login") => ok(object(&[
            ("token", s()),
            ("refresh_token", s()),
            ("user", c("User")),
            ("workspaces", array(c("WorkspaceSummary"))),
        ]))
        .body(email_password())
        .errors(&[429]),
        ("POST", "/api/v1/auth/logout") => no_content(),
        ("GET", "/api/v1/auth/me") => ok(object(&[
            (
                "user",
                object(&[
                    ("id", s()),
                    ("email", s()),
                    ("name", s()),
                    ("email_verified", b()),
                ]),
            ),
            ("workspaces", array(c("WorkspaceSummary"))),
        ])),
        ("POST", "/api/v1/auth/refresh") | ("POST", "/api/v1/admin/auth/refresh") => {
            ok(tokens()).body(request(&[("refresh_token", s())], &[]))
        }
        ("POST", "/api/v1/auth/verify-email") => {
            ok(object(&[("email_verified", b())])).body(request(&[("token", s())], &[]))
        }
        ("POST", "/api/v1/auth/forgot-password") => Contract {
            ok: &[202],
            ..ok(object(&[("message", s())]))
        }
        .body(request(&[("email", s())], &[]))
        .errors(&[429]),
        ("POST", "/api/v1/auth/reset-password") => ok(object(&[("password_reset", b())]))
            .body(request(&[("token", s()), ("new_password", s())], &[])),

        ("GET", "/api/v1/workspaces") => {
            ok(object(&[("workspaces", array(c("WorkspaceSummary")))]))
        }
        // 409: a user owns at most so many workspaces.
        ("POST", "/api/v1/workspaces") => created(object(&[("workspace", c("Workspace"))]))
            .body(request(
                &[("name", s())],
                &[("industry", s()), ("timezone", s())],
            ))
            .errors(&[409]),
        ("GET", p) if p == ws => ok(object(&[
            ("workspace", c("Workspace")),
            ("role", s()),
            ("members", array(c("Member"))),
            ("subscription", c("Subscription")),
        ])),
        ("PUT", p) if p == ws => ok(object(&[("workspace", c("Workspace"))])).body(request(
            &[],
            &[("name", s()), ("industry", s()), ("timezone", s())],
        )),
        ("DELETE", p) if p == ws => no_content(),

        ("GET", "/api/v1/workspaces/{workspace_id}/members") => ok(object(&[
            ("members", array(c("Member"))),
            (
                "invitations",
                array(object(&[
                    ("id", s()),
                    ("email", s()),
                    ("role", s()),
                    ("expires_at", i()),
                    ("created_at", i()),
                ])),
            ),
        ])),
        ("POST", "/api/v1/workspaces/{workspace_id}/members") => created(object(&[(
            "invitation",
            object(&[
                ("id", s()),
                ("email", s()),
                ("role", s()),
                ("expires_at", i()),
            ]),
        )]))
        .body(request(&[("email", s()), ("role", one_of(ROLES))], &[]))
        .errors(&[409]),
        ("PUT", "/api/v1/workspaces/{workspace_id}/members/{user_id}") => ok(object(&[(
            "member",
            object(&[("user_id", s()), ("role", s())]),
        )]))
        .body(request(&[("role", one_of(ROLES))], &[])),
        ("DELETE", "/api/v1/workspaces/{workspace_id}/members/{user_id}") => no_content(),
        ("DELETE", "/api/v1/workspaces/{workspace_id}/invitations/{invitation_id}") => no_content(),
        ("GET", "/api/v1/invitations/{token}") => ok(object(&[(
            "invitation",
            object(&[
                ("workspace_id", s()),
                ("workspace_name", s()),
                ("email", s()),
                ("role", s()),
                ("expires_at", i()),
            ]),
        )])),
        ("POST", "/api/v1/invitations/{token}/accept") => ok(object(&[
            ("workspace", object(&[("id", s()), ("name", s())])),
            ("role", s()),
        ]))
        .errors(&[409]),

        ("GET", "/api/v1/workspaces/{workspace_id}/agents") => {
            ok(object(&[("agents", array(c("Agent")))]))
        }
        ("POST", "/api/v1/workspaces/{workspace_id}/agents") => {
            created(object(&[("agent", c("Agent"))]))
                .body(request(
                    &[("name", s())],
                    &[
                        ("template_id", s()),
                        ("phone_number_id", s()),
                        ("config", any()),
                        ("voice_provider", s()),
                        ("voice_config", any()),
                        ("enabled_call", b()),
                        ("enabled_chat", b()),
                    ],
                ))
                .errors(&[409])
        }
        ("GET", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}") => ok(json!({
            "type": "object", "required": ["agent"], "properties": { "agent": c("Agent") },
        })),
        ("PUT", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}") => {
            ok(object(&[("agent", c("Agent"))]))
                .body(request(
                    &[],
                    &[
                        ("name", s()),
                        ("config", any()),
                        ("voice_provider", s()),
                        ("voice_config", any()),
                        ("phone_number_id", s()),
                        ("enabled_call", b()),
                        ("enabled_chat", b()),
                    ],
                ))
                .errors(&[409])
        }
        ("DELETE", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}") => no_content(),
        ("POST", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/activate")
        | ("POST", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/pause") => {
            ok(object(&[("agent", c("Agent"))]))
        }
        ("POST", "/api/v1/workspaces/{workspace_id}/agents/{agent_id}/widget-key") => {
            ok(object(&[("widget_public_key", s())]))
        }

        ("GET", "/api/v1/workspaces/{workspace_id}/phone-numbers") => {
            ok(object(&[("phone_numbers", array(c("PhoneNumber")))]))
        }
        ("POST", "/api/v1/workspaces/{workspace_id}/phone-numbers") => {
            created(object(&[("phone_number", c("PhoneNumber"))]))
                .body(request(
                    &[("phone_number", s())],
                    &[
                        ("friendly_name", s()),
                        ("provider", one_of(&["twilio", "telnyx"])),
                        ("provider_sid", s()),
                    ],
                ))
                .errors(&[409])
        }
        ("GET", "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}") => {
            ok(object(&[("phone_number", c("PhoneNumber"))]))
        }
        ("PUT", "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}") => {
            ok(object(&[("phone_number", c("PhoneNumber"))]))
                .body(request(&[], &[("friendly_name", s()), ("status", s())]))
        }
        ("DELETE", "/api/v1/workspaces/{workspace_id}/phone-numbers/{number_id}") => no_content(),

        ("GET", "/api/v1/workspaces/{workspace_id}/calls") => ok(object(&[
            ("calls", array(c("Call"))),
            ("total", i()),
            ("page", i()),
            ("limit", i()),
        ]))
        .query(&[
            ("agent_id", s()),
            ("status", s()),
            ("direction", s()),
            ("from", i()),
            ("to", i()),
            page()[0].clone(),
            page()[1].clone(),
        ]),
        ("GET", "/api/v1/workspaces/{workspace_id}/calls/live") => ok(object(&[(
            "active_calls",
            array(object(&[
                ("id", s()),
                ("agent_name", ns()),
                ("caller_number", ns()),
                ("source", s()),
                ("duration_so_far", i()),
                ("started_at", i()),
            ])),
        )])),
        ("GET", "/api/v1/workspaces/{workspace_id}/calls/{call_id}") => ok(object(&[
            ("call", json!({ "type": "object" })),
            ("agent", nullable(object(&[("id", s()), ("name", s())]))),
            ("recording_url", ns()),
            ("transcription", ns()),
            ("summary", ns()),
        ])),
        ("GET", "/api/v1/workspaces/{workspace_id}/calls/{call_id}/events") => ok(object(&[(
            "events",
            array(object(&[
                ("seq", i()),
                ("event_type", s()),
                ("event_data", any()),
                ("at_ms", ni()),
                ("timestamp", i()),
            ])),
        )])),
        ("GET", "/api/v1/workspaces/{workspace_id}/calls/{call_id}/transcription") => {
            ok(object(&[
                ("transcription", s()),
                (
                    "turns",
                    array(object(&[
                        ("seq", i()),
                        ("role", s()),
                        ("content", s()),
                        ("start_ms", i()),
                        ("end_ms", i()),
                        ("duration_ms", i()),
                        ("confidence", nullable(json!({ "type": "number" }))),
                        ("truncated", b()),
                    ])),
                ),
            ]))
        }

        // Twilio's webhooks: form posts, answered in TwiML (inbound) or with nothing.
        ("POST", "/webhooks/calls/inbound") => Contract {
            response: Some(string()),
            media_type: "text/xml",
            request: Some(Body::Form(twilio_form())),
            ..Contract::default()
        },
        ("POST", "/webhooks/calls/status") => Contract {
            request: Some(Body::Form(twilio_form())),
            ..no_content()
        },

        ("GET", "/api/v1/workspaces/{workspace_id}/voice/providers") => {
            ok(object(&[("providers", array(c("WorkspaceProvider")))]))
        }
        ("POST", "/api/v1/workspaces/{workspace_id}/voice/providers") => {
            created(object(&[("provider", c("WorkspaceProvider"))]))
                .body(request(
                    &[("provider", s())],
                    &[&provider_settings()[..], &[("uses_platform_key", b())]].concat(),
                ))
                .errors(&[409])
        }
        ("PATCH", "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}") => {
            ok(object(&[("provider", c("WorkspaceProvider"))])).body(request(
                &[],
                &[&provider_settings()[..], &[("uses_platform_key", b())]].concat(),
            ))
        }
        ("PUT", "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}") => Contract {
            ok: &[200, 201],
            ..ok(object(&[("provider", c("WorkspaceProvider"))]))
        }
        .body(request(
            &[],
            &[&provider_settings()[..], &[("uses_platform_key", b())]].concat(),
        )),
        ("DELETE", "/api/v1/workspaces/{workspace_id}/voice/providers/{provider}") => no_content(),
        ("GET", "/api/v1/workspaces/{workspace_id}/voice/strategy") => ok(c("Strategy")),
        ("PUT", "/api/v1/workspaces/{workspace_id}/voice/strategy") => {
            ok(c("Strategy")).body(request(
                &[(
                    "strategy",
                    one_of(&[
                        "auto",
                        "cost_optimized",
                        "quality_first",
                        "specific",
                        "custom",
                    ]),
                )],
                &[
                    ("preferred_provider", s()),
                    ("config", any()),
                    ("fallback_enabled", b()),
                ],
            ))
        }

        ("GET", "/widget/{public_key}/config") => ok(object(&[
            ("agentName", s()),
            ("callEnabled", b()),
            ("buttonText", any()),
            ("buttonColor", any()),
            ("buttonPosition", any()),
            ("greeting", any()),
            ("echoCancellation", any()),
            ("noiseSuppression", any()),
            ("maxCallDuration", any()),
            ("iceServers", any()),
            ("offerUrl", s()),
            ("testProvider", b()),
        ])),

        ("POST", "/api/v1/admin/auth/login") => ok(object(&[
            ("token", s()),
            ("refresh_token", s()),
            ("admin", c("Admin")),
        ]))
        .body(email_password())
        .errors(&[429]),
        ("POST", "/api/v1/admin/auth/logout") => no_content(),
        ("GET", "/api/v1/admin/auth/me") => ok(object(&[("admin", c("Admin"))])),
        ("GET", "/api/v1/admin/workspaces") => ok(object(&[
            ("workspaces", array(c("AdminWorkspace"))),
            ("total", i()),
            ("page", i()),
            ("limit", i()),
        ]))
        .query(&[
            ("status", s()),
            ("search", s()),
            page()[0].clone(),
            page()[1].clone(),
        ]),
        ("GET", "/api/v1/admin/workspaces/{workspace_id}") => ok(object(&[
            ("workspace", c("Workspace")),
            ("owner", c("User")),
            ("members", array(c("Member"))),
            (
                "agents",
                array(object(&[("id", s()), ("name", s()), ("status", s())])),
            ),
            ("subscription", c("Subscription")),
        ])),
        ("PUT", "/api/v1/admin/workspaces/{workspace_id}") => {
            ok(object(&[("workspace", c("Workspace"))])).body(request(
                &[],
                &[
                    ("name", s()),
                    ("status", s()),
                    ("subscription_tier", s()),
                    ("call_enabled", b()),
                ],
            ))
        }
        ("POST", "/api/v1/admin/workspaces/{workspace_id}/suspend") => {
            ok(object(&[("workspace", c("Workspace"))])).body(request(&[], &[("reason", s())]))
        }
        ("POST", "/api/v1/admin/workspaces/{workspace_id}/activate") => {
            ok(object(&[("workspace", c("Workspace"))]))
        }
        ("GET", "/api/v1/admin/config/settings") => {
            ok(object(&[("settings", array(c("Setting")))]))
        }
        ("PUT", "/api/v1/admin/config/settings") => {
            ok(object(&[("settings", array(c("Setting")))])).body(request(
                &[(
                    "settings",
                    array(json!({
                        "type": "object",
                        "required": ["key", "value"],
                        "properties": { "key": s(), "value": any() },
                    })),
                )],
                &[],
            ))
        }
        ("GET", "/api/v1/admin/logs/activity") => ok(object(&[
            (
                "logs",
                array(object(&[
                    ("id", s()),
                    ("admin_email", s()),
                    ("action", s()),
                    ("resource_type", ns()),
                    ("resource_id", ns()),
                    ("details", any()),
                    ("timestamp", i()),
                ])),
            ),
            ("total", i()),
            ("page", i()),
        ]))
        .query(&[
            ("admin_id", s()),
            ("action", s()),
            ("from", i()),
            ("to", i()),
            page()[0].clone(),
            page()[1].clone(),
        ]),
        ("GET", "/api/v1/admin/providers") | ("PUT", "/api/v1/admin/providers/routing") => {
            let c = ok(object(&[(
                "providers",
                array(component("PlatformProvider")),
            )]));
            if method == "PUT" {
                c.body(request(
                    &[],
                    &[
                        (
                            "providers",
                            array(json!({
                                "type": "object",
                                "required": ["provider"],
                                "properties": {
                                    "provider": s(),
                                    "priority": nullable(i()),
                                    "is_enabled": nullable(b()),
                                },
                            })),
                        ),
                        ("fallback_chain", array(s())),
                    ],
                ))
            } else {
                c
            }
        }
        ("POST", "/api/v1/admin/providers") => {
            created(object(&[("provider", c("PlatformProvider"))]))
                .body(request(
                    &[("provider", s())],
                    &[
                        &provider_settings()[..],
                        &[
                            ("region", s()),
                            ("base_url", s()),
                            ("cost_per_minute_micros", i()),
                        ],
                    ]
                    .concat(),
                ))
                .errors(&[409])
        }
        ("GET", "/api/v1/admin/providers/{provider}") => {
            ok(object(&[("provider", c("PlatformProvider"))]))
        }
        ("PATCH", "/api/v1/admin/providers/{provider}")
        | ("PUT", "/api/v1/admin/providers/{provider}") => {
            ok(object(&[("provider", c("PlatformProvider"))])).body(request(
                &[],
                &[
                    &provider_settings()[..],
                    &[
                        ("region", s()),
                        ("base_url", s()),
                        ("cost_per_minute_micros", i()),
                    ],
                ]
                .concat(),
            ))
        }
        ("DELETE", "/api/v1/admin/providers/{provider}") => no_content(),
        ("GET", "/api/v1/admin/providers/health") => ok(object(&[(
            "providers",
            array(object(&[
                ("provider", s()),
                ("region", s()),
                ("status", s()),
                ("last_check_at", ni()),
                ("error_rate", json!({ "type": "number" })),
                ("avg_latency_ms", ni()),
                ("connect_ms", ni()),
                ("ttfa_ms", ni()),
                ("consecutive_failures", i()),
                ("details", any()),
            ])),
        )])),
        ("GET", "/api/v1/admin/providers/costs") => ok(object(&[(
            "providers",
            array(object(&[
                ("provider", s()),
                ("is_platform_configured", b()),
                ("is_enabled", nullable(b())),
                ("cost_per_minute_micros", ni()),
                ("models", array(json!({ "type": "object" }))),
            ])),
        )])),
        _ => Contract::default(),
    }
}

/// The fields of a Twilio voice or status callback that the handlers read.
fn twilio_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "AccountSid": string(), "CallSid": string(), "From": string(), "To": string(),
            "CallStatus": string(), "CallDuration": string(),
        },
    })
}
