//! Room History Visibility on every read path.
//!
//! Client-Server API, "Room History Visibility", server behaviour: "The rules
//! governing whether a user is allowed to see an event depend on the state of
//! the room *at that event*. 1. If the `history_visibility` was set to
//! `world_readable`, allow. 2. If the user's `membership` was `join`, allow.
//! 3. If `history_visibility` was set to `shared`, and the user joined the
//! room at any point after the event was sent, allow. 4. If the user's
//! `membership` was `invite`, and the `history_visibility` was set to
//! `invited`, allow. 5. Otherwise, deny."

mod common;
use common::federation::{public_room, server, signed, signed_with, InProcess};
use common::*;
use conifer_rooms::EventTemplate;
use serde_json::{json, Value};

fn visibility_state(v: &str) -> Value {
    json!({ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": v } })
}

async fn room_with(s: &TestServer, owner: &User, visibility: &str) -> String {
    s.create_room(
        owner,
        json!({ "preset": "public_chat", "initial_state": [visibility_state(visibility)] }),
    )
    .await
}

fn bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Every message body the user can reach by paging `/messages` back from
/// the end of the room to its start.
async fn all_messages(s: &TestServer, user: &User, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5",
            enc(room)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (status, page) = s.get(&path, &user.token).await;
        assert_eq!(status, 200, "{page}");
        out.extend(bodies(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

async fn send(s: &TestServer, user: &User, room: &str, text: &str) -> String {
    let (status, r) = s.send_text(user, room, text).await;
    assert_eq!(status, 200, "{r}");
    r["event_id"].as_str().unwrap().to_owned()
}

async fn set_visibility(s: &TestServer, user: &User, room: &str, v: &str) -> String {
    let (status, r) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility",
                enc(room)
            ),
            &user.token,
            json!({ "history_visibility": v }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    r["event_id"].as_str().unwrap().to_owned()
}

/// `joined`: "Events are accessible to newly joined members from the point
/// they joined the room onwards." A later member reads nothing earlier, by
/// any path: `/messages`, `/event`, `/context`, initial `/sync`,
/// `/relations` and search.
#[tokio::test]
async fn joined_history_is_hidden_from_later_members_on_every_path() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = room_with(&s, &ann, "joined").await;
    let secret = send(&s, &ann, &room, "secret one").await;
    send(&s, &ann, &room, "secret two").await;
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.reaction/r1",
                enc(&room)
            ),
            &ann.token,
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": secret, "key": "secret reaction" } }),
        )
        .await;
    assert_eq!(status, 200);

    assert_eq!(s.join(&bob, &room).await.0, 200);
    send(&s, &ann, &room, "after bob joined").await;

    assert_eq!(
        all_messages(&s, &bob, &room).await,
        vec!["after bob joined"],
        "bob pages back to the start and sees only what came after his join"
    );
    assert_eq!(
        all_messages(&s, &ann, &room).await,
        vec!["after bob joined", "secret two", "secret one"],
        "ann was joined throughout"
    );

    let r = enc(&room);
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&secret)),
            &bob.token,
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND"))
    );
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&secret)),
            &bob.token,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{r}/relations/{}", enc(&secret)),
            &bob.token,
        )
        .await;
    assert_eq!(status, 404);
    let (status, found) = s
        .post(
            "/_matrix/client/v3/search",
            &bob.token,
            json!({ "search_categories": { "room_events": { "search_term": "secret" } } }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        found["search_categories"]["room_events"]["results"],
        json!([]),
        "{found}"
    );

    // Bob's first sync: the room's state, but no earlier message.
    let sync = s.sync(&bob, None, 0).await;
    let timeline = timeline_bodies(&sync, &room);
    assert_eq!(timeline, vec!["after bob joined"], "{sync}");
    let events = &sync["rooms"]["join"][room.as_str()]["timeline"]["events"];
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()),
        "\"a user can always see m.room.member events which set their membership to join\""
    );

    // Ann's /context around her message still shows the reaction-free history.
    let (status, ctx) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&secret)),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ctx["event"]["content"]["body"], "secret one");
}

