//! Simplified sliding sync (MSC4186) against a real server on loopback with
//! its SQLite file in a temporary directory. Each test quotes the sentence
//! of `proposals/4186-simplified-sliding-sync.md` (or of the extension MSCs
//! it names) that it checks.

mod common;
use common::*;
use conifer_rooms::ruma::canonical_json::try_from_json_map;
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{sign_json, Ed25519KeyPair};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Device keys signed with the device's own Ed25519 key.
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

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// One sliding-sync request: `pos` and `timeout` go in the query string.
async fn ss_raw(
    s: &TestServer,
    user: &User,
    pos: Option<&str>,
    timeout_ms: u64,
    body: Value,
) -> (u16, Value) {
    let mut path = format!("{SS}?timeout={timeout_ms}");
    if let Some(p) = pos {
        path.push_str(&format!("&pos={}", enc(p)));
    }
    s.post(&path, &user.token, body).await
}

async fn ss(s: &TestServer, user: &User, pos: Option<&str>, body: Value) -> Value {
    let (status, r) = ss_raw(s, user, pos, 0, body).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["pos"].is_string(), "{r}");
    r
}

fn pos(r: &Value) -> String {
    r["pos"].as_str().unwrap().to_owned()
}

fn room_ids(r: &Value) -> BTreeSet<String> {
    r["rooms"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn state_keys(room: &Value) -> BTreeSet<(String, String)> {
    room["required_state"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn list(range: [u64; 2], timeline_limit: u64, required_state: Value) -> Value {
    json!({ "ranges": [range], "timeline_limit": timeline_limit, "required_state": required_state })
}

async fn private_room(s: &TestServer, owner: &User, name: Option<&str>) -> String {
    let mut body = json!({ "preset": "private_chat" });
    if let Some(n) = name {
        body["name"] = json!(n);
    }
    s.create_room(owner, body).await
}

#[tokio::test]
async fn versions_advertise_the_unstable_feature() {
    // "The flag in `/_matrix/client/versions` is `org.matrix.simplified_msc3575`."
    let s = TestServer::start().await;
    let (status, v) = s
        .request("GET", "/_matrix/client/versions", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
}

#[tokio::test]
async fn lists_are_sorted_by_recency_and_ranges_index_the_filtered_list() {
    // "a common list config would be no filters (i.e. all rooms) plus the
    // range `[0,19]`, which would cause the server to return the top 20
    // rooms (by activity)." "`count`: The total number of entries in the
    // list, i.e. the number of rooms that match the `filters` but ignoring
    // the `range`."
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        let r = private_room(&s, &ann, Some(&format!("room {i}"))).await;
        rooms.push(r);
    }
    for (i, r) in rooms.iter().enumerate() {
        assert_eq!(s.send_text(&ann, r, &format!("m{i}")).await.0, 200);
    }
    // Room 1 becomes the most recent.
    assert_eq!(s.send_text(&ann, &rooms[1], "again").await.0, 200);
    let r = ss(
        &s,
        &ann,
        None,
        json!({ "lists": { "all": list([0, 1], 1, json!([])) } }),
    )
    .await;
    assert_eq!(r["lists"]["all"]["count"], 5, "{r}");
    assert_eq!(
        room_ids(&r),
        BTreeSet::from([rooms[1].clone(), rooms[4].clone()])
    );
    let stamp = |r: &Value, room: &str| r["rooms"][room]["bump_stamp"].as_u64().unwrap();
    assert!(stamp(&r, &rooms[1]) > stamp(&r, &rooms[4]), "{r}");
    assert_eq!(bodies(&r["rooms"][&rooms[1]]), ["again"]);
    assert_eq!(r["rooms"][&rooms[1]]["initial"], true);
    assert_eq!(r["rooms"][&rooms[1]]["name"], "room 1");

    // "On the second request the client may change the range to `[0,99]`,
    // at which point the server will use the top 100 rooms and respond with
    // the ones that either a) weren't sent down in the first request, or b)
    // have updates since the first request."
    let r2 = ss(
        &s,
        &ann,
        Some(&pos(&r)),
        json!({ "lists": { "all": list([0, 99], 1, json!([])) } }),
    )
    .await;
    assert_eq!(
        room_ids(&r2),
        BTreeSet::from([rooms[0].clone(), rooms[2].clone(), rooms[3].clone()]),
        "{r2}"
    );
    // Ranges are inclusive and 0-indexed: [2, 3] is the third and fourth.
    let r3 = ss(
        &s,
        &ann,
        None,
        json!({ "lists": { "mid": list([2, 3], 1, json!([])) } }),
    )
    .await;
    assert_eq!(
        room_ids(&r3),
        BTreeSet::from([rooms[3].clone(), rooms[2].clone()]),
        "{r3}"
    );
}

#[tokio::test]
async fn required_state_wildcards_me_and_lazy_members() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob, &carol]).await;
    assert_eq!(s.send_text(&bob, &room, "from bob").await.0, 200);
    let one = |rs: Value| json!({ "room_subscriptions": { room.clone(): { "timeline_limit": 1, "required_state": rs } } });

    // `$LAZY`: "the server will return the membership events for: 1. All
    // the `senders` of events in `timeline_events`".
    let r = ss(&s, &ann, None, one(json!([["m.room.member", "$LAZY"]]))).await;
    assert_eq!(
        state_keys(&r["rooms"][&room]),
        BTreeSet::from([("m.room.member".to_owned(), bob.user_id.clone())]),
        "{r}"
    );
    // `$ME` is the user's own state key.
    let r = ss(&s, &ann, None, one(json!([["m.room.member", "$ME"]]))).await;
    assert_eq!(
        state_keys(&r["rooms"][&room]),
        BTreeSet::from([("m.room.member".to_owned(), ann.user_id.clone())]),
        "{r}"
    );
    // `*` as the type and state key: everything.
    let r = ss(&s, &ann, None, one(json!([["*", "*"]]))).await;
    let keys = state_keys(&r["rooms"][&room]);
    for u in [&ann, &bob, &carol] {
        assert!(
            keys.contains(&("m.room.member".to_owned(), u.user_id.clone())),
            "{keys:?}"
        );
    }
    for t in ["m.room.create", "m.room.power_levels", "m.room.join_rules"] {
        assert!(keys.contains(&(t.to_owned(), String::new())), "{keys:?}");
    }
    // A type with `*` as the state key: all members, nothing else.
    let r = ss(&s, &ann, None, one(json!([["m.room.member", "*"]]))).await;
    let keys = state_keys(&r["rooms"][&room]);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|(t, _)| t == "m.room.member"));

    // Incrementally, a new sender's membership comes with its first
    // message; one already sent does not come again ("excluding membership
    // events that were previously returned").
    let r = ss(&s, &ann, None, one(json!([["m.room.member", "$LAZY"]]))).await;
    assert_eq!(s.send_text(&carol, &room, "from carol").await.0, 200);
    assert_eq!(s.send_text(&bob, &room, "bob again").await.0, 200);
    let r2 = ss(&s, &ann, Some(&pos(&r)), {
        let mut b = one(json!([["m.room.member", "$LAZY"]]));
        b["room_subscriptions"][&room]["timeline_limit"] = json!(5);
        b
    })
    .await;
    // The wider timeline limit makes the room come whole again (initial).
    assert_eq!(
        bodies(&r2["rooms"][&room]),
        ["from bob", "from carol", "bob again"],
        "{r2}"
    );
    assert_eq!(s.send_text(&carol, &room, "carol again").await.0, 200);
    let r3 = ss(&s, &ann, Some(&pos(&r2)), {
        let mut b = one(json!([["m.room.member", "$LAZY"]]));
        b["room_subscriptions"][&room]["timeline_limit"] = json!(5);
        b
    })
    .await;
    assert_eq!(bodies(&r3["rooms"][&room]), ["carol again"], "{r3}");
    assert!(state_keys(&r3["rooms"][&room]).is_empty(), "{r3}");
}

