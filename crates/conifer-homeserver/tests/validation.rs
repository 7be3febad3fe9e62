//! Validation of client requests (issue 15 item 8): canonical aliases and
//! the alias directory's permissions, cross-room redactions, device key
//! signatures, key sizes, repeated state, filters and query strings.

mod common;

use common::{enc, TestServer, User, SERVER};
use conifer_rooms::ruma::canonical_json::try_from_json_map;
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{sign_json, Ed25519KeyPair};
use serde_json::{json, Value};

fn alias(name: &str) -> String {
    format!("#{name}{}:{SERVER}", common::rand_suffix())
}

async fn put_alias(s: &TestServer, user: &User, alias: &str, room: &str) -> (u16, Value) {
    s.put(
        &format!("/_matrix/client/v3/directory/room/{}", enc(alias)),
        &user.token,
        json!({ "room_id": room }),
    )
    .await
}

async fn set_state(
    s: &TestServer,
    user: &User,
    room: &str,
    kind: &str,
    key: &str,
    content: Value,
) -> (u16, Value) {
    s.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            enc(room),
            enc(kind),
            enc(key)
        ),
        &user.token,
        content,
    )
    .await
}

/// PUT /rooms/{roomId}/state: "If the event type being sent is
/// `m.room.canonical_alias` servers SHOULD ensure that any new aliases being
/// listed in the event are valid per their grammar/syntax and that they
/// point to the room ID where the state event is to be sent." —
/// "`M_BAD_ALIAS`: One or more aliases within the `m.room.canonical_alias`
/// event do not point to the room ID for which the state event is to be
/// sent to." — "`M_INVALID_PARAM`: One or more aliases within the
/// `m.room.canonical_alias` event have invalid syntax."
#[tokio::test]
async fn canonical_alias_must_name_aliases_of_the_room() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let here = s.create_room(&ann, json!({})).await;
    let there = s.create_room(&ann, json!({})).await;
    let (ours, theirs) = (alias("ours"), alias("theirs"));
    assert_eq!(put_alias(&s, &ann, &ours, &here).await.0, 200);
    assert_eq!(put_alias(&s, &ann, &theirs, &there).await.0, 200);

    for content in [
        json!({ "alias": theirs }),
        json!({ "alias": ours, "alt_aliases": [theirs] }),
        json!({ "alt_aliases": [format!("#nowhere:{SERVER}")] }),
    ] {
        let (status, body) =
            set_state(&s, &ann, &here, "m.room.canonical_alias", "", content).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (400, Some("M_BAD_ALIAS")),
            "{body}"
        );
    }
    let (status, body) = set_state(
        &s,
        &ann,
        &here,
        "m.room.canonical_alias",
        "",
        json!({ "alt_aliases": ["no-sigil"] }),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let (status, body) = set_state(
        &s,
        &ann,
        &here,
        "m.room.canonical_alias",
        "",
        json!({ "alias": 7 }),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );

    // The room's own alias is fine; an alias of another server is asked of
    // that server, and one that cannot be checked (this server does not
    // federate) is refused (see tests/federation_aliases.rs for the rest).
    let remote = "#elsewhere:other.test";
    let (status, body) = set_state(
        &s,
        &ann,
        &here,
        "m.room.canonical_alias",
        "",
        json!({ "alias": ours, "alt_aliases": [remote] }),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_ALIAS"))
    );
    let (status, _) = set_state(
        &s,
        &ann,
        &here,
        "m.room.canonical_alias",
        "",
        json!({ "alias": ours }),
    )
    .await;
    assert_eq!(status, 200);
    let (_, current) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
                enc(&here)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(current["alias"], json!(ours));
}

/// "Servers do not validate aliases which are being removed or are already
/// present in the state event." DELETE /directory/room: "Servers may choose
/// to update the `alt_aliases` for the `m.room.canonical_alias` state event
/// in the room when an alias is removed."
#[tokio::test]
async fn deleting_an_alias_takes_it_out_of_the_canonical_alias_event() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let (main, alt, kept) = (alias("main"), alias("alt"), alias("kept"));
    for a in [&main, &alt, &kept] {
        assert_eq!(put_alias(&s, &ann, a, &room).await.0, 200);
    }
    let content = json!({ "alias": main, "alt_aliases": [alt, kept] });
    assert_eq!(
        set_state(&s, &ann, &room, "m.room.canonical_alias", "", content)
            .await
            .0,
        200
    );

    for a in [&main, &alt] {
        let (status, _) = s
            .request(
                "DELETE",
                &format!("/_matrix/client/v3/directory/room/{}", enc(a)),
                Some(&ann.token),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, current) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
                enc(&room)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(current, json!({ "alt_aliases": [kept] }));
    // The alias left in the event is already present: resending it is fine.
    let (status, _) = set_state(
        &s,
        &ann,
        &room,
        "m.room.canonical_alias",
        "",
        json!({ "alias": kept, "alt_aliases": [kept] }),
    )
    .await;
    assert_eq!(status, 200);
}

