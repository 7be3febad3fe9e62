//! The checks on receipt of a PDU between two real servers whose traffic the
//! test delivers by hand (no sender task runs): missing parents fetched with
//! `get_missing_events`, an event allowed by the state before it but not by
//! the current state soft-failed, and concurrent state changes on both
//! servers resolved to the same state on each.

mod common;
use common::federation::*;
use conifer_homeserver::Homeserver;
use conifer_rooms::EventTemplate;
use conifer_store::{RoomStore, Store};
use serde_json::{json, Value};

const ALICE: &str = "@alice:a.test";
const BOB: &str = "@bob:b.test";

/// Room `room` on A with Bob of B joined through A.
async fn setup() -> (InProcess, Server, Server, String) {
    let net = InProcess::default();
    let a = server("a.test", "a", 1, &net);
    let b = server("b.test", "b", 2, &net);
    let room = public_room(&a.hs, ALICE, None).await;
    b.hs.join_remote(&room, BOB, &["a.test".into()])
        .await
        .unwrap();
    (net, a, b, room)
}

fn template(kind: &str, state_key: Option<&str>, content: Value) -> EventTemplate {
    EventTemplate {
        kind: kind.into(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: None,
    }
}

fn text(body: &str) -> EventTemplate {
    template(
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": body }),
    )
}

/// PDUs `from` has queued for `to` (and forgets them, as if sent).
fn take_queued(from: &Homeserver, to: &str) -> Vec<Value> {
    let items = from.store.outbox_peek(to, 1000).unwrap();
    from.store
        .outbox_ack(&items.iter().map(|i| i.id).collect::<Vec<_>>())
        .unwrap();
    items
        .into_iter()
        .filter(|i| i.is_pdu)
        .map(|i| i.json)
        .collect()
}

/// Delivers `pdus` from `from` to `to`'s `/send`; returns the per-PDU results.
async fn deliver(net: &InProcess, from: &Homeserver, to: &str, pdus: Vec<Value>) -> Value {
    let body = json!({ "origin": from.server_name.as_str(), "origin_server_ts": 1, "pdus": pdus });
    let uri = format!("/_matrix/federation/v1/send/{}", common::rand_suffix());
    let (status, r) = signed_with(net, &from.key, to, "PUT", &uri, Some(body)).await;
    assert_eq!(status, 200, "{r}");
    r["pdus"].clone()
}

/// Every PDU of a `/send` answer was accepted.
fn assert_accepted(result: &Value) {
    assert!(
        result
            .as_object()
            .unwrap()
            .values()
            .all(|v| v.get("error").is_none()),
        "{result}"
    );
}

fn timeline_bodies(hs: &Homeserver, room: &str) -> Vec<String> {
    let mut events = hs
        .store
        .room_events(room, 0, u64::MAX >> 1, false, 1000)
        .unwrap();
    events.retain(|e| e.value()["type"] == "m.room.message");
    events
        .iter()
        .map(|e| e.value()["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

fn topic(hs: &Homeserver, room: &str) -> String {
    let id =
        hs.store.current_state(room).unwrap()[&("m.room.topic".to_owned(), String::new())].clone();
    hs.store.event(&id).unwrap().unwrap().value()["content"]["topic"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn missing_parents_are_fetched_with_get_missing_events() {
    let (net, a, b, room) = setup().await;
    take_queued(&a.hs, "b.test");
    for i in 0..5 {
        a.hs.send_event(&room, ALICE, text(&format!("m{i}")), None)
            .await
            .unwrap();
    }
    let queued = take_queued(&a.hs, "b.test");
    assert_eq!(queued.len(), 5);
    // Only the newest reaches B; its four parents are unknown there.
    let result = deliver(&net, &a.hs, "b.test", vec![queued[4].clone()]).await;
    assert_accepted(&result);
    assert_eq!(
        timeline_bodies(&b.hs, &room),
        ["m0", "m1", "m2", "m3", "m4"]
    );
}

#[tokio::test]
async fn an_event_the_current_state_forbids_is_soft_failed() {
    let (net, a, b, room) = setup().await;
    take_queued(&a.hs, "b.test");
    // B has not heard of the ban yet when Bob speaks.
    a.hs.send_event(
        &room,
        ALICE,
        template("m.room.member", Some(BOB), json!({ "membership": "ban" })),
        None,
    )
    .await
    .unwrap();
    b.hs.send_event(&room, BOB, text("said before hearing of the ban"), None)
        .await
        .unwrap();
    let late = take_queued(&b.hs, "a.test");
    let extremities_before = a.hs.store.forward_extremities(&room).unwrap();
    let result = deliver(&net, &b.hs, "a.test", late).await;
    // Accepted (its own history allows it), but kept out of the timeline.
    assert_accepted(&result);
    assert!(timeline_bodies(&a.hs, &room).is_empty());
    assert_eq!(
        a.hs.store.forward_extremities(&room).unwrap(),
        extremities_before
    );
    assert_eq!(a.hs.membership(&room, BOB).unwrap().as_deref(), Some("ban"));
}

#[tokio::test]
async fn concurrent_state_changes_resolve_to_the_same_state_on_both_servers() {
    let (net, a, b, room) = setup().await;
    take_queued(&a.hs, "b.test");
    // Alice lets Bob change the topic, and B learns of it.
    a.hs.send_event(
        &room,
        ALICE,
        template(
            "m.room.power_levels",
            Some(""),
            json!({
                "users": { ALICE: 100, BOB: 50 }, "state_default": 50, "events_default": 0,
            }),
        ),
        None,
    )
    .await
    .unwrap();
    let pl = take_queued(&a.hs, "b.test");
    deliver(&net, &a.hs, "b.test", pl).await;
    // Now both change the topic at once: two forks.
    a.hs.send_event(
        &room,
        ALICE,
        template("m.room.topic", Some(""), json!({ "topic": "alice's" })),
        None,
    )
    .await
    .unwrap();
    b.hs.send_event(
        &room,
        BOB,
        template("m.room.topic", Some(""), json!({ "topic": "bob's" })),
        None,
    )
    .await
    .unwrap();
    let from_a = take_queued(&a.hs, "b.test");
    let from_b = take_queued(&b.hs, "a.test");
    for r in [
        deliver(&net, &a.hs, "b.test", from_a).await,
        deliver(&net, &b.hs, "a.test", from_b).await,
    ] {
        assert_accepted(&r);
    }
    let (ta, tb) = (topic(&a.hs, &room), topic(&b.hs, &room));
    assert_eq!(ta, tb, "the servers disagree after resolution");
    // Each server now has two forward extremities; its next event merges them.
    assert_eq!(a.hs.store.forward_extremities(&room).unwrap().len(), 2);
    let merge =
        a.hs.send_event(&room, ALICE, text("merged"), None)
            .await
            .unwrap();
    assert_eq!(merge.prev_events.len(), 2);
    assert_eq!(a.hs.store.current_state(&room).unwrap(), {
        let r = deliver(&net, &a.hs, "b.test", take_queued(&a.hs, "b.test")).await;
        assert_accepted(&r);
        b.hs.store.current_state(&room).unwrap()
    });
}

#[tokio::test]
async fn a_gap_longer_than_one_request_is_bridged_with_the_state_before_it() {
    let (net, a, b, room) = setup().await;
    take_queued(&a.hs, "b.test");
    // 40 messages with a topic change early on: more than get_missing_events brings.
    for i in 0..40 {
        if i == 3 {
            a.hs.send_event(
                &room,
                ALICE,
                template(
                    "m.room.topic",
                    Some(""),
                    json!({ "topic": "set while B was away" }),
                ),
                None,
            )
            .await
            .unwrap();
        }
        a.hs.send_event(&room, ALICE, text(&format!("m{i}")), None)
            .await
            .unwrap();
    }
    let queued = take_queued(&a.hs, "b.test");
    let result = deliver(&net, &a.hs, "b.test", vec![queued.last().unwrap().clone()]).await;
    assert_accepted(&result);
    let bodies = timeline_bodies(&b.hs, &room);
    assert_eq!(bodies.last().map(String::as_str), Some("m39"));
    assert!(bodies.len() >= 20, "{bodies:?}");
    // The topic set inside the gap reached B through the state it adopted.
    assert_eq!(topic(&b.hs, &room), "set while B was away");
    // And B goes on normally: the next event extends the room.
    a.hs.send_event(&room, ALICE, text("after the gap"), None)
        .await
        .unwrap();
    deliver(&net, &a.hs, "b.test", take_queued(&a.hs, "b.test")).await;
    assert_eq!(
        timeline_bodies(&b.hs, &room).last().map(String::as_str),
        Some("after the gap")
    );
}

/// A transaction's messages on the room's tip are accepted together: in the
/// order sent, with a state change and a redaction among them taking effect,
/// a duplicate left alone, and everything committed before the answer (a
/// second connection to B's database file sees it all).
#[tokio::test]
async fn a_transaction_is_accepted_in_order_and_committed_before_the_answer() {
    let (net, a, b, room) = setup().await;
    take_queued(&a.hs, "b.test");
    let mut redacted = None;
    for i in 0..30 {
        if i == 10 {
            a.hs.send_event(
                &room,
                ALICE,
                template("m.room.topic", Some(""), json!({ "topic": "mid-run" })),
                None,
            )
            .await
            .unwrap();
        }
        let sent =
            a.hs.send_event(&room, ALICE, text(&format!("m{i}")), None)
                .await
                .unwrap();
        if i == 5 {
            redacted = Some(sent.event_id.to_string());
        }
        if i == 20 {
            let redaction = EventTemplate {
                kind: "m.room.redaction".into(),
                state_key: None,
                content: json!({ "redacts": redacted.clone().unwrap() }),
                redacts: redacted.clone(),
            };
            a.hs.send_event(&room, ALICE, redaction, None)
                .await
                .unwrap();
        }
    }
    let mut queued = take_queued(&a.hs, "b.test");
    assert_eq!(queued.len(), 32);
    queued.push(queued[3].clone());
    let result = deliver(&net, &a.hs, "b.test", queued).await;
    assert_accepted(&result);

    let expected: Vec<Option<String>> =
        (0..30).map(|i| (i != 5).then(|| format!("m{i}"))).collect();
    let bodies = |store: &dyn Store| -> Vec<Option<String>> {
        let mut events = store
            .room_events(&room, 0, u64::MAX >> 1, false, 1000)
            .unwrap();
        events.retain(|e| e.value()["type"] == "m.room.message");
        events
            .iter()
            .map(|e| e.value()["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(bodies(b.hs.store.as_ref()), expected);
    assert_eq!(topic(&b.hs, &room), "mid-run");
    let on_disk =
        conifer_store::sqlite::SqliteStore::open(&b.hs.config.data_dir.join("homeserver.db"))
            .unwrap();
    assert_eq!(bodies(on_disk.as_ref()), expected);
    assert_eq!(
        on_disk.forward_extremities(&room).unwrap(),
        a.hs.store.forward_extremities(&room).unwrap()
    );
}
