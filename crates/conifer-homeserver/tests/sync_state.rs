//! `/sync` room `state` against `timeline`.
//!
//! Client-Server API, `GET /sync`, Joined Room `state`: "Updates to the
//! state, between the time indicated by the `since` parameter, and the
//! start of the `timeline` (or all state up to the start of the `timeline`,
//! if `since` is not given, or `full_state` is true)." So no event is in
//! both, and the state is what held just before the first timeline event.
//! Lazy-loading members ("Lazy-loading room members"): "the server will
//! only return membership events for users who are 'relevant' to the
//! timeline, rather than returning all membership events."

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;

fn ids(events: &Value) -> HashSet<String> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

fn room_of<'a>(sync: &'a Value, room: &str) -> &'a Value {
    &sync["rooms"]["join"][room]
}

async fn sync_with(
    s: &TestServer,
    user: &User,
    since: Option<&str>,
    filter: Value,
    full: bool,
) -> Value {
    let mut path = format!(
        "/_matrix/client/v3/sync?timeout=0&filter={}",
        enc(&filter.to_string())
    );
    if let Some(t) = since {
        path.push_str(&format!("&since={}", enc(t)));
    }
    if full {
        path.push_str("&full_state=true");
    }
    let (status, body) = s.get(&path, &user.token).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn assert_disjoint(sync: &Value, room: &str) {
    let r = room_of(sync, room);
    let t = ids(&r["timeline"]["events"]);
    let st = ids(&r["state"]["events"]);
    assert!(t.is_disjoint(&st), "state overlaps the timeline: {r}");
}

async fn set_topic(s: &TestServer, user: &User, room: &str, topic: &str) {
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", enc(room)),
            &user.token,
            json!({ "topic": topic }),
        )
        .await;
    assert_eq!(status, 200);
}

fn state_topic(sync: &Value, room: &str) -> Option<String> {
    room_of(sync, room)["state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["type"] == "m.room.topic")
        .and_then(|e| e["content"]["topic"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn state_is_what_held_before_the_timeline_and_never_overlaps_it() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(s.join(&bob, &room).await.0, 200);
    set_topic(&s, &ann, &room, "one").await;
    for i in 0..5 {
        s.send_text(&ann, &room, &format!("a{i}")).await;
    }
    set_topic(&s, &ann, &room, "two").await;
    s.send_text(&bob, &room, "b").await;

    // Initial sync, timeline of 2: the second topic change and Bob's
    // message; the state holds the first topic.
    let limit2 = json!({ "room": { "timeline": { "limit": 2 } } });
    let first = sync_with(&s, &ann, None, limit2.clone(), false).await;
    assert_disjoint(&first, &room);
    assert_eq!(state_topic(&first, &room).as_deref(), Some("one"));
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // A gappy incremental sync: the topic change in the gap is state, the
    // one in the timeline is not.
    set_topic(&s, &ann, &room, "three").await;
    for i in 0..5 {
        s.send_text(&ann, &room, &format!("c{i}")).await;
    }
    set_topic(&s, &ann, &room, "four").await;
    s.send_text(&ann, &room, "d").await;
    let gappy = sync_with(&s, &ann, Some(&since), limit2.clone(), false).await;
    assert_eq!(room_of(&gappy, &room)["timeline"]["limited"], true);
    assert_disjoint(&gappy, &room);
    assert_eq!(
        state_topic(&gappy, &room).as_deref(),
        Some("three"),
        "{gappy}"
    );

    // full_state: all state up to the timeline's start, still disjoint.
    let full = sync_with(&s, &ann, Some(&since), limit2.clone(), true).await;
    assert_disjoint(&full, &room);
    assert_eq!(state_topic(&full, &room).as_deref(), Some("three"));
    assert!(room_of(&full, &room)["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.create"));
}

#[tokio::test]
async fn lazy_loading_sends_the_members_of_the_timeline_senders() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob, &carol]).await;
    for i in 0..5 {
        s.send_text(&ann, &room, &format!("a{i}")).await;
    }
    s.send_text(&bob, &room, "from bob").await;
    let lazy =
        json!({ "room": { "timeline": { "limit": 2 }, "state": { "lazy_load_members": true } } });
    let first = sync_with(&s, &ann, None, lazy.clone(), false).await;
    assert_disjoint(&first, &room);
    let members: HashSet<String> = room_of(&first, &room)["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        members.contains(&bob.user_id) && members.contains(&ann.user_id),
        "{first}"
    );
    assert!(
        !members.contains(&carol.user_id),
        "carol sent nothing: {first}"
    );
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Carol speaks for the first time in a later, not gappy, sync: her
    // member event comes with it.
    s.send_text(&carol, &room, "from carol").await;
    let next = sync_with(&s, &ann, Some(&since), lazy, false).await;
    assert_disjoint(&next, &room);
    let members: HashSet<String> = room_of(&next, &room)["state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(members.contains(&carol.user_id), "{next}");

    // Carol again: the device has her membership already, so it is not
    // sent again (include_redundant_members is false by default).
    let since = next["next_batch"].as_str().unwrap().to_owned();
    s.send_text(&carol, &room, "carol again").await;
    let again = sync_with(&s, &ann, Some(&since), lazy_filter(false), false).await;
    assert_eq!(timeline_bodies(&again, &room), vec!["carol again"]);
    assert!(
        room_of(&again, &room)["state"]["events"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{again}"
    );
    // Unless the filter asks for redundant members.
    let since = again["next_batch"].as_str().unwrap().to_owned();
    s.send_text(&carol, &room, "and again").await;
    let redundant = sync_with(&s, &ann, Some(&since), lazy_filter(true), false).await;
    assert!(room_of(&redundant, &room)["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["state_key"] == carol.user_id.as_str()));
}

fn lazy_filter(redundant: bool) -> Value {
    json!({ "room": { "timeline": { "limit": 2 }, "state": { "lazy_load_members": true, "include_redundant_members": redundant } } })
}

/// `GET /rooms/{roomId}/context/{eventId}` with a lazy-loading filter:
/// "the server will only return membership events for users who are
/// 'relevant' to the timeline" — here, the senders in the window — while
/// the rest of "the state of the room at the last event returned" comes as
/// usual.
#[tokio::test]
async fn context_with_lazy_loading_returns_only_the_window_senders() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s.public_room_with(&ann, &[&bob, &carol]).await;
    s.send_text(&carol, &room, "early").await;
    for i in 0..5 {
        s.send_text(&ann, &room, &format!("a{i}")).await;
    }
    let mid = s.send_text(&bob, &room, "middle").await.1["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..5 {
        s.send_text(&ann, &room, &format!("b{i}")).await;
    }
    let filter = json!({ "lazy_load_members": true });
    let (status, ctx) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/context/{}?limit=4&filter={}",
                enc(&room),
                enc(&mid),
                enc(&filter.to_string())
            ),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200, "{ctx}");
    let state = ctx["state"].as_array().unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create"),
        "other state is returned as usual"
    );
    let members: HashSet<String> = state
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    let expected: HashSet<String> = [ann.user_id.clone(), bob.user_id.clone()].into();
    assert_eq!(members, expected);
}