/// `invited`: "Events are accessible to newly joined members from the point
/// they were invited onwards."
#[tokio::test]
async fn invited_history_starts_at_the_invite() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = room_with(&s, &ann, "invited").await;
    send(&s, &ann, &room, "before the invite").await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &ann.token,
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200);
    send(&s, &ann, &room, "while bob is invited").await;
    assert_eq!(s.join(&bob, &room).await.0, 200);
    send(&s, &ann, &room, "after bob joined").await;
    assert_eq!(
        all_messages(&s, &bob, &room).await,
        vec!["after bob joined", "while bob is invited"]
    );
}

/// `shared`: "Previous events are always accessible to newly joined
/// members", and "After a user has left a room, they may see any events
/// which they were allowed to see before they left the room, but no events
/// received after they left."
#[tokio::test]
async fn shared_history_is_readable_after_joining_and_stops_at_the_leave() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = room_with(&s, &ann, "shared").await;
    send(&s, &ann, &room, "before bob").await;
    assert_eq!(s.join(&bob, &room).await.0, 200);
    send(&s, &ann, &room, "with bob").await;
    s.leave(&bob, &room).await;
    send(&s, &ann, &room, "after bob left").await;
    assert_eq!(
        all_messages(&s, &bob, &room).await,
        vec!["with bob", "before bob"]
    );
}

/// `world_readable`: "All events while this is the
/// `m.room.history_visibility` value may be shared by any participating
/// homeserver with anyone, regardless of whether they have ever joined the
/// room" — and once the room turns `joined`, non-members see nothing more,
/// except the change itself: "a user should be able to see
/// `m.room.history_visibility` events which change the `history_visibility`
/// from `world_readable` to `joined` ... even if that user was not a member".
#[tokio::test]
async fn world_readable_rooms_are_readable_without_joining() {
    let s = TestServer::start().await;
    let (ann, carol) = (s.register("ann").await, s.register("carol").await);
    let room = room_with(&s, &ann, "world_readable").await;
    let open = send(&s, &ann, &room, "for everyone").await;
    let r = enc(&room);

    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"),
            &carol.token,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page["chunk"]), vec!["for everyone"]);
    let (status, state) = s
        .get(&format!("/_matrix/client/v3/rooms/{r}/state"), &carol.token)
        .await;
    assert_eq!(status, 200);
    assert!(state
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.create"));
    let (status, ev) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&open)),
            &carol.token,
        )
        .await;
    assert_eq!(
        (status, ev["content"]["body"].as_str()),
        (200, Some("for everyone"))
    );
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&open)),
            &carol.token,
        )
        .await;
    assert_eq!(status, 200);

    let change = set_visibility(&s, &ann, &room, "joined").await;
    send(&s, &ann, &room, "members only").await;
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"),
            &carol.token,
        )
        .await;
    assert_eq!(status, 403, "the room is no longer world-readable: {page}");
    // Carol joins: the world-readable past stays readable, the change is
    // visible, what was sent while `joined` before her join is not.
    assert_eq!(s.join(&carol, &room).await.0, 200);
    let messages = all_messages(&s, &carol, &room).await;
    assert_eq!(messages, vec!["for everyone"]);
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&change)),
            &carol.token,
        )
        .await;
    assert_eq!(
        status, 200,
        "the change away from world_readable is visible"
    );
}

/// Without `world_readable`, a user who never joined reads nothing.
#[tokio::test]
async fn strangers_cannot_read_rooms_that_are_not_world_readable() {
    let s = TestServer::start().await;
    let (ann, carol) = (s.register("ann").await, s.register("carol").await);
    let room = room_with(&s, &ann, "shared").await;
    let id = send(&s, &ann, &room, "private").await;
    let r = enc(&room);
    for path in [
        format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"),
        format!("/_matrix/client/v3/rooms/{r}/state"),
        format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&id)),
        format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&id)),
    ] {
        let (status, body) = s.get(&path, &carol.token).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
}

