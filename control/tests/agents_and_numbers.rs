//! Agents and phone numbers: the path a new user walks (workspace → agent → number →
//! live), call-settings validation with every bad field listed, and the conflicts that
//! keep routing unambiguous (one number per agent, numbers unique, plan limits).

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::TestApp;

async fn the_readme_walkthrough(app: TestApp) {
    let (token, _, _) = app.signup("owner@salon.example").await;
    let ws = app.workspace(&token, "Nail Salon").await;
    let agent = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({
                "name": "Front desk",
                "voice_provider": "openai",
                "config": {
                    "instructions": "You answer the phone for a nail salon.",
                    "call": { "callGreeting": "Thanks for calling!", "silenceTimeout": 45, "maxCallDuration": 900 },
                    "tools": [{ "name": "book", "description": "Book a slot",
                                "parameters": { "type": "object", "properties": {} } }]
                }
            }),
        )
        .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{}", agent.body);
    let a = &agent.body["agent"];
    assert_eq!(a["status"], "draft");
    // Defaults fill in what the client left out; what it gave is kept.
    assert_eq!(a["config"]["call"]["silenceTimeout"], 45);
    assert_eq!(a["config"]["call"]["vadThreshold"], 0.5);
    assert_eq!(a["config"]["call"]["callButtonText"], "Call Us");
    assert_eq!(a["config"]["tools"][0]["name"], "book");
    assert!(a["widget_public_key"].as_str().unwrap().starts_with("pk_"));
    let agent_id = a["id"].as_str().unwrap().to_owned();

    let number = app
        .post(
            &format!("/api/v1/workspaces/{ws}/phone-numbers"),
            Some(&token),
            json!({ "phone_number": "+14155550100", "friendly_name": "Main line" }),
        )
        .await;
    assert_eq!(number.status, StatusCode::CREATED, "{}", number.body);
    let number_id = number.body["phone_number"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let attached = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}"),
            Some(&token),
            Some(json!({ "phone_number_id": number_id })),
        )
        .await;
    assert_eq!(attached.status, StatusCode::OK, "{}", attached.body);
    assert_eq!(attached.body["agent"]["phone_number"], "+14155550100");
    // Fields not sent are untouched.
    assert_eq!(
        attached.body["agent"]["config"]["call"]["silenceTimeout"],
        45
    );

    let live = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}/activate"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.body["agent"]["status"], "live");
    assert!(live.body["agent"]["activated_at"].as_i64().is_some());

    let listed = app
        .get(&format!("/api/v1/workspaces/{ws}/phone-numbers"), &token)
        .await;
    assert_eq!(listed.body["phone_numbers"][0]["agent_name"], "Front desk");
    let shown = app
        .get(
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}"),
            &token,
        )
        .await;
    assert_eq!(shown.body["stats"]["total_calls"], 0);

    let paused = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}/pause"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(paused.body["agent"]["status"], "paused");

    // Detaching with an explicit null.
    let detached = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}/agents/{agent_id}"),
            Some(&token),
            Some(json!({ "phone_number_id": null })),
        )
        .await;
    assert_eq!(
        detached.body["agent"]["phone_number_id"],
        serde_json::Value::Null
    );

    let detail = app.get(&format!("/api/v1/workspaces/{ws}"), &token).await;
    assert_eq!(detail.body["subscription"]["tier"], "starter");
    assert_eq!(detail.body["subscription"]["usage"]["agents"], 1);
    assert_eq!(detail.body["workspace"]["call_enabled"], true);
}