#[tokio::test]
async fn timeline_limit_sets_limited_and_prev_batch_pages_back_with_messages() {
    // "`limited`: True if there are more events since the previous sync
    // than were included in the `timeline_events` field"; "`prev_batch`: A
    // token that can be passed as a start parameter to the
    // `/rooms/<room_id>/messages` API to retrieve earlier messages."
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = private_room(&s, &ann, None).await;
    for i in 1..=5 {
        assert_eq!(s.send_text(&ann, &room, &format!("m{i}")).await.0, 200);
    }
    let r = ss(
        &s,
        &ann,
        None,
        json!({ "lists": { "l": list([0, 0], 3, json!([])) } }),
    )
    .await;
    let entry = &r["rooms"][&room];
    assert_eq!(bodies(entry), ["m3", "m4", "m5"], "{r}");
    assert_eq!(entry["limited"], true);
    let prev = entry["prev_batch"].as_str().unwrap();
    let (status, page) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=2&from={}",
                enc(&room),
                enc(prev)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let older: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(older, ["m2", "m1"]);

    // A limit above what there is: not limited.
    let r = ss(
        &s,
        &ann,
        None,
        json!({ "lists": { "l": list([0, 0], 50, json!([])) } }),
    )
    .await;
    assert!(r["rooms"][&room]["limited"] != true, "{r}");
    assert_eq!(bodies(&r["rooms"][&room]).len(), 5);
}