/// Federation reads apply the same rule per server: a server whose users
/// were not in a `joined` room when an event was sent gets it redacted from
/// `/backfill`, `/event` and `/get_missing_events`.
#[tokio::test]
async fn servers_get_joined_history_redacted() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let ann = "@ann:one.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, None).await;
    let template = |kind: &str, key: Option<&str>, content: Value| EventTemplate {
        kind: kind.into(),
        state_key: key.map(str::to_owned),
        content,
        redacts: None,
    };
    one.hs
        .send_event(
            &room,
            ann,
            template(
                "m.room.history_visibility",
                Some(""),
                json!({ "history_visibility": "joined" }),
            ),
            None,
        )
        .await
        .unwrap();
    let mut ids = vec![];
    for body in ["before two joined", "also before"] {
        let pdu = one
            .hs
            .send_event(
                &room,
                ann,
                template("m.room.message", None, json!({ "body": body })),
                None,
            )
            .await
            .unwrap();
        ids.push(pdu.event_id.to_string());
    }
    two.hs
        .join_remote(&room, "@bob:two.test", &["one.test".into()])
        .await
        .unwrap();
    let after = one
        .hs
        .send_event(
            &room,
            ann,
            template("m.room.message", None, json!({ "body": "after" })),
            None,
        )
        .await
        .unwrap()
        .event_id
        .to_string();
    let r = enc(&room);

    let (status, ev) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!("/_matrix/federation/v1/event/{}", enc(&ids[0])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ev["pdus"][0]["content"], json!({}), "redacted: {ev}");
    assert_eq!(ev["pdus"][0]["type"], "m.room.message");

    let (_, back) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/backfill/{r}?v={}&limit=10",
            enc(&after)
        ),
    )
    .await;
    let pdus = back["pdus"].as_array().unwrap();
    let shown: Vec<&str> = pdus
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(shown, vec!["after"], "{back}");
    assert!(
        pdus.iter()
            .filter(|e| e["type"] == "m.room.message")
            .count()
            >= 3,
        "hidden events are still sent, redacted"
    );

    let (_, gme) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "POST",
        &format!("/_matrix/federation/v1/get_missing_events/{r}"),
        Some(json!({ "earliest_events": [], "latest_events": [after], "limit": 10 })),
    )
    .await;
    assert!(
        gme["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["content"].get("body").is_none()),
        "{gme}"
    );
}

/// `POST /account/deactivate` with `erase: true`: "any users (or servers)
/// which join the room after the erasure request are served redacted copies
/// of the events sent by this account. Users which had visibility on those
/// events prior to the erasure are still able to see unredacted copies."
#[tokio::test]
async fn an_erased_users_events_are_redacted_for_later_joiners_only() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = room_with(&s, &bob, "shared").await;
    assert_eq!(s.join(&ann, &room).await.0, 200);
    let id = send(&s, &ann, &room, "words to forget").await;

    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/deactivate",
            &ann.token,
            json!({ "erase": true, "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "secret-password" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.join(&carol, &room).await.0, 200);

    let r = enc(&room);
    let path = format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&id));
    let (_, for_bob) = s.get(&path, &bob.token).await;
    assert_eq!(
        for_bob["content"]["body"], "words to forget",
        "bob saw it before"
    );
    let (status, for_carol) = s.get(&path, &carol.token).await;
    assert_eq!(status, 200);
    assert_eq!(for_carol["content"], json!({}), "{for_carol}");
    assert!(!all_messages(&s, &carol, &room)
        .await
        .contains(&"words to forget".to_owned()));
    assert!(all_messages(&s, &bob, &room)
        .await
        .contains(&"words to forget".to_owned()));
    let sync = s.sync(&carol, None, 0).await;
    assert!(!sync.to_string().contains("words to forget"), "{sync}");
    let (_, found) = s
        .post(
            "/_matrix/client/v3/search",
            &carol.token,
            json!({ "search_categories": { "room_events": { "search_term": "forget" } } }),
        )
        .await;
    assert_eq!(
        found["search_categories"]["room_events"]["results"],
        json!([])
    );
}