/// DELETE /directory/room: "Servers may choose to implement additional
/// access control checks here, for instance that room aliases can only be
/// deleted by their creator or a server administrator." Creating one: as
/// Synapse, only a member of the room may point an alias at it.
#[tokio::test]
async fn only_members_alias_a_room_and_only_creators_or_moderators_unalias_it() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let private = s
        .create_room(&ann, json!({ "preset": "private_chat" }))
        .await;
    let (status, body) = put_alias(&s, &bob, &alias("squat"), &private).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let public = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &public).await;
    let (anns, bobs) = (alias("anns"), alias("bobs"));
    assert_eq!(put_alias(&s, &ann, &anns, &public).await.0, 200);
    assert_eq!(put_alias(&s, &bob, &bobs, &public).await.0, 200);
    let delete = |user: &User, a: &str| {
        let path = format!("/_matrix/client/v3/directory/room/{}", enc(a));
        let token = user.token.clone();
        let s = &s;
        async move { s.request("DELETE", &path, Some(&token), None).await }
    };
    // Bob (level 0) may not delete Ann's alias; Ann (level 100, enough for
    // m.room.canonical_alias) may delete Bob's.
    let (status, body) = delete(&bob, &anns).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    assert_eq!(delete(&ann, &bobs).await.0, 200);
    assert_eq!(delete(&ann, &anns).await.0, 200);
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/directory/room/{}", enc(&anns)),
            &ann.token,
        )
        .await;
    assert_eq!(status, 404);
}

/// The redaction algorithm applies to "the affected event" of the room;
/// as Synapse ("Cannot redact event from a different room"), a redaction
/// naming an event of another room is refused with 400 and nothing is sent.
#[tokio::test]
async fn redacting_an_event_of_another_room_is_refused() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (here, there) = (
        s.create_room(&ann, json!({})).await,
        s.create_room(&ann, json!({})).await,
    );
    let (_, sent) = s.send_text(&ann, &there, "keep me").await;
    let event = sent["event_id"].as_str().unwrap();
    let (status, body) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/t1",
                enc(&here),
                enc(event)
            ),
            &ann.token,
            json!({ "reason": "cross-room" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let (_, got) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&there),
                enc(event)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(got["content"]["body"], "keep me");
    let (_, msgs) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&here)
            ),
            &ann.token,
        )
        .await;
    assert!(
        msgs["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "m.room.redaction"),
        "{msgs}"
    );
}

fn signed_device_keys(user: &User, pair: &Ed25519KeyPair) -> Value {
    let public =
        Base64::<conifer_rooms::ruma::serde::base64::Standard>::new(pair.public_key().to_vec())
            .encode();
    let keys = json!({
        "user_id": user.user_id, "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", user.device_id): "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
            format!("ed25519:{}", user.device_id): public,
        },
    });
    let Value::Object(map) = keys else {
        unreachable!()
    };
    let mut object = try_from_json_map(map).unwrap();
    sign_json(&user.user_id, pair, &mut object).unwrap();
    serde_json::to_value(object).unwrap()
}

/// POST /keys/upload, `device_keys`: "`user_id` [...] Must match the user ID
/// used when logging in.", "`device_id` [...] Must match the device ID used
/// when logging in.", "`signatures`: Signatures for the device key object.
/// [...] The signature is calculated using the process described at
/// Signing JSON."
#[tokio::test]
async fn device_keys_must_be_the_uploaders_and_self_signed() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let pair =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), ann.device_id.clone()).unwrap();
    let good = signed_device_keys(&ann, &pair);

    let mut tampered = good.clone();
    tampered["algorithms"] = json!(["m.olm.v1.curve25519-aes-sha2"]);
    let mut unsigned = good.clone();
    unsigned["signatures"] = json!({});
    let mut other_key = good.clone();
    let stranger =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), ann.device_id.clone()).unwrap();
    other_key["keys"][format!("ed25519:{}", ann.device_id)] =
        json!(Base64::<conifer_rooms::ruma::serde::base64::Standard>::new(
            stranger.public_key().to_vec()
        )
        .encode());
    let mut bobs = good.clone();
    bobs["user_id"] = json!(bob.user_id);
    let mut other_device = good.clone();
    other_device["device_id"] = json!("SOMEOTHER");
    for bad in [tampered, unsigned, other_key, bobs, other_device] {
        let (status, body) = s
            .post(
                "/_matrix/client/v3/keys/upload",
                &ann.token,
                json!({ "device_keys": bad }),
            )
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{body}"
        );
    }
    // Nothing of the refused uploads was published.
    let query = json!({ "device_keys": { ann.user_id.clone(): [] } });
    let (_, q) = s
        .post("/_matrix/client/v3/keys/query", &bob.token, query.clone())
        .await;
    assert!(
        q["device_keys"][&ann.user_id].get(&ann.device_id).is_none(),
        "{q}"
    );

    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            &ann.token,
            json!({ "device_keys": good }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, q) = s
        .post("/_matrix/client/v3/keys/query", &bob.token, query)
        .await;
    assert_eq!(
        q["device_keys"][&ann.user_id][&ann.device_id]["signatures"],
        good["signatures"]
    );
}