#[tokio::test]
async fn incremental_pos_returns_only_rooms_that_changed() {
    // "A room is returned in the response if it matches at least one rule,
    // and either there is new data to return, or the room has not
    // previously been sent to the client."
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let a = private_room(&s, &ann, Some("A")).await;
    let b = private_room(&s, &ann, Some("B")).await;
    let body = json!({ "lists": { "l": list([0, 9], 5, json!([["m.room.name", ""]])) } });
    let r = ss(&s, &ann, None, body.clone()).await;
    assert_eq!(room_ids(&r), BTreeSet::from([a.clone(), b.clone()]));
    let idle = ss(&s, &ann, Some(&pos(&r)), body.clone()).await;
    assert!(room_ids(&idle).is_empty(), "{idle}");
    assert_eq!(s.send_text(&ann, &a, "news").await.0, 200);
    let r2 = ss(&s, &ann, Some(&pos(&idle)), body.clone()).await;
    assert_eq!(room_ids(&r2), BTreeSet::from([a.clone()]), "{r2}");
    let entry = &r2["rooms"][&a];
    assert_eq!(bodies(entry), ["news"]);
    // "The data returned in the response is only the data that has changed,
    // e.g. if the room name hasn't changed then the `name` field will only
    // be sent down the first sync with the room in it and not subsequently."
    assert!(
        entry.get("name").is_none() && entry.get("initial").is_none(),
        "{entry}"
    );
    assert!(state_keys(entry).is_empty());
    // "`num_live`: The number of timeline events which have 'just occurred'".
    assert_eq!(entry["num_live"], 1);
    // A renamed room sends its new name and the changed state.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&b)),
            &ann.token,
            json!({ "name": "B2" }),
        )
        .await;
    assert_eq!(status, 200);
    let r3 = ss(&s, &ann, Some(&pos(&r2)), body.clone()).await;
    assert_eq!(room_ids(&r3), BTreeSet::from([b.clone()]), "{r3}");
    assert_eq!(r3["rooms"][&b]["name"], "B2");
    assert_eq!(
        state_keys(&r3["rooms"][&b]),
        BTreeSet::from([("m.room.name".to_owned(), String::new())])
    );
    // Retrying with the same `pos` ("the client retries the request") gives
    // the same rooms again.
    let retry = ss(&s, &ann, Some(&pos(&r2)), body).await;
    assert_eq!(room_ids(&retry), BTreeSet::from([b.clone()]), "{retry}");
}

#[tokio::test]
async fn long_poll_wakes_on_a_new_message() {
    // "If no rooms have changes, the server will block waiting for a change
    // (aka long-polling, like `/v3/sync`)."
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob]).await;
    let body = json!({ "lists": { "l": list([0, 9], 5, json!([])) } });
    let r = ss(&s, &bob, None, body.clone()).await;
    let p = pos(&r);
    let url = format!("{}{SS}?timeout=20000&pos={}", s.url, enc(&p));
    let http = s.http.clone();
    let token = bob.token.clone();
    let waiting = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the long-poll answered with nothing new"
    );
    assert_eq!(s.send_text(&ann, &room, "wake up").await.0, 200);
    let (status, woke) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{woke}");
    assert_eq!(bodies(&woke["rooms"][&room]), ["wake up"], "{woke}");
}

