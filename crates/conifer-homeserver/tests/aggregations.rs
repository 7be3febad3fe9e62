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
