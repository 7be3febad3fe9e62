//! The push rules HTTP API (spec: Client-Server API, module "Push
//! Notifications", "Push Rules: API").

mod common;
use common::*;
use serde_json::{json, Value};

const RULES: &str = "/_matrix/client/v3/pushrules";

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

fn user_ids(list: &Value) -> Vec<String> {
    ids(list)
        .into_iter()
        .filter(|id| !id.starts_with('.'))
        .collect()
}

async fn expect_error(r: (u16, Value), status: u16, errcode: &str) {
    assert_eq!(
        (r.0, r.1["errcode"].as_str()),
        (status, Some(errcode)),
        "{}",
        r.1
    );
}

/// Spec: `GET /pushrules/` "Retrieve all push rulesets for this user.
/// Currently the only push ruleset defined is `global`." and `GET
/// /pushrules/global/` "Retrieve all push rules for this user."; "Homeservers
/// can specify "server-default rules" ... The `rule_id` for all
/// server-default rules MUST start with a dot".
#[tokio::test]
async fn the_rule_sets_hold_the_server_default_rules_of_every_kind() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, all) = s.get(&format!("{RULES}/"), &ann.token).await;
    assert_eq!(status, 200, "{all}");
    let (status, global) = s.get(&format!("{RULES}/global/"), &ann.token).await;
    assert_eq!(status, 200, "{global}");
    assert_eq!(all["global"], global);
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(global[kind].is_array(), "{kind} missing: {global}");
        // The list of one kind, as Synapse also serves it.
        let (status, list) = s.get(&format!("{RULES}/global/{kind}/"), &ann.token).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list, global[kind]);
    }
    let overrides = ids(&global["override"]);
    assert_eq!(overrides[0], ".m.rule.master");
    assert!(overrides.iter().all(|id| id.starts_with('.')));
    assert!(ids(&global["underride"]).contains(&".m.rule.message".to_owned()));
    let master = &global["override"][0];
    assert_eq!(
        (master["default"].as_bool(), master["enabled"].as_bool()),
        (Some(true), Some(false))
    );
}

/// Spec (`PUT /pushrules/global/{kind}/{ruleId}`): "This endpoint allows the
/// creation and modification of user defined push rules." and "When
/// creating push rules, they MUST be enabled by default."; `GET` "Retrieve a
/// single specified push rule. This will also include keys specific to the
/// rule itself such as the rule's `actions` and `conditions` if set."
#[tokio::test]
async fn a_created_rule_is_enabled_and_read_back_with_its_attributes() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let path = format!("{RULES}/global/override/quiet-bots");
    let rule = json!({
        "conditions": [{ "kind": "event_match", "key": "sender", "pattern": "@bot*" }],
        "actions": [{ "set_tweak": "sound", "value": "default" }, "notify"]
    });
    let (status, body) = s.put(&path, &ann.token, rule.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, got) = s.get(&path, &ann.token).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["rule_id"], "quiet-bots");
    assert_eq!(got["enabled"], true);
    assert_eq!(got["default"], false);
    assert_eq!(got["conditions"], rule["conditions"]);
    assert_eq!(got["actions"], rule["actions"]);
    let (_, enabled) = s.get(&format!("{path}/enabled"), &ann.token).await;
    assert_eq!(enabled, json!({ "enabled": true }));
    let (_, actions) = s.get(&format!("{path}/actions"), &ann.token).await;
    assert_eq!(actions, json!({ "actions": rule["actions"] }));

    // Content, room and sender rules, each with its kind's own keys.
    let content = format!("{RULES}/global/content/tea");
    assert_eq!(
        s.put(
            &content,
            &ann.token,
            json!({ "pattern": "tea", "actions": ["notify"] })
        )
        .await
        .0,
        200
    );
    assert_eq!(s.get(&content, &ann.token).await.1["pattern"], "tea");
    let room = format!("{RULES}/global/room/{}", enc("!abc:test.local"));
    assert_eq!(
        s.put(&room, &ann.token, json!({ "actions": [] })).await.0,
        200
    );
    assert_eq!(
        s.get(&room, &ann.token).await.1["rule_id"],
        "!abc:test.local"
    );
    let sender = format!("{RULES}/global/sender/{}", enc("@spam:test.local"));
    assert_eq!(
        s.put(&sender, &ann.token, json!({ "actions": [] })).await.0,
        200
    );
    assert_eq!(s.get(&sender, &ann.token).await.0, 200);

    // Rules are per user.
    expect_error(s.get(&path, &bob.token).await, 404, "M_NOT_FOUND").await;
}