#[tokio::test]
async fn room_subscriptions_return_rooms_outside_the_ranges_and_ignore_others() {
    // "A subscription is a rule that matches against a specified room ID";
    // "Rooms that a user subscribes to that they do not have permission to
    // see, or that does not exist, should be ignored by the server."
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let old = private_room(&s, &ann, Some("old")).await;
    let _new = private_room(&s, &ann, Some("new")).await;
    let bobs = private_room(&s, &bob, Some("bob's")).await;
    let r = ss(
        &s,
        &ann,
        None,
        json!({
            "lists": { "top": list([0, 0], 1, json!([])) },
            "room_subscriptions": {
                old.clone(): { "timeline_limit": 2, "required_state": [["m.room.create", ""]] },
                bobs.clone(): { "timeline_limit": 2, "required_state": [["*", "*"]] },
                "!nowhere:test.local": { "timeline_limit": 2, "required_state": [] }
            }
        }),
    )
    .await;
    let ids = room_ids(&r);
    assert!(ids.contains(&old), "{r}");
    assert!(
        !ids.contains(&bobs) && !ids.contains("!nowhere:test.local"),
        "{r}"
    );
    assert_eq!(ids.len(), 2, "{r}");
    assert_eq!(
        state_keys(&r["rooms"][&old]),
        BTreeSet::from([("m.room.create".to_owned(), String::new())])
    );
}

#[tokio::test]
async fn joined_history_is_not_leaked_to_a_later_joiner() {
    // "The server MUST NOT send any room information down that the user
    // does not have permission to see." With `history_visibility` `joined`,
    // a user sees only events from its join on.
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let room = s
        .create_room(
            &ann,
            json!({ "preset": "public_chat", "initial_state": [{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } }] }),
        )
        .await;
    assert_eq!(s.send_text(&ann, &room, "secret before bob").await.0, 200);
    assert_eq!(s.join(&bob, &room).await.0, 200);
    assert_eq!(s.send_text(&ann, &room, "after bob").await.0, 200);
    let r = ss(
        &s,
        &bob,
        None,
        json!({ "lists": { "l": list([0, 9], 20, json!([["m.room.member", "$LAZY"]])) },
                "room_subscriptions": { room.clone(): { "timeline_limit": 50, "required_state": [] } } }),
    )
    .await;
    let entry = &r["rooms"][&room];
    let text = entry.to_string();
    assert!(!text.contains("secret before bob"), "{entry}");
    assert_eq!(bodies(entry), ["after bob"], "{entry}");
}

#[tokio::test]
async fn invites_show_stripped_state() {
    // "For rooms the user has not been joined to the client also gets the
    // stripped state events. [...] Same as
    // `rooms.invite.$room_id.invite_state` for invites in `/v3/sync`."
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let room = private_room(&s, &ann, Some("secret club")).await;
    assert_eq!(s.send_text(&ann, &room, "members only").await.0, 200);
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &ann.token,
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200);
    let r = ss(
        &s,
        &bob,
        None,
        json!({ "lists": {
            "invites": { "ranges": [[0, 9]], "timeline_limit": 5, "required_state": [["*", "*"]], "filters": { "is_invite": true } },
            "joined": { "ranges": [[0, 9]], "timeline_limit": 5, "required_state": [], "filters": { "is_invite": false } }
        } }),
    )
    .await;
    assert_eq!(r["lists"]["invites"]["count"], 1, "{r}");
    assert_eq!(r["lists"]["joined"]["count"], 0, "{r}");
    let entry = &r["rooms"][&room];
    let state = entry["invite_state"].as_array().expect("invite_state");
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "secret club"));
    assert!(state.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "invite"));
    assert!(!entry.to_string().contains("members only"), "{entry}");
    assert!(entry.get("timeline").is_none(), "{entry}");
}

