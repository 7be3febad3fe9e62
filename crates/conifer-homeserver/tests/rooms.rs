//! Rooms: creation, membership, sending, state, redaction, history.

mod common;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn create_join_send_read_back() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "name": "Pines", "topic": "trees", "preset": "public_chat", "room_alias_name": "pines" }))
        .await;
    let (_, alias) = s
        .request(
            "GET",
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc(&format!("#pines:{SERVER}"))
            ),
            None,
            None,
        )
        .await;
    assert_eq!(alias["room_id"], room.as_str());
    // Join by alias, then both talk.
    let (status, _) = s
        .post(
            &format!(
                "/_matrix/client/v3/join/{}",
                enc(&format!("#pines:{SERVER}"))
            ),
            &bob.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.send_text(&bob, &room, "hello").await.0, 200);
    let (_, name) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
            &bob.token,
        )
        .await;
    assert_eq!(name["name"], "Pines");
    let (_, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            &ann.token,
        )
        .await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 2);
    let (_, rooms) = s.get("/_matrix/client/v3/joined_rooms", &bob.token).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));
}

#[tokio::test]
async fn transaction_ids_make_sends_idempotent() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/same-txn",
        enc(&room)
    );
    let (_, a) = s
        .put(
            &path,
            &ann.token,
            json!({ "msgtype": "m.text", "body": "once" }),
        )
        .await;
    let (_, b) = s
        .put(
            &path,
            &ann.token,
            json!({ "msgtype": "m.text", "body": "once" }),
        )
        .await;
    assert_eq!(a["event_id"], b["event_id"]);
    let (_, msgs) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(&room)
            ),
            &ann.token,
        )
        .await;
    let count = msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["content"]["body"] == "once")
        .count();
    assert_eq!(count, 1);
    // The sending device sees its transaction ID.
    let (_, ev) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(a["event_id"].as_str().unwrap())
            ),
            &ann.token,
        )
        .await;
    assert_eq!(ev["unsigned"]["transaction_id"], "same-txn");
}

#[tokio::test]
async fn private_rooms_need_invites_and_bans_stick() {
    let s = TestServer::start().await;
    let (ann, bob, cat) = (
        s.register("ann").await,
        s.register("bob").await,
        s.register("cat").await,
    );
    let room = s
        .create_room(&ann, json!({ "preset": "private_chat" }))
        .await;
    let (status, body) = s.join(&bob, &room).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let r = enc(&room);
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            &ann.token,
            json!({ "user_id": bob.user_id })
        )
        .await
        .0,
        200
    );
    // An invitee cannot talk before joining.
    assert_eq!(s.send_text(&bob, &room, "early").await.0, 403);
    assert_eq!(s.join(&bob, &room).await.0, 200);
    assert_eq!(s.send_text(&bob, &room, "in").await.0, 200);
    // Bob (power 0) cannot kick or ban.
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/ban"),
            &bob.token,
            json!({ "user_id": ann.user_id })
        )
        .await
        .0,
        403
    );
    // Ann bans Bob; he cannot rejoin even when invited, until unbanned.
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/ban"),
            &ann.token,
            json!({ "user_id": bob.user_id, "reason": "spam" })
        )
        .await
        .0,
        200
    );
    assert_eq!(s.send_text(&bob, &room, "still here?").await.0, 403);
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            &ann.token,
            json!({ "user_id": bob.user_id })
        )
        .await
        .0,
        403
    );
    assert_eq!(s.join(&bob, &room).await.0, 403);
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/unban"),
            &ann.token,
            json!({ "user_id": bob.user_id })
        )
        .await
        .0,
        200
    );
    s.post(
        &format!("/_matrix/client/v3/rooms/{r}/invite"),
        &ann.token,
        json!({ "user_id": bob.user_id }),
    )
    .await;
    assert_eq!(s.join(&bob, &room).await.0, 200);
    // Kick, leave, forget.
    s.post(
        &format!("/_matrix/client/v3/rooms/{r}/invite"),
        &ann.token,
        json!({ "user_id": cat.user_id }),
    )
    .await;
    s.join(&cat, &room).await;
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            &ann.token,
            json!({ "user_id": cat.user_id })
        )
        .await
        .0,
        200
    );
    assert_eq!(s.send_text(&cat, &room, "kicked").await.0, 403);
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/forget"),
            &cat.token,
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/leave"),
            &bob.token,
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{r}/forget"),
            &ann.token,
            json!({})
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn knocking_on_a_knock_room() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "room_version": "10", "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }] }))
        .await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/knock/{}", enc(&room)),
            &bob.token,
            json!({ "reason": "let me in" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, m) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/members?membership=knock",
                enc(&room)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(m["chunk"][0]["state_key"], bob.user_id.as_str());
}

