//! Aggregations bundled with events.
//!
//! Client-Server API, "Aggregations of child events": "some child events
//! can be 'aggregated' and 'bundled' with the parent event when it is
//! served to clients"; for `m.replace`, the bundle is "the most recent
//! replacement event (as determined by `origin_server_ts`)"; for
//! `m.thread`: "`latest_event` ... `count` ... `current_user_participated`".

mod common;
use common::*;
use serde_json::{json, Value};

async fn put_event(s: &TestServer, user: &User, room: &str, kind: &str, content: Value) -> String {
    let (status, r) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/{kind}/t{}",
                enc(room),
                rand_suffix()
            ),
            &user.token,
            content,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    r["event_id"].as_str().unwrap().to_owned()
}

fn find<'a>(events: &'a Value, id: &str) -> &'a Value {
    events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {events}"))
}

#[tokio::test]
async fn edits_threads_and_references_are_bundled_everywhere_the_event_is_served() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob, &carol]).await;
    let root = put_event(
        &s,
        &ann,
        &room,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "original" }),
    )
    .await;
    for body in ["edit one", "edit two"] {
        // Distinct origin_server_ts: the order is by timestamp first.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        put_event(
            &s,
            &ann,
            &room,
            "m.room.message",
            json!({
                "msgtype": "m.text", "body": format!("* {body}"),
                "m.new_content": { "msgtype": "m.text", "body": body },
                "m.relates_to": { "rel_type": "m.replace", "event_id": root },
            }),
        )
        .await;
    }
    // Bob may not edit Ann's message: not a valid replacement.
    put_event(
        &s,
        &bob,
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "* hijack",
            "m.new_content": { "msgtype": "m.text", "body": "hijack" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": root },
        }),
    )
    .await;
    for body in ["reply one", "reply two"] {
        put_event(
            &s,
            &bob,
            &room,
            "m.room.message",
            json!({
                "msgtype": "m.text", "body": body,
                "m.relates_to": { "rel_type": "m.thread", "event_id": root },
            }),
        )
        .await;
    }
    let reference = put_event(
        &s,
        &carol,
        &room,
        "m.room.message",
        json!({
            "msgtype": "m.text", "body": "see above",
            "m.relates_to": { "rel_type": "m.reference", "event_id": root },
        }),
    )
    .await;

    let check = |e: &Value, viewer_participated: bool| {
        let rel = &e["unsigned"]["m.relations"];
        assert_eq!(
            rel["m.replace"]["content"]["m.new_content"]["body"], "edit two",
            "{e}"
        );
        assert_eq!(rel["m.thread"]["count"], 2, "{e}");
        assert_eq!(
            rel["m.thread"]["latest_event"]["content"]["body"],
            "reply two"
        );
        assert_eq!(
            rel["m.thread"]["current_user_participated"],
            viewer_participated
        );
        assert_eq!(
            rel["m.reference"]["chunk"],
            json!([{ "event_id": reference }])
        );
        assert_eq!(
            e["content"]["body"], "original",
            "the original content stays"
        );
    };
    let r = enc(&room);
    let (_, ev) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&root)),
            &bob.token,
        )
        .await;
    check(&ev, true);
    let (_, ev) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{}", enc(&root)),
            &carol.token,
        )
        .await;
    check(&ev, false);
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=50"),
            &carol.token,
        )
        .await;
    check(find(&page["chunk"], &root), false);
    let (_, ctx) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/context/{}", enc(&root)),
            &ann.token,
        )
        .await;
    check(&ctx["event"], true);
    let sync = s
        .get(
            &format!(
                "/_matrix/client/v3/sync?filter={}",
                enc(&json!({ "room": { "timeline": { "limit": 50 } } }).to_string())
            ),
            &bob.token,
        )
        .await
        .1;
    check(
        find(
            &sync["rooms"]["join"][room.as_str()]["timeline"]["events"],
            &root,
        ),
        true,
    );
}