/// Size limits: "`state_key` 255 bytes", "`type` 255 bytes"; "`M_TOO_LARGE`
/// The request or entity was too large."
#[tokio::test]
async fn types_and_state_keys_over_255_bytes_are_too_large() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let long = "x".repeat(256);
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/{long}/t1", enc(&room)),
            &ann.token,
            json!({ "body": "hi" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE"))
    );
    let (status, body) = set_state(&s, &ann, &room, &long, "", json!({})).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE"))
    );
    let (status, body) = set_state(&s, &ann, &room, "org.example.state", &long, json!({})).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE"))
    );
    // Exactly 255 bytes (multi-byte characters count as bytes) is allowed.
    let fits = format!("{}{}", "é".repeat(127), "x");
    assert_eq!(fits.len(), 255);
    assert_eq!(
        set_state(&s, &ann, &room, "org.example.state", &fits, json!({}))
            .await
            .0,
        200
    );
    let over = "é".repeat(128);
    assert_eq!(
        set_state(&s, &ann, &room, "org.example.state", &over, json!({}))
            .await
            .0,
        413
    );
}

/// "These events will be overwritten if `<room id>`, `<event type>` and
/// `<state key>` all match." As Synapse, the same content from the same
/// sender is the event already there: its ID comes back, nothing new is
/// stored.
#[tokio::test]
async fn repeating_the_current_state_returns_the_existing_event() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(
            &ann,
            json!({ "preset": "public_chat", "power_level_content_override": { "state_default": 0 } }),
        )
        .await;
    s.join(&bob, &room).await;
    let topic = json!({ "topic": "cats" });
    let (_, first) = set_state(&s, &ann, &room, "m.room.topic", "", topic.clone()).await;
    let since = s.sync(&ann, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, again) = set_state(&s, &ann, &room, "m.room.topic", "", topic.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["event_id"], first["event_id"]);
    let after = s.sync(&ann, Some(&since), 0).await;
    assert!(after["rooms"]["join"].get(&room).is_none(), "{after}");
    // Different content, or another sender, is a new event.
    let (_, changed) = set_state(
        &s,
        &ann,
        &room,
        "m.room.topic",
        "",
        json!({ "topic": "dogs" }),
    )
    .await;
    assert_ne!(changed["event_id"], first["event_id"]);
    let (status, by_bob) =
        set_state(&s, &bob, &room, "org.example.note", "", json!({ "n": 1 })).await;
    assert_eq!(status, 200, "{by_bob}");
    let (_, by_ann) = set_state(&s, &ann, &room, "org.example.note", "", json!({ "n": 1 })).await;
    assert_ne!(by_ann["event_id"], by_bob["event_id"]);
}

/// The `Filter` schema: `event_format` "`client` [...] `federation` [...]
/// The default is `client`.", `limit` "The maximum number of events to
/// return, must be an integer greater than 0" (an integer: negative or
/// non-integer limits are refused; 0 is accepted as Synapse does),
/// `types`/`not_types`/`rooms` lists of strings, `include_leave` /
/// `lazy_load_members` booleans. A body that does
/// not match: "`M_BAD_JSON` Request contained valid JSON, but it was
/// malformed in some way".
#[tokio::test]
async fn filters_of_the_wrong_shape_are_bad_json() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let path = format!("/_matrix/client/v3/user/{}/filter", enc(&ann.user_id));
    for bad in [
        json!({ "room": { "timeline": { "limit": -1 } } }),
        json!({ "room": { "timeline": { "limit": "10" } } }),
        json!({ "room": { "timeline": { "types": "m.room.message" } } }),
        json!({ "room": { "state": { "lazy_load_members": "yes" } } }),
        json!({ "room": { "include_leave": 1 } }),
        json!({ "room": { "rooms": [1, 2] } }),
        json!({ "room": [] }),
        json!({ "presence": { "not_senders": [true] } }),
        json!({ "account_data": "none" }),
        json!({ "event_format": "xml" }),
        json!({ "event_fields": "content.body" }),
    ] {
        let (status, body) = s.post(&path, &ann.token, bad.clone()).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (400, Some("M_BAD_JSON")),
            "{bad}"
        );
        let inline = format!("/_matrix/client/v3/sync?filter={}", enc(&bad.to_string()));
        let (status, body) = s.get(&inline, &ann.token).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (400, Some("M_BAD_JSON")),
            "{bad}"
        );
    }
    let good = json!({
        "event_format": "client", "event_fields": ["type"],
        "room": { "timeline": { "limit": 0, "types": ["m.*"], "lazy_load_members": true }, "include_leave": false },
        "presence": { "types": [] }, "org.example.unknown": { "any": "thing" },
    });
    let (status, body) = s.post(&path, &ann.token, good).await;
    assert_eq!(status, 200, "{body}");
}

