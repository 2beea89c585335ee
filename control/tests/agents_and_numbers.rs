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

on_both_databases!(
    the_readme_walkthrough,
    invalid_call_settings_list_every_field_and_write_nothing,
    numbers_are_e164_unique_and_route_to_one_agent,
    plan_limits_are_enforced,
    invitations_add_members_with_the_invited_role,
);