#[tokio::test]
async fn is_dm_is_encrypted_and_room_type_filters() {
    // "`is_dm`: Flag which only returns rooms present (or not) in the
    // `m.direct` entry in account data." "`is_encrypted`: Flag which only
    // returns rooms which have an `m.room.encryption` state event."
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let dm = s
        .create_room(
            &ann,
            json!({ "preset": "trusted_private_chat", "is_direct": true }),
        )
        .await;
    let enc_room = s
        .create_room(&ann, json!({ "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] }))
        .await;
    let plain = private_room(&s, &ann, None).await;
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                enc(&ann.user_id)
            ),
            &ann.token,
            json!({ bob.user_id.clone(): [dm.clone()] }),
        )
        .await;
    assert_eq!(status, 200);
    let with = |filters: Value| json!({ "lists": { "l": { "ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": filters } } });
    let r = ss(&s, &ann, None, with(json!({ "is_dm": true }))).await;
    assert_eq!(room_ids(&r), BTreeSet::from([dm.clone()]), "{r}");
    assert_eq!(r["rooms"][&dm]["is_dm"], true);
    let r = ss(&s, &ann, None, with(json!({ "is_dm": false }))).await;
    assert_eq!(
        room_ids(&r),
        BTreeSet::from([enc_room.clone(), plain.clone()]),
        "{r}"
    );
    let r = ss(&s, &ann, None, with(json!({ "is_encrypted": true }))).await;
    assert_eq!(room_ids(&r), BTreeSet::from([enc_room.clone()]), "{r}");

    // "`room_types`: If specified, only rooms where the `m.room.create`
    // event has a `type` matching one of the strings in this array will be
    // returned. [...] For rooms which do not have a room type, use `null`
    // to include them." "`not_room_types`: Same as `room_types` but
    // inverted."
    let space = s
        .create_room(&ann, json!({ "creation_content": { "type": "m.space" } }))
        .await;
    let r = ss(&s, &ann, None, with(json!({ "room_types": ["m.space"] }))).await;
    assert_eq!(room_ids(&r), BTreeSet::from([space.clone()]), "{r}");
    let r = ss(
        &s,
        &ann,
        None,
        with(json!({ "not_room_types": ["m.space"] })),
    )
    .await;
    assert_eq!(r["lists"]["l"]["count"], 3, "{r}");
    assert!(!room_ids(&r).contains(&space), "{r}");
    let r = ss(&s, &ann, None, with(json!({ "room_types": [null] }))).await;
    assert_eq!(r["lists"]["l"]["count"], 3, "{r}");
    let r = ss(
        &s,
        &ann,
        None,
        with(json!({ "room_types": ["m.space"], "not_room_types": ["m.space"] })),
    )
    .await;
    assert_eq!(r["lists"]["l"]["count"], 0, "{r}");
}

#[tokio::test]
async fn unknown_pos_is_m_unknown_pos() {
    // "A server may decide to 'expire' connections [...] This is done by
    // responding with a 400 HTTP status and an error code of `M_UNKNOWN_POS`."
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    for p in ["123456", "not-a-pos", ""] {
        let (status, r) = ss_raw(&s, &ann, Some(p), 0, json!({})).await;
        assert_eq!(
            (status, r["errcode"].as_str()),
            (400, Some("M_UNKNOWN_POS")),
            "{p:?}: {r}"
        );
    }
    // A `pos` of another connection (`conn_id`) is unknown on this one: "The
    // `conn_id` is scoped to that user and device."
    let r = ss(&s, &ann, None, json!({ "conn_id": "a" })).await;
    let (status, e) = ss_raw(&s, &ann, Some(&pos(&r)), 0, json!({ "conn_id": "b" })).await;
    assert_eq!(
        (status, e["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS"))
    );
    // Another device of the same user cannot use it either.
    let (st, login) = s
        .request("POST", "/_matrix/client/v3/login", None, Some(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "secret-password" })))
        .await;
    assert_eq!(st, 200, "{login}");
    let other = User {
        user_id: ann.user_id.clone(),
        token: login["access_token"].as_str().unwrap().into(),
        device_id: login["device_id"].as_str().unwrap().into(),
    };
    let (status, e) = ss_raw(&s, &other, Some(&pos(&r)), 0, json!({ "conn_id": "a" })).await;
    assert_eq!(
        (status, e["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS"))
    );
    // The right connection still works.
    ss(&s, &ann, Some(&pos(&r)), json!({ "conn_id": "a" })).await;
}

