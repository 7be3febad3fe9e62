//! Inbound `/send`: a remote user joins a public room by a signed PDU,
//! local events then flow out to that server, and forged, unauthorised or
//! tampered PDUs are refused or redacted, never stored as they came.

mod common;
use common::federation::*;
use conifer_homeserver::Homeserver;
use conifer_rooms::ruma::OwnedServerName;
use conifer_rooms::{EventTemplate, ServerKey};
use serde_json::{json, Value};
use std::time::Duration;

/// Builds and signs an event by `sender` (of `key`'s server) on top of the
/// room's current state on `hs`.
fn remote_event(
    hs: &Homeserver,
    key: &ServerKey,
    room: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
) -> Value {
    let template = EventTemplate {
        kind: kind.into(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: None,
    };
    let pdu = remote_pdu(hs, key, room, sender, template);
    serde_json::from_str(&pdu.json).unwrap()
}

async fn send_txn(
    net: &InProcess,
    key: &ServerKey,
    to: &str,
    txn: &str,
    pdus: Vec<Value>,
) -> Value {
    let body = json!({ "origin": key.server_name.as_str(), "origin_server_ts": 1, "pdus": pdus, "edus": [] });
    let (status, r) = signed_with(
        net,
        key,
        to,
        "PUT",
        &format!("/_matrix/federation/v1/send/{txn}"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r
}

#[tokio::test]
async fn a_remote_join_then_messages_both_ways_and_bad_pdus_refused() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs.start_federation_sender();
    let ann = "@ann:one.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, None).await;
    let bob = "@bob:two.test";

    // Bob joins through a PDU signed by two.test.
    let join = remote_event(
        &one.hs,
        &two.hs.key,
        &room,
        bob,
        "m.room.member",
        Some(bob),
        json!({ "membership": "join" }),
    );
    let r = send_txn(&net, &two.hs.key, "one.test", "t1", vec![join.clone()]).await;
    assert_eq!(
        r["pdus"].as_object().unwrap().values().next().unwrap(),
        &json!({}),
        "{r}"
    );
    assert_eq!(
        one.hs.membership(&room, bob).unwrap().as_deref(),
        Some("join")
    );
    // A retried transaction is a no-op.
    let again = send_txn(&net, &two.hs.key, "one.test", "t1", vec![join]).await;
    assert_eq!(again["pdus"], json!({}));

    // Bob talks; ann's messages are queued for two.test and leave through the sender.
    let msg = remote_event(
        &one.hs,
        &two.hs.key,
        &room,
        bob,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": "hi from two" }),
    );
    let r = send_txn(&net, &two.hs.key, "one.test", "t2", vec![msg]).await;
    assert_eq!(
        r["pdus"].as_object().unwrap().values().next().unwrap(),
        &json!({}),
        "{r}"
    );
    let template = EventTemplate {
        kind: "m.room.message".into(),
        state_key: None,
        content: json!({ "msgtype": "m.text", "body": "hi from one" }),
        redacts: None,
    };
    one.hs.send_event(&room, ann, template, None).await.unwrap();
    for _ in 0..100 {
        if one.hs.queued_for("two.test") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        one.hs.queued_for("two.test"),
        0,
        "the message went out to two.test"
    );

    // Bob may not change the power levels (he has power 0).
    let pl = remote_event(
        &one.hs,
        &two.hs.key,
        &room,
        bob,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { bob: 100 } }),
    );
    let r = send_txn(&net, &two.hs.key, "one.test", "t3", vec![pl]).await;
    let (id, verdict) = r["pdus"].as_object().unwrap().iter().next().unwrap();
    // As Synapse: a PDU rejected by the auth rules was processed (`{}`), and
    // is not stored; errors are for PDUs that cannot be taken in at all.
    assert_eq!(verdict, &json!({}), "{verdict}");
    assert!(
        one.hs.store.event(id).unwrap().is_none(),
        "a rejected PDU is not stored"
    );
    assert!(one
        .hs
        .state_event(&room, "m.room.power_levels", "")
        .unwrap()
        .unwrap()
        .content_value()["users"]
        .get(bob)
        .is_none());

    // A PDU signed by an impostor for two.test is refused.
    let impostor = ServerKey::from_seed(
        &OwnedServerName::try_from("two.test").unwrap(),
        "k2",
        &[9; 32],
    );
    let forged = remote_event(
        &one.hs,
        &impostor,
        &room,
        bob,
        "m.room.message",
        None,
        json!({ "body": "forged" }),
    );
    let r = send_txn(&net, &two.hs.key, "one.test", "t4", vec![forged]).await;
    let (id, verdict) = r["pdus"].as_object().unwrap().iter().next().unwrap();
    assert!(
        verdict["error"].as_str().unwrap().contains("signature"),
        "{verdict}"
    );
    assert!(one.hs.store.event(id).unwrap().is_none());

    // Content changed after signing: the hash fails, so the event is kept only redacted.
    let mut tampered = remote_event(
        &one.hs,
        &two.hs.key,
        &room,
        bob,
        "m.room.message",
        None,
        json!({ "body": "original" }),
    );
    tampered["content"]["body"] = json!("changed in transit");
    let r = send_txn(&net, &two.hs.key, "one.test", "t5", vec![tampered]).await;
    let (id, verdict) = r["pdus"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(verdict, &json!({}), "{verdict}");
    let stored = one.hs.store.event(id).unwrap().unwrap().value();
    assert_eq!(stored["content"], json!({}), "stored redacted: {stored}");

    // A PDU for a room this server is not in, and a transaction whose origin lies.
    let stray = json!({ "room_id": "!elsewhere:two.test", "type": "m.room.message" });
    let r = send_txn(&net, &two.hs.key, "one.test", "t6", vec![stray]).await;
    assert!(r["pdus"].as_object().unwrap().values().next().unwrap()["error"].is_string());
    let lying = json!({ "origin": "three.test", "pdus": [], "edus": [] });
    let (status, r) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "PUT",
        "/_matrix/federation/v1/send/t7",
        Some(lying),
    )
    .await;
    // As Synapse: an origin that is not the signing server is 400 M_BAD_JSON.
    assert_eq!((status, r["errcode"].as_str()), (400, Some("M_BAD_JSON")));
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn make_join_and_send_join_let_a_remote_user_in_and_return_the_state() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let ann = "@ann:one.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, Some("Pines")).await;
    let carol = "@carol:two.test";
    let make = format!(
        "/_matrix/federation/v1/make_join/{}/{}",
        enc(&room),
        enc(carol)
    );

    let (status, body) = signed(&net, &two.hs.key, "one.test", &make).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INCOMPATIBLE_ROOM_VERSION")),
        "no ver means version 1 only"
    );
    let (status, _) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=11",
            enc(&room),
            enc("@x:three.test")
        ),
    )
    .await;
    assert_eq!(status, 403, "a server joins only its own users");

    let (status, made) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!("{make}?ver=10&ver=11"),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["room_version"], "11");
    let join = conifer_rooms::sign_template("11", made["event"].clone(), &two.hs.key).unwrap();
    let body: Value = serde_json::from_str(&join.json).unwrap();

    let wrong = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        enc(&room),
        enc("$not-this-one")
    );
    let (status, _) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "PUT",
        &wrong,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 400);
    let send = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        enc(&room),
        enc(join.event_id.as_str())
    );
    let (status, joined) =
        signed_with(&net, &two.hs.key, "one.test", "PUT", &send, Some(body)).await;
    assert_eq!(status, 200, "{joined}");
    let state = joined["state"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Pines"));
    assert!(
        state.iter().all(|e| e.get("unsigned").is_none()),
        "local additions stay local"
    );
    assert!(!joined["auth_chain"].as_array().unwrap().is_empty());
    assert_eq!(
        one.hs.membership(&room, carol).unwrap().as_deref(),
        Some("join")
    );

    // A banned user gets no template.
    let template = EventTemplate {
        kind: "m.room.member".into(),
        state_key: Some("@dan:two.test".into()),
        content: json!({ "membership": "ban" }),
        redacts: None,
    };
    one.hs.send_event(&room, ann, template, None).await.unwrap();
    let (status, _) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=11",
            enc(&room),
            enc("@dan:two.test")
        ),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_local_user_joins_a_remote_room_and_messages_flow_both_ways() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs.start_federation_sender();
    two.hs.start_federation_sender();
    let ann = "@ann:one.test";
    let bob = "@bob:two.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    two.hs.store.create_user(bob, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, Some("Pines")).await;

    // A server that knows nothing of the room joins it through one.test.
    assert!(two
        .hs
        .join_remote(&room, bob, &["nowhere.test".into()])
        .await
        .is_err());
    two.hs
        .join_remote(&room, bob, &["nowhere.test".into(), "one.test".into()])
        .await
        .unwrap();
    assert_eq!(
        two.hs.membership(&room, bob).unwrap().as_deref(),
        Some("join")
    );
    assert_eq!(
        one.hs.membership(&room, bob).unwrap().as_deref(),
        Some("join")
    );
    let name = two
        .hs
        .state_event(&room, "m.room.name", "")
        .unwrap()
        .unwrap();
    assert_eq!(
        name.content_value()["name"],
        "Pines",
        "the room state arrived"
    );

    let text = |body: &str| EventTemplate {
        kind: "m.room.message".into(),
        state_key: None,
        content: json!({ "msgtype": "m.text", "body": body }),
        redacts: None,
    };
    one.hs
        .send_event(&room, ann, text("hello bob"), None)
        .await
        .unwrap();
    let bodies = |hs: &Homeserver| -> Vec<String> {
        hs.store
            .room_events(&room, 0, u64::MAX >> 1, false, 100)
            .unwrap()
            .iter()
            .filter_map(|e| e.value()["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    for _ in 0..100 {
        if bodies(&two.hs).contains(&"hello bob".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        bodies(&two.hs).contains(&"hello bob".to_owned()),
        "one.test's message reached two.test"
    );

    two.hs
        .send_event(&room, bob, text("hello ann"), None)
        .await
        .unwrap();
    for _ in 0..100 {
        if bodies(&one.hs).contains(&"hello ann".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        bodies(&one.hs).contains(&"hello ann".to_owned()),
        "two.test's message reached one.test"
    );
}

#[tokio::test]
async fn servers_in_the_room_read_its_graph_and_others_may_not() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let three = server("three.test", "k3", 3, &net);
    let ann = "@ann:one.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, None).await;
    two.hs
        .join_remote(&room, "@bob:two.test", &["one.test".into()])
        .await
        .unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let t = EventTemplate {
            kind: "m.room.message".into(),
            state_key: None,
            content: json!({ "body": format!("m{i}") }),
            redacts: None,
        };
        ids.push(
            one.hs
                .send_event(&room, ann, t, None)
                .await
                .unwrap()
                .event_id
                .to_string(),
        );
    }
    let r = enc(&room);

    let (status, ev) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!("/_matrix/federation/v1/event/{}", enc(&ids[2])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ev["pdus"][0]["content"]["body"], "m2");
    assert!(ev["pdus"][0].get("unsigned").is_none());
    let (status, _) = signed(
        &net,
        &three.hs.key,
        "one.test",
        &format!("/_matrix/federation/v1/event/{}", enc(&ids[2])),
    )
    .await;
    assert_eq!(status, 403, "three.test has no member in the room");

    let (_, st) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/state_ids/{r}?event_id={}",
            enc(&ids[0])
        ),
    )
    .await;
    assert!(st["pdu_ids"].as_array().unwrap().len() >= 6, "{st}");
    assert!(!st["auth_chain_ids"].as_array().unwrap().is_empty());
    let (_, full) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!("/_matrix/federation/v1/state/{r}?event_id={}", enc(&ids[0])),
    )
    .await;
    assert!(full["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.create"));
    let (_, chain) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!("/_matrix/federation/v1/event_auth/{r}/{}", enc(&ids[4])),
    )
    .await;
    assert!(chain["auth_chain"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.power_levels"));

    let (_, back) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/backfill/{r}?v={}&limit=3",
            enc(&ids[4])
        ),
    )
    .await;
    let bodies: Vec<&str> = back["pdus"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["m4", "m3", "m2"]);

    let missing = json!({ "earliest_events": [ids[0]], "latest_events": [ids[4]], "limit": 10, "min_depth": 0 });
    let (_, gme) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "POST",
        &format!("/_matrix/federation/v1/get_missing_events/{r}"),
        Some(missing),
    )
    .await;
    let bodies: Vec<&str> = gme["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        vec!["m1", "m2", "m3"],
        "between the earliest and the latest, oldest first"
    );
}