/// Spec (`PUT`, `before`): "Use 'before' with a `rule_id` as its value to
/// make the new rule the next-most important rule with respect to the given
/// user defined rule."; (`after`): "This makes the new rule the next-less
/// important rule relative to the given user defined rule."; "If both
/// `after` and `before` are provided, the new or updated rule must be the
/// next most important rule with respect to the rule identified by
/// `before`."; "If neither `after` nor `before` are provided and the rule is
/// created, it should be added as the most important user defined rule among
/// rules of the same kind."
#[tokio::test]
async fn before_and_after_place_rules_and_new_rules_come_first() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let put = |id: &str, query: &str| {
        let path = format!(
            "{RULES}/global/room/{}{query}",
            enc(&format!("!{id}:test.local"))
        );
        let token = ann.token.clone();
        let s = &s;
        async move { s.put(&path, &token, json!({ "actions": [] })).await }
    };
    let order = || async {
        let (_, list) = s.get(&format!("{RULES}/global/room/"), &ann.token).await;
        ids(&list)
            .into_iter()
            .map(|id| id[1..].split(':').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let r = |id: &str| enc(&format!("!{id}:test.local"));
    assert_eq!(put("a", "").await.0, 200);
    assert_eq!(put("b", "").await.0, 200);
    assert_eq!(order().await, ["b", "a"]);
    // Moving an existing rule below the last one.
    assert_eq!(put("b", &format!("?after={}", r("a"))).await.0, 200);
    assert_eq!(order().await, ["a", "b"]);
    assert_eq!(put("c", &format!("?after={}", r("a"))).await.0, 200);
    assert_eq!(order().await, ["a", "c", "b"]);
    assert_eq!(put("d", &format!("?before={}", r("a"))).await.0, 200);
    assert_eq!(order().await, ["d", "a", "c", "b"]);
    // Both: just above `before`.
    let both = format!("?after={}&before={}", r("a"), r("b"));
    assert_eq!(put("e", &both).await.0, 200);
    assert_eq!(order().await, ["d", "a", "c", "e", "b"]);
    // Updating without before/after keeps the place.
    assert_eq!(put("c", "").await.0, 200);
    assert_eq!(order().await, ["d", "a", "c", "e", "b"]);

    // A new override rule goes above the server-default ones, below none
    // of the user's.
    let path = format!("{RULES}/global/override/mine");
    assert_eq!(
        s.put(&path, &ann.token, json!({ "actions": ["notify"] }))
            .await
            .0,
        200
    );
    let (_, list) = s
        .get(&format!("{RULES}/global/override/"), &ann.token)
        .await;
    let list = ids(&list);
    assert_eq!(&list[..2], [".m.rule.master", "mine"]);
}

/// Spec (`before`/`after`): "It is not possible to add a rule relative to a
/// predefined server rule."; a `before`/`after` naming no rule is "a problem
/// configuring this push rule" (400). `M_INVALID_PARAM`: "A parameter that
/// was specified has the wrong value."
#[tokio::test]
async fn bad_before_and_after_are_invalid_params_and_change_nothing() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let base = format!("{RULES}/global/underride");
    for id in ["one", "two"] {
        assert_eq!(
            s.put(
                &format!("{base}/{id}"),
                &ann.token,
                json!({ "actions": ["notify"] })
            )
            .await
            .0,
            200
        );
    }
    let body = json!({ "actions": ["notify"] });
    for query in [
        "?before=missing",
        "?after=missing",
        "?after=.m.rule.message",
        "?before=.m.rule.call",
        "?after=one&before=two",
        "?after=three",
    ] {
        let r = s
            .put(&format!("{base}/three{query}"), &ann.token, body.clone())
            .await;
        expect_error(r, 400, "M_INVALID_PARAM").await;
    }
    expect_error(
        s.get(&format!("{base}/three"), &ann.token).await,
        404,
        "M_NOT_FOUND",
    )
    .await;
    let (_, list) = s.get(&format!("{base}/"), &ann.token).await;
    assert_eq!(user_ids(&list), ["two", "one"]);
}