#[tokio::test]
async fn bad_requests_are_matrix_errors() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, r) = ss_raw(
        &s,
        &ann,
        None,
        0,
        json!({ "lists": { "l": { "ranges": [[5, 1]], "timeline_limit": 1 } } }),
    )
    .await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{r}"
    );
    let (status, r) = ss_raw(
        &s,
        &ann,
        None,
        0,
        json!({ "lists": { "l": { "ranges": "all", "timeline_limit": 1 } } }),
    )
    .await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{r}"
    );
    let lists: serde_json::Map<String, Value> = (0..101)
        .map(|i| {
            (
                format!("l{i}"),
                json!({ "ranges": [[0, 1]], "timeline_limit": 1 }),
            )
        })
        .collect();
    let (status, r) = ss_raw(&s, &ann, None, 0, json!({ "lists": lists })).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{r}"
    );
    let resp = s
        .http
        .post(format!("{}{SS}", s.url))
        .bearer_auth(&ann.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");
    let (status, r) = s.request("POST", SS, None, Some(json!({}))).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
}

#[tokio::test]
async fn to_device_extension_delivers_and_deletes_acknowledged_messages() {
    // MSC3885: "`since`: Give messages since this token only"; a message is
    // deleted once the client has used the `next_batch` after it.
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let (status, _) = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/txn1",
            &ann.token,
            json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "hello": "bob" } } } }),
        )
        .await;
    assert_eq!(status, 200);
    let ext = |since: Option<&str>| {
        let mut td = json!({ "enabled": true });
        if let Some(s) = since {
            td["since"] = json!(s);
        }
        json!({ "extensions": { "to_device": td } })
    };
    let r = ss(&s, &bob, None, ext(None)).await;
    let events = r["extensions"]["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{r}");
    assert_eq!(events[0]["content"]["hello"], "bob");
    assert_eq!(events[0]["sender"], ann.user_id.as_str());
    let next = r["extensions"]["to_device"]["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    // Acknowledged: not sent again, and gone even for a request without
    // `since`.
    let r2 = ss(&s, &bob, Some(&pos(&r)), ext(Some(&next))).await;
    assert!(
        r2["extensions"]["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{r2}"
    );
    let r3 = ss(&s, &bob, None, ext(None)).await;
    assert!(
        r3["extensions"]["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{r3}"
    );
}

#[tokio::test]
async fn e2ee_extension_counts_keys_and_reports_device_list_changes() {
    // MSC3884: the E2EE extension carries `device_lists`,
    // `device_one_time_keys_count` and `device_unused_fallback_key_types`.
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let _room = s.public_room_with(&ann, &[&bob]).await;
    let (status, r) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            &bob.token,
            json!({ "one_time_keys": { "signed_curve25519:AAAA": { "key": "k1" }, "signed_curve25519:AAAB": { "key": "k2" } },
                    "fallback_keys": { "signed_curve25519:FB": { "key": "fb", "fallback": true } } }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let body = json!({ "extensions": { "e2ee": { "enabled": true } } });
    let r = ss(&s, &bob, None, body.clone()).await;
    let e2ee = &r["extensions"]["e2ee"];
    assert_eq!(
        e2ee["device_one_time_keys_count"]["signed_curve25519"], 2,
        "{r}"
    );
    assert_eq!(
        e2ee["device_unused_fallback_key_types"],
        json!(["signed_curve25519"]),
        "{r}"
    );
    let pair =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), ann.device_id.clone()).unwrap();
    let device_keys = json!({ "device_keys": signed_device_keys(&ann, &pair) });
    let (status, r2) = s
        .post("/_matrix/client/v3/keys/upload", &ann.token, device_keys)
        .await;
    assert_eq!(status, 200, "{r2}");
    let r2 = ss(&s, &bob, Some(&pos(&r)), body).await;
    let changed = r2["extensions"]["e2ee"]["device_lists"]["changed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(changed.contains(&json!(ann.user_id)), "{r2}");
}

#[tokio::test]
async fn account_data_receipts_and_typing_extensions() {
    // The account data (global and per room), receipts and typing
    // extensions: each returns its data for the rooms in the lists.
    let s = TestServer::start().await;
    let (ann, bob, _) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob]).await;
    let (_, sent) = s.send_text(&ann, &room, "read me").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.global",
                enc(&bob.user_id)
            ),
            &bob.token,
            json!({ "g": 1 }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/org.example.room",
                enc(&bob.user_id),
                enc(&room)
            ),
            &bob.token,
            json!({ "r": 2 }),
        )
        .await;
    assert_eq!(status, 200);
    let body = json!({
        "lists": { "l": list([0, 9], 1, json!([])) },
        "extensions": { "account_data": { "enabled": true }, "receipts": { "enabled": true }, "typing": { "enabled": true } }
    });
    let r = ss(&s, &bob, None, body.clone()).await;
    let ad = &r["extensions"]["account_data"];
    assert!(
        ad["global"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "org.example.global" && e["content"]["g"] == 1),
        "{r}"
    );
    assert!(
        ad["global"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules"),
        "{r}"
    );
    assert_eq!(ad["rooms"][&room][0]["content"]["r"], 2, "{r}");

    // Incrementally: a receipt and a typing notification.
    let (status, _) = s
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&event_id)
            ),
            &ann.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc(&ann.user_id)
            ),
            &ann.token,
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(status, 200);
    let r2 = ss(&s, &bob, Some(&pos(&r)), body.clone()).await;
    let receipt = &r2["extensions"]["receipts"]["rooms"][&room];
    assert_eq!(receipt["type"], "m.receipt", "{r2}");
    assert!(
        receipt["content"][&event_id]["m.read"][&ann.user_id]["ts"].is_u64(),
        "{r2}"
    );
    let typing = &r2["extensions"]["typing"]["rooms"][&room];
    assert_eq!(typing["content"]["user_ids"], json!([ann.user_id]), "{r2}");
    // Nothing new next time: the global account data is not repeated.
    let r3 = ss(&s, &bob, Some(&pos(&r2)), body).await;
    assert!(
        r3["extensions"]["account_data"]["global"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{r3}"
    );
    assert!(
        r3["extensions"]["receipts"]["rooms"]
            .as_object()
            .is_none_or(|o| o.is_empty()),
        "{r3}"
    );
}