#[tokio::test]
async fn receipts_cross_over_and_remote_users_can_leave() {
    use tower::ServiceExt;
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs.start_federation_sender();
    let ann = "@ann:one.test";
    let bob = "@bob:two.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    one.hs
        .store
        .create_device(ann, "D", None, "ann-token", 0)
        .unwrap();
    let room = public_room(&one.hs, ann, None).await;
    two.hs
        .join_remote(&room, bob, &["one.test".into()])
        .await
        .unwrap();
    let t = EventTemplate {
        kind: "m.room.message".into(),
        state_key: None,
        content: json!({ "body": "read me" }),
        redacts: None,
    };
    let msg = one
        .hs
        .send_event(&room, ann, t, None)
        .await
        .unwrap()
        .event_id
        .to_string();

    // Ann reads it through her client; the receipt reaches two.test as an EDU.
    let client = conifer_homeserver::client::router(one.hs.clone());
    let req = axum::http::Request::post(format!(
        "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
        enc(&room),
        enc(&msg)
    ))
    .header("authorization", "Bearer ann-token")
    .body(axum::body::Body::from("{}"))
    .unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    let mut seen = false;
    for _ in 0..100 {
        seen = two
            .hs
            .store
            .receipts_since(std::slice::from_ref(&room), 0, u64::MAX >> 1)
            .unwrap()
            .iter()
            .any(|r| r.user_id == ann && r.event_id == msg);
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "ann's read receipt reached two.test");

    // Bob leaves through make_leave / send_leave.
    let (status, made) = signed(
        &net,
        &two.hs.key,
        "one.test",
        &format!(
            "/_matrix/federation/v1/make_leave/{}/{}",
            enc(&room),
            enc(bob)
        ),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let leave = conifer_rooms::sign_template("11", made["event"].clone(), &two.hs.key).unwrap();
    let body: Value = serde_json::from_str(&leave.json).unwrap();
    let uri = format!(
        "/_matrix/federation/v2/send_leave/{}/{}",
        enc(&room),
        enc(leave.event_id.as_str())
    );
    let (status, r) = signed_with(&net, &two.hs.key, "one.test", "PUT", &uri, Some(body)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        one.hs.membership(&room, bob).unwrap().as_deref(),
        Some("leave")
    );
}