/// Spec (`PUT`, `ruleId`): "If the string starts with a dot ("."), the
/// request MUST be rejected as this is reserved for server-default rules.
/// Slashes ("/") and backslashes ("\\") are also not allowed."; "The
/// `rule_id` of a room rule is always the ID of the room that it affects."
/// and "The `rule_id` of Sender rules is always the Matrix user ID of the
/// user whose messages they'd apply to."
#[tokio::test]
async fn rule_ids_the_spec_reserves_or_forbids_are_rejected() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let master = format!("{RULES}/global/override/.m.rule.master");
    let (_, before) = s.get(&master, &ann.token).await;
    let body = json!({ "actions": ["notify"] });
    for (kind, id) in [
        ("override", ".mine"),
        ("override", ".m.rule.master"),
        ("content", "a/b"),
        ("underride", "a\\b"),
        ("room", "not-a-room"),
        ("sender", "not-a-user"),
    ] {
        let mut body = body.clone();
        body["pattern"] = json!("x");
        let r = s
            .put(
                &format!("{RULES}/global/{kind}/{}", enc(id)),
                &ann.token,
                body,
            )
            .await;
        expect_error(r, 400, "M_INVALID_PARAM").await;
    }
    // The server-default rule was not replaced.
    let (_, after) = s.get(&master, &ann.token).await;
    assert_eq!(after["default"], true);
    assert_eq!(after, before);
}

/// Spec: `kind` is one of `override`, `underride`, `sender`, `room`,
/// `content`; `M_INVALID_PARAM`: "A parameter that was specified has the
/// wrong value."; `M_BAD_JSON`: "Request contained valid JSON, but it was
/// malformed in some way, e.g. missing required keys, invalid values for
/// keys." (`actions` is required; `pattern` "Only applicable to `content`
/// rules"; `enabled` is a boolean).
#[tokio::test]
async fn unknown_kinds_and_malformed_bodies_get_spec_error_codes() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let t = ann.token.as_str();
    let bogus = format!("{RULES}/global/bogus/x");
    expect_error(s.get(&bogus, t).await, 400, "M_INVALID_PARAM").await;
    expect_error(
        s.put(&bogus, t, json!({ "actions": [] })).await,
        400,
        "M_INVALID_PARAM",
    )
    .await;
    expect_error(
        s.request("DELETE", &bogus, Some(t), None).await,
        400,
        "M_INVALID_PARAM",
    )
    .await;
    expect_error(
        s.get(&format!("{bogus}/enabled"), t).await,
        400,
        "M_INVALID_PARAM",
    )
    .await;
    expect_error(
        s.get(&format!("{RULES}/global/bogus/"), t).await,
        400,
        "M_INVALID_PARAM",
    )
    .await;

    let rule = format!("{RULES}/global/override/r");
    for body in [
        json!({}),
        json!({ "actions": "notify" }),
        json!({ "actions": [1] }),
        json!({ "actions": [], "conditions": "none" }),
    ] {
        expect_error(s.put(&rule, t, body).await, 400, "M_BAD_JSON").await;
    }
    expect_error(
        s.put(
            &format!("{RULES}/global/content/c"),
            t,
            json!({ "actions": [] }),
        )
        .await,
        400,
        "M_BAD_JSON",
    )
    .await;
    let master = format!("{RULES}/global/override/.m.rule.master");
    for body in [json!({}), json!({ "enabled": "yes" })] {
        expect_error(
            s.put(&format!("{master}/enabled"), t, body).await,
            400,
            "M_BAD_JSON",
        )
        .await;
    }
    for body in [json!({}), json!({ "actions": {} })] {
        expect_error(
            s.put(&format!("{master}/actions"), t, body).await,
            400,
            "M_BAD_JSON",
        )
        .await;
    }
    let (status, body) = s.request("PUT", &rule, Some(t), None).await;
    assert_eq!(status, 400, "{body}");
}

/// Spec: every `{kind}/{ruleId}` endpoint answers 404 "The push rule does not
/// exist." (`M_NOT_FOUND`: "No resource was found for this request.")
#[tokio::test]
async fn unknown_rules_are_not_found() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let t = ann.token.as_str();
    let path = format!("{RULES}/global/override/nothing");
    expect_error(s.get(&path, t).await, 404, "M_NOT_FOUND").await;
    expect_error(
        s.request("DELETE", &path, Some(t), None).await,
        404,
        "M_NOT_FOUND",
    )
    .await;
    for attr in ["enabled", "actions"] {
        expect_error(
            s.get(&format!("{path}/{attr}"), t).await,
            404,
            "M_NOT_FOUND",
        )
        .await;
    }
    expect_error(
        s.put(&format!("{path}/enabled"), t, json!({ "enabled": true }))
            .await,
        404,
        "M_NOT_FOUND",
    )
    .await;
    expect_error(
        s.put(&format!("{path}/actions"), t, json!({ "actions": [] }))
            .await,
        404,
        "M_NOT_FOUND",
    )
    .await;
    // A server-default ID under the wrong kind does not exist either.
    expect_error(
        s.get(&format!("{RULES}/global/underride/.m.rule.master"), t)
            .await,
        404,
        "M_NOT_FOUND",
    )
    .await;
}