#[tokio::test]
async fn heroes_and_counts_for_an_unnamed_room() {
    // "`heroes`: A truncated list of users in the room that can be used to
    // calculate the room name. [...] Heroes are only included if the room
    // name is not set." "`joined_count`: The number of users with membership
    // of join, including the client's own user ID."
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob]).await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &ann.token,
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(status, 200);
    let r = ss(
        &s,
        &ann,
        None,
        json!({ "lists": { "l": list([0, 0], 1, json!([])) } }),
    )
    .await;
    let entry = &r["rooms"][&room];
    assert_eq!(entry["joined_count"], 2, "{entry}");
    assert_eq!(entry["invited_count"], 1, "{entry}");
    let heroes: Vec<&str> = entry["heroes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        heroes,
        [bob.user_id.as_str(), carol.user_id.as_str()],
        "{entry}"
    );
    assert!(entry.get("name").is_none());
    assert_eq!(entry["notification_count"], 0, "{entry}");
}

#[tokio::test]
async fn connections_per_device_are_bounded_and_evicted_state_is_unknown_pos() {
    // "Servers SHOULD limit the amount of data that they store per-user to
    // guard against resource consumption, e.g. limiting the number of
    // connections a device can have active." A connection whose state was
    // dropped answers `M_UNKNOWN_POS`, never a 500; the client starts over.
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let mut positions = Vec::new();
    for i in 0..11 {
        let r = ss(&s, &ann, None, json!({ "conn_id": format!("c{i}") })).await;
        positions.push(pos(&r));
    }
    // The least recently used connection is gone.
    let (status, e) = ss_raw(&s, &ann, Some(&positions[0]), 0, json!({ "conn_id": "c0" })).await;
    assert_eq!(
        (status, e["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS")),
        "{e}"
    );
    for (i, p) in positions.iter().enumerate().skip(1) {
        ss(&s, &ann, Some(p), json!({ "conn_id": format!("c{i}") })).await;
    }
    // Starting over works.
    ss(&s, &ann, None, json!({ "conn_id": "c0" })).await;
    // A `pos` the client moved on from is cleaned up: "Once a server has
    // seen a request with a given `pos`, the server may clean up any
    // per-connection state from before that `pos`."
    let r1 = ss(&s, &ann, None, json!({})).await;
    let r2 = ss(&s, &ann, Some(&pos(&r1)), json!({})).await;
    ss(&s, &ann, Some(&pos(&r2)), json!({})).await;
    let (status, e) = ss_raw(&s, &ann, Some(&pos(&r1)), 0, json!({})).await;
    assert_eq!(
        (status, e["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS")),
        "{e}"
    );
}