/// `account_data` filter: "types: A list of event types to include. [...]
/// A '*' can be used as a wildcard to match any sequence of characters."
/// "not_types: A list of event types to exclude."
#[tokio::test]
async fn sync_honours_account_data_types() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    for kind in ["org.example.a", "org.example.b", "com.other.c"] {
        let (status, _) = s
            .put(
                &format!(
                    "/_matrix/client/v3/user/{}/account_data/{kind}",
                    enc(&ann.user_id)
                ),
                &ann.token,
                json!({ "k": kind }),
            )
            .await;
        assert_eq!(status, 200);
        s.put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/{kind}",
                enc(&ann.user_id),
                enc(&room)
            ),
            &ann.token,
            json!({ "k": kind }),
        )
        .await;
    }
    let filter = json!({
        "account_data": { "types": ["org.example.*"], "not_types": ["org.example.b"] },
        "room": { "account_data": { "not_types": ["org.example.*"] } },
    });
    let (_, sync) = s
        .get(
            &format!(
                "/_matrix/client/v3/sync?filter={}",
                enc(&filter.to_string())
            ),
            &ann.token,
        )
        .await;
    let kinds = |events: &Value| -> Vec<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(&sync["account_data"]["events"]), ["org.example.a"]);
    let room_kinds = kinds(&sync["rooms"]["join"][&room]["account_data"]["events"]);
    assert!(
        room_kinds.contains(&"com.other.c".to_owned()),
        "{room_kinds:?}"
    );
    assert!(
        room_kinds.iter().all(|k| !k.starts_with("org.example.")),
        "{room_kinds:?}"
    );
}

/// "`M_INVALID_PARAM` A parameter that was specified has the wrong value.
/// For example, the server expected an integer and instead received a
/// string." — as a standard error response (JSON), for query strings too.
#[tokio::test]
async fn bad_query_strings_are_json_invalid_param() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let room = enc(&room);
    for path in [
        "/_matrix/client/v3/sync?timeout=abc".to_owned(),
        "/_matrix/client/v3/sync?full_state=maybe".to_owned(),
        "/_matrix/client/v3/publicRooms?limit=-1".to_owned(),
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=x"),
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=-1"),
        format!("/_matrix/client/v3/rooms/{room}/members?membership=join"),
        "/_matrix/client/v3/keys/changes?from=s1".to_owned(),
        format!("/_matrix/client/v1/rooms/{room}/relations/$x?limit=many"),
    ] {
        let resp = s
            .http
            .get(format!("{}{path}", s.url))
            .bearer_auth(&ann.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if path.contains("members?") {
            // A well-formed query still works.
            assert_eq!(status, 200, "{path}");
            continue;
        }
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let expected = if path.contains("changes") {
            "M_MISSING_PARAM"
        } else {
            "M_INVALID_PARAM"
        };
        assert_eq!(body["errcode"], expected, "{path}: {body}");
    }
}

/// `event_format`: "`client` will return the events in a format suitable
/// for clients. `federation` will return the raw event as received over
/// federation. The default is `client`."
#[tokio::test]
async fn sync_honours_event_format_federation() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let (_, sent) = s.send_text(&ann, &room, "raw please").await;
    let filter = json!({ "event_format": "federation" });
    let (_, sync) = s
        .get(
            &format!(
                "/_matrix/client/v3/sync?filter={}",
                enc(&filter.to_string())
            ),
            &ann.token,
        )
        .await;
    let events = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let message = events
        .iter()
        .find(|e| e["event_id"] == sent["event_id"])
        .expect("the message is in the timeline");
    // PDU fields that the client format leaves out.
    for key in [
        "auth_events",
        "prev_events",
        "depth",
        "hashes",
        "signatures",
    ] {
        assert!(message.get(key).is_some(), "{key} missing: {message}");
    }
    assert!(
        message["unsigned"].get("io.conifer.txn").is_none(),
        "{message}"
    );
    let (_, plain) = s.get("/_matrix/client/v3/sync", &ann.token).await;
    let client = &plain["rooms"]["join"][&room]["timeline"]["events"][0];
    assert!(client.get("auth_events").is_none(), "{client}");
}