/// Spec (`PUT .../actions`): "This endpoint allows clients to change the
/// actions of a push rule. This can be used to change the actions of
/// builtin rules."; (`PUT .../enabled`) "This endpoint allows clients to
/// enable or disable the specified push rule."; server-default rules are
/// the server's, so they are not deleted (`DELETE` "removes the push rule";
/// only user-defined rules can be removed).
#[tokio::test]
async fn server_default_rules_can_be_toggled_and_changed_but_not_deleted() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let t = ann.token.as_str();
    let master = format!("{RULES}/global/override/.m.rule.master");
    expect_error(
        s.request("DELETE", &master, Some(t), None).await,
        400,
        "M_INVALID_PARAM",
    )
    .await;
    assert_eq!(s.get(&master, t).await.0, 200);

    assert_eq!(
        s.put(&format!("{master}/enabled"), t, json!({ "enabled": true }))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(&format!("{master}/enabled"), t).await.1,
        json!({ "enabled": true })
    );
    let message = format!("{RULES}/global/underride/.m.rule.message");
    let actions = json!(["notify", { "set_tweak": "sound", "value": "bell" }]);
    assert_eq!(
        s.put(
            &format!("{message}/actions"),
            t,
            json!({ "actions": actions })
        )
        .await
        .0,
        200
    );
    let (_, rule) = s.get(&message, t).await;
    assert_eq!(rule["actions"], actions);
    assert_eq!(rule["default"], true);
    assert_eq!(
        s.get(&format!("{message}/actions"), t).await.1,
        json!({ "actions": actions })
    );
}

/// Spec (`PUT`): "If a rule with the same `rule_id` already exists among
/// rules of the same kind, it is updated with the new parameters, otherwise
/// a new rule is created." — whether it is enabled is not one of them;
/// `DELETE` "This endpoint removes the push rule defined in the path."
#[tokio::test]
async fn updating_keeps_the_enabled_state_and_delete_removes_the_rule() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let t = ann.token.as_str();
    let path = format!("{RULES}/global/content/tea");
    s.put(&path, t, json!({ "pattern": "tea", "actions": ["notify"] }))
        .await;
    assert_eq!(
        s.put(&format!("{path}/enabled"), t, json!({ "enabled": false }))
            .await
            .0,
        200
    );
    assert_eq!(
        s.put(&path, t, json!({ "pattern": "coffee", "actions": [] }))
            .await
            .0,
        200
    );
    let (_, rule) = s.get(&path, t).await;
    assert_eq!(
        (&rule["pattern"], &rule["enabled"], &rule["actions"]),
        (&json!("coffee"), &json!(false), &json!([]))
    );
    assert_eq!(s.request("DELETE", &path, Some(t), None).await.0, 200);
    expect_error(s.get(&path, t).await, 404, "M_NOT_FOUND").await;
    expect_error(
        s.request("DELETE", &path, Some(t), None).await,
        404,
        "M_NOT_FOUND",
    )
    .await;
}

/// Spec ("Push Rules: Events"): "When a user changes their push rules a
/// `m.push_rules` event is sent to all clients in the `account_data` section
/// of their next `/sync` request. The content of the event is the current
/// push rules for the user."
#[tokio::test]
async fn changes_reach_sync_as_m_push_rules_account_data() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let first = s.sync(&ann, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let path = format!("{RULES}/global/sender/{}", enc("@spam:test.local"));
    assert_eq!(
        s.put(&path, &ann.token, json!({ "actions": [] })).await.0,
        200
    );
    let next = s.sync(&ann, Some(&since), 0).await;
    let events = next["account_data"]["events"].as_array().unwrap();
    let rules = events
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .unwrap_or_else(|| panic!("no m.push_rules in {next}"));
    assert_eq!(
        ids(&rules["content"]["global"]["sender"]),
        ["@spam:test.local"]
    );
}