async fn invalid_call_settings_list_every_field_and_write_nothing(app: TestApp) {
    let (token, _, _) = app.signup("owner@clinic.example").await;
    let ws = app.workspace(&token, "Clinic").await;
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({
                "name": "",
                "voice_provider": "retell",
                "config": { "call": {
                    "silenceTimeout": 5, "maxCallDuration": 10000, "callButtonColor": "red",
                    "vadThreshold": 2.0, "voiceSettings": { "speed": 3.0 }
                }, "tools": [{ "name": "bad name!", "description": "", "parameters": [] }] }
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        r.bad_fields(),
        [
            "name",
            "voice_provider",
            "config.call.silenceTimeout",
            "config.call.maxCallDuration",
            "config.call.callButtonColor",
            "config.call.vadThreshold",
            "config.call.voiceSettings.speed",
            "config.tools[0].name",
            "config.tools[0].parameters",
        ]
    );
    let wrong_type = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({ "name": "x", "config": { "call": { "silenceTimeout": "soon" } } }),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.bad_fields(), ["config.call"]);
    let not_object = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({ "name": "x", "config": [1] }),
        )
        .await;
    assert_eq!(not_object.bad_fields(), ["config"]);
    let neither = app
        .post(
            &format!("/api/v1/workspaces/{ws}/agents"),
            Some(&token),
            json!({ "name": "x", "enabled_call": false, "enabled_chat": false }),
        )
        .await;
    assert_eq!(neither.bad_fields(), ["enabled_call"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM voice_agents").await, 0);
}

async fn numbers_are_e164_unique_and_route_to_one_agent(app: TestApp) {
    let (token, _, _) = app.signup("owner@garage.example").await;
    let ws = app.workspace(&token, "Garage").await;
    // Lift the plan limits so conflicts, not limits, are what is tested.
    sqlx::query("UPDATE workspaces SET subscription_tier = 'enterprise' WHERE id = $1")
        .bind(&ws)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let numbers = format!("/api/v1/workspaces/{ws}/phone-numbers");
    for bad in [
        "4155550100",
        "+0155550100",
        "+1 415 555 0100",
        "+1415555010012345",
    ] {
        let r = app
            .post(&numbers, Some(&token), json!({ "phone_number": bad }))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.bad_fields(), ["phone_number"]);
    }
    let n = app
        .post(
            &numbers,
            Some(&token),
            json!({ "phone_number": "+14155550111" }),
        )
        .await;
    assert_eq!(n.status, StatusCode::CREATED);
    let number_id = n.body["phone_number"]["id"].as_str().unwrap().to_owned();
    let dup = app
        .post(
            &numbers,
            Some(&token),
            json!({ "phone_number": "+14155550111" }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "phone_number_taken");
    // Another tenant cannot claim it either.
    let (other, _, _) = app.signup("other@garage.example").await;
    let other_ws = app.workspace(&other, "Rival").await;
    let stolen = app
        .post(
            &format!("/api/v1/workspaces/{other_ws}/phone-numbers"),
            Some(&other),
            json!({ "phone_number": "+14155550111" }),
        )
        .await;
    assert_eq!(stolen.status, StatusCode::CONFLICT);

    let agents = format!("/api/v1/workspaces/{ws}/agents");
    let first = app
        .post(
            &agents,
            Some(&token),
            json!({ "name": "A", "phone_number_id": number_id }),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app
        .post(
            &agents,
            Some(&token),
            json!({ "name": "B", "phone_number_id": number_id }),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.code(), "phone_number_in_use");
    assert_eq!(app.count("SELECT COUNT(*) FROM voice_agents").await, 1);

    // Releasing the number detaches it from the agent.
    let agent_id = first.body["agent"]["id"].as_str().unwrap().to_owned();
    let gone = app
        .call(
            "DELETE",
            &format!("{numbers}/{number_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let agent = app.get(&format!("{agents}/{agent_id}"), &token).await;
    assert_eq!(
        agent.body["agent"]["phone_number_id"],
        serde_json::Value::Null
    );
}

async fn plan_limits_are_enforced(app: TestApp) {
    let (token, _, _) = app.signup("owner@tiny.example").await;
    let ws = app.workspace(&token, "Tiny").await;
    let agents = format!("/api/v1/workspaces/{ws}/agents");
    assert_eq!(
        app.post(&agents, Some(&token), json!({ "name": "One" }))
            .await
            .status,
        StatusCode::CREATED
    );
    let two = app
        .post(&agents, Some(&token), json!({ "name": "Two" }))
        .await;
    assert_eq!(two.status, StatusCode::CONFLICT);
    assert_eq!(two.code(), "plan_limit_reached");
    let numbers = format!("/api/v1/workspaces/{ws}/phone-numbers");
    assert_eq!(
        app.post(
            &numbers,
            Some(&token),
            json!({ "phone_number": "+14155550200" })
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let more = app
        .post(
            &numbers,
            Some(&token),
            json!({ "phone_number": "+14155550201" }),
        )
        .await;
    assert_eq!(more.code(), "plan_limit_reached");
}

async fn invitations_add_members_with_the_invited_role(app: TestApp) {
    let (owner, _, _) = app.signup("boss@shop.example").await;
    let ws = app.workspace(&owner, "Shop").await;
    let r = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&owner),
            json!({ "email": "Staff@Shop.example", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bad = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&owner),
            json!({ "email": "x@shop.example", "role": "owner" }),
        )
        .await;
    assert_eq!(bad.bad_fields(), ["role"]);
    let (_, body) = app.last_email("staff@shop.example").await;
    let token = support::token_after(&body, "/api/v1/invitations/");
    let token = token.trim_end_matches("/accept").to_owned();

    let peek = app
        .call("GET", &format!("/api/v1/invitations/{token}"), None, None)
        .await;
    assert_eq!(peek.status, StatusCode::OK);
    assert_eq!(peek.body["invitation"]["workspace_name"], "Shop");

    // Someone else cannot use it.
    let (intruder, _, _) = app.signup("intruder@evil.example").await;
    let stolen = app
        .post(
            &format!("/api/v1/invitations/{token}/accept"),
            Some(&intruder),
            json!({}),
        )
        .await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);

    let (staff, _, staff_id) = app.signup("staff@shop.example").await;
    let ok = app
        .post(
            &format!("/api/v1/invitations/{token}/accept"),
            Some(&staff),
            json!({}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["role"], "viewer");
    let again = app
        .post(
            &format!("/api/v1/invitations/{token}/accept"),
            Some(&staff),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let members = app
        .get(&format!("/api/v1/workspaces/{ws}/members"), &staff)
        .await;
    assert_eq!(members.body["members"].as_array().unwrap().len(), 2);
    // Viewers do not see pending invitations.
    assert!(members.body["invitations"].as_array().unwrap().is_empty());
    let dup = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            Some(&owner),
            json!({ "email": "staff@shop.example", "role": "member" }),
        )
        .await;
    assert_eq!(dup.code(), "already_member");

    // The owner's role cannot be changed, and the owner cannot be removed.
    let owner_id = members.body["members"][0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call(
            "PUT",
            &format!("/api/v1/workspaces/{ws}/members/{owner_id}"),
            Some(&owner),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A member may leave on their own.
    let left = app
        .call(
            "DELETE",
            &format!("/api/v1/workspaces/{ws}/members/{staff_id}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/workspaces/{ws}"), &staff)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Sends `n` POSTs of `body(i)` to `path` at once; their statuses, sorted.
async fn post_in_parallel(
    app: &TestApp,
    token: &str,
    path: &str,
    n: usize,
    body: impl Fn(usize) -> serde_json::Value,
) -> Vec<StatusCode> {
    use tower::ServiceExt;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body(i).to_string()))
            .unwrap();
        set.spawn(app.router.clone().oneshot(req));
    }
    let mut statuses: Vec<StatusCode> = set
        .join_all()
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    statuses.sort();
    statuses
}

/// The plan's count check and the insert are one step: parallel creates cannot pass a
/// limit of one together (L12).
async fn parallel_creates_respect_plan_limits(app: TestApp) {
    let (token, _, _) = app.signup("racer@shop.example").await;
    let ws = app.workspace(&token, "Race").await;
    sqlx::query(
        "UPDATE subscription_tiers SET max_agents = 1, max_phone_numbers = 1
         WHERE tier_name = (SELECT subscription_tier FROM workspaces WHERE id = $1)",
    )
    .bind(&ws)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let mut expected = vec![StatusCode::CREATED];
    expected.extend([StatusCode::CONFLICT; 9]);
    let agents = post_in_parallel(
        &app,
        &token,
        &format!("/api/v1/workspaces/{ws}/agents"),
        10,
        |i| json!({ "name": format!("Agent {i}") }),
    )
    .await;
    assert_eq!(agents, expected);
    let numbers = post_in_parallel(
        &app,
        &token,
        &format!("/api/v1/workspaces/{ws}/phone-numbers"),
        10,
        |i| json!({ "phone_number": format!("+1415555{:04}", 3000 + i) }),
    )
    .await;
    assert_eq!(numbers, expected);
    assert_eq!(app.count("SELECT COUNT(*) FROM voice_agents").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM phone_numbers").await, 1);
}

/// A user owns at most 10 workspaces, so extra workspaces cannot multiply plan limits;
/// parallel creates do not pass the cap together.
async fn a_user_owns_at_most_ten_workspaces(app: TestApp) {
    let (token, _, _) = app.signup("hoarder@shop.example").await;
    for i in 0..8 {
        app.workspace(&token, &format!("Shop {i}")).await;
    }
    let statuses = post_in_parallel(
        &app,
        &token,
        "/api/v1/workspaces",
        5,
        |i| json!({ "name": format!("Extra {i}") }),
    )
    .await;
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT,
            StatusCode::CONFLICT
        ]
    );
    let more = app
        .post(
            "/api/v1/workspaces",
            Some(&token),
            json!({ "name": "One more" }),
        )
        .await;
    assert_eq!(more.status, StatusCode::CONFLICT);
    assert_eq!(more.code(), "workspace_limit_reached");
    // Someone else is not affected.
    let (other, _, _) = app.signup("modest@shop.example").await;
    app.workspace(&other, "Mine").await;
}

/// Invitations carry their sender's authority only while the sender still has it (L3);
/// and only the owner demotes or removes an admin.
async fn invitations_die_with_their_senders_authority(app: TestApp) {
    let (owner, _, _) = app.signup("boss@shop.example").await;
    let ws = app.workspace(&owner, "Shop").await;
    let members = format!("/api/v1/workspaces/{ws}/members");
    let invite = |token: String, email: &'static str, role: &'static str| {
        let app = &app;
        let members = members.clone();
        async move {
            let r = app
                .post(
                    &members,
                    Some(&token),
                    json!({ "email": email, "role": role }),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            let (_, body) = app.last_email(email).await;
            support::token_after(&body, "/api/v1/invitations/")
                .trim_end_matches("/accept")
                .to_owned()
        }
    };
    let accept = |token: String, invitation: String| {
        let app = &app;
        async move {
            app.post(
                &format!("/api/v1/invitations/{invitation}/accept"),
                Some(&token),
                json!({}),
            )
            .await
        }
    };
    // Two admins.
    let (a1, _, a1_id) = app.signup("a1@shop.example").await;
    let (a2, _, a2_id) = app.signup("a2@shop.example").await;
    for (token, email) in [(&a1, "a1@shop.example"), (&a2, "a2@shop.example")] {
        let inv = invite(owner.clone(), email, "admin").await;
        assert_eq!(accept(token.clone(), inv).await.status, StatusCode::OK);
    }
    // An admin cannot demote or remove another admin; the owner can.
    let demote = app
        .call(
            "PUT",
            &format!("{members}/{a2_id}"),
            Some(&a1),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(demote.status, StatusCode::FORBIDDEN, "{}", demote.body);
    let remove = app
        .call("DELETE", &format!("{members}/{a2_id}"), Some(&a1), None)
        .await;
    assert_eq!(remove.status, StatusCode::FORBIDDEN, "{}", remove.body);

    // a1 invites two alts as admins, then is demoted; a2 invites one, then is removed.
    let (alt1, _, _) = app.signup("alt1@evil.example").await;
    let (alt2, _, _) = app.signup("alt2@evil.example").await;
    let inv1 = invite(a1.clone(), "alt1@evil.example", "admin").await;
    let inv2 = invite(a2.clone(), "alt2@evil.example", "admin").await;
    let r = app
        .call(
            "PUT",
            &format!("{members}/{a1_id}"),
            Some(&owner),
            Some(json!({ "role": "member" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .call("DELETE", &format!("{members}/{a2_id}"), Some(&owner), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for (token, inv) in [(alt1, inv1), (alt2, inv2)] {
        let peek = app
            .call("GET", &format!("/api/v1/invitations/{inv}"), None, None)
            .await;
        assert_eq!(peek.status, StatusCode::NOT_FOUND);
        assert_eq!(accept(token, inv).await.status, StatusCode::NOT_FOUND);
    }
    let listed = app.get(&members, &owner).await;
    assert_eq!(listed.body["invitations"], json!([]), "{}", listed.body);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM workspace_members").await,
        2,
        "the owner and the demoted a1"
    );
    // An admin may still leave on their own.
    let inv = invite(owner.clone(), "a2@shop.example", "admin").await;
    assert_eq!(accept(a2.clone(), inv).await.status, StatusCode::OK);
    let left = app
        .call("DELETE", &format!("{members}/{a2_id}"), Some(&a2), None)
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
}

on_both_databases!(
    parallel_creates_respect_plan_limits,
    a_user_owns_at_most_ten_workspaces,
    invitations_die_with_their_senders_authority,
    the_readme_walkthrough,
    invalid_call_settings_list_every_field_and_write_nothing,
    numbers_are_e164_unique_and_route_to_one_agent,
    plan_limits_are_enforced,
    invitations_add_members_with_the_invited_role,
);