#[tokio::test]
async fn state_redaction_event_context_and_messages() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({ "room_version": "11" })).await;
    let r = enc(&room);
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/state/org.example.thing/key1"),
            &ann.token,
            json!({ "n": 1 }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/state/org.example.thing/key1"),
            &ann.token,
        )
        .await;
    assert_eq!(v["n"], 1);
    let mut ids = vec![];
    for i in 0..25 {
        let (_, e) = s.send_text(&ann, &room, &format!("m{i}")).await;
        ids.push(e["event_id"].as_str().unwrap().to_owned());
    }
    // Redaction strips the content and says why.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/redact/{}/rd1", enc(&ids[3])),
            &ann.token,
            json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, ev) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&ids[3])),
            &ann.token,
        )
        .await;
    assert_eq!(ev["content"], json!({}));
    assert_eq!(
        ev["unsigned"]["redacted_because"]["content"]["reason"],
        "oops"
    );

    // Backwards pagination in pages of 10 sees every message once, newest first.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=10");
        if let Some(f) = &from {
            path.push_str(&format!("&from={f}"));
        }
        let (_, page) = s.get(&path, &ann.token).await;
        for e in page["chunk"].as_array().unwrap() {
            if e["type"] == "m.room.message" {
                seen.push(e["event_id"].as_str().unwrap().to_owned());
            }
        }
        match page["end"].as_str() {
            Some(e) => from = Some(e.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    // Forwards from the start returns the creation events first.
    let (_, fwd) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=f&limit=1"),
            &ann.token,
        )
        .await;
    assert_eq!(fwd["chunk"][0]["type"], "m.room.create");
    // Filters by type.
    let filter = enc(&json!({ "types": ["m.room.member"] }).to_string());
    let (_, only) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=100&filter={filter}"),
            &ann.token,
        )
        .await;
    assert!(only["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "m.room.member"));
    // Context around an event.
    let (_, ctx) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{r}/context/{}?limit=4",
                enc(&ids[10])
            ),
            &ann.token,
        )
        .await;
    assert_eq!(ctx["event"]["content"]["body"], "m10");
    assert_eq!(ctx["events_before"][0]["content"]["body"], "m9");
    assert_eq!(ctx["events_after"][0]["content"]["body"], "m11");
    assert!(ctx["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e: &Value| e["type"] == "m.room.create"));
}

#[tokio::test]
async fn room_version_12_and_every_supported_version_work() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    for v in ["6", "7", "8", "9", "10", "11", "12"] {
        let room = s.create_room(&ann, json!({ "room_version": v })).await;
        assert_eq!(
            s.send_text(&ann, &room, "hi").await.0,
            200,
            "room version {v}"
        );
        let (_, create) = s
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.create",
                    enc(&room)
                ),
                &ann.token,
            )
            .await;
        assert_eq!(create["room_version"], v);
        if v == "12" {
            assert!(
                !room.contains(':'),
                "v12 room IDs have no server part: {room}"
            );
        }
    }
    let (status, body) = s
        .post(
            "/_matrix/client/v3/createRoom",
            &ann.token,
            json!({ "room_version": "5" }),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_UNSUPPORTED_ROOM_VERSION"))
    );
}