/// Threading, `GET /v1/rooms/{roomId}/threads`: "This API is used to
/// paginate through the list of the thread roots in a given room"; the
/// chunk holds "The thread roots, ordered by the `latest_event` in each
/// event's aggregated children. All events returned include bundled
/// aggregations"; `include=participated` keeps the threads "the user has
/// participated in" (sent the root or a reply); without `from`, "the
/// server starts paginating from the most recent event visible to the user
/// (as per history visibility rules)".
#[tokio::test]
async fn threads_lists_roots_by_latest_reply_with_participation_and_visibility() {
    let s = TestServer::start().await;
    let (ann, bob, cat) = s.three_users().await;
    let room = s
        .create_room(
            &ann,
            json!({ "preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "joined" } }] }),
        )
        .await;
    s.join(&bob, &room).await;
    let reply = |root: &str, body: &str| {
        json!({ "msgtype": "m.text", "body": body,
                "m.relates_to": { "rel_type": "m.thread", "event_id": root } })
    };
    let text = |body: &str| json!({ "msgtype": "m.text", "body": body });
    let a = put_event(&s, &ann, &room, "m.room.message", text("root a")).await;
    let b = put_event(&s, &bob, &room, "m.room.message", text("root b")).await;
    let c = put_event(&s, &ann, &room, "m.room.message", text("root c")).await;
    put_event(&s, &bob, &room, "m.room.message", reply(&a, "a1")).await;
    put_event(&s, &ann, &room, "m.room.message", reply(&b, "b1")).await;
    put_event(&s, &bob, &room, "m.room.message", reply(&c, "c1")).await;
    put_event(&s, &bob, &room, "m.room.message", reply(&a, "a2")).await;
    // A plain message is no thread.
    put_event(&s, &ann, &room, "m.room.message", text("no thread")).await;

    let path = format!("/_matrix/client/v1/rooms/{}/threads", enc(&room));
    let ids = |r: &Value| -> Vec<String> {
        r["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = s.get(&path, &ann.token).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), [a.clone(), c.clone(), b.clone()], "{all}");
    let summary = &find(&all["chunk"], &a)["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2, "{all}");
    assert_eq!(summary["latest_event"]["content"]["body"], "a2");
    assert!(all.get("next_batch").is_none(), "{all}");

    // Pages of one.
    let (_, first) = s.get(&format!("{path}?limit=1"), &ann.token).await;
    assert_eq!(ids(&first), [a.as_str()]);
    let token = first["next_batch"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = s
        .get(&format!("{path}?limit=2&from={token}"), &ann.token)
        .await;
    assert_eq!(ids(&second), [c.clone(), b.clone()], "{second}");

    // Ann started a and c and replied in b: all three; bob replied in a and
    // c and started b: all three; for a participant filter to matter, cat
    // (who joins later and sees nothing before her join) has none.
    let (_, mine) = s
        .get(&format!("{path}?include=participated"), &ann.token)
        .await;
    assert_eq!(ids(&mine).len(), 3, "{mine}");
    let d = put_event(&s, &bob, &room, "m.room.message", text("root d")).await;
    put_event(&s, &bob, &room, "m.room.message", reply(&d, "d1")).await;
    let (_, mine) = s
        .get(&format!("{path}?include=participated"), &ann.token)
        .await;
    assert!(!ids(&mine).contains(&d), "ann took no part in d: {mine}");
    let (_, all) = s.get(&path, &ann.token).await;
    assert_eq!(ids(&all)[0], d, "{all}");

    s.join(&cat, &room).await;
    let (status, cats) = s.get(&path, &cat.token).await;
    assert_eq!(status, 200, "{cats}");
    assert!(
        ids(&cats).is_empty(),
        "joined visibility hides earlier roots: {cats}"
    );
    let e = put_event(&s, &cat, &room, "m.room.message", text("root e")).await;
    put_event(&s, &ann, &room, "m.room.message", reply(&e, "e1")).await;
    let (_, cats) = s
        .get(&format!("{path}?include=participated"), &cat.token)
        .await;
    assert_eq!(ids(&cats), [e.as_str()], "{cats}");

    // Strangers and bad parameters.
    let dan = s.register("dan").await;
    assert_eq!(s.get(&path, &dan.token).await.0, 403);
    let (status, bad) = s.get(&format!("{path}?include=some"), &ann.token).await;
    assert_eq!(
        (status, bad["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
}
