//! Server ACLs on every federation entry point of a room, and the answers
//! other servers expect from `/send`, `make_join`, `/event`, `/backfill`,
//! `/state_ids` and redactions. Three real servers joined by the in-process
//! federation transport: ann's room lives on one.test, bob (two.test) and
//! carol (three.test) join it over federation.

mod common;
use common::federation::*;
use conifer_homeserver::Homeserver;
use conifer_rooms::{EventTemplate, ServerKey};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One Client-Server API request to `hs`, in process.
async fn client(
    hs: &Arc<Homeserver>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = conifer_homeserver::client::router(hs.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A local user with an access token equal to its localpart.
fn user(hs: &Homeserver, id: &str) -> String {
    hs.store.create_user(id, None, false, 0).unwrap();
    let token = id[1..].split(':').next().unwrap().to_owned();
    hs.store.create_device(id, "D", None, &token, 0).unwrap();
    token
}

const ANN: &str = "@ann:one.test";
const BOB: &str = "@bob:two.test";
const CAROL: &str = "@carol:three.test";

struct Net {
    net: InProcess,
    one: Server,
    two: Server,
    three: Server,
    room: String,
}

/// Ann's public room on one.test, with bob and carol joined over federation.
async fn room_of_three() -> Net {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let three = server("three.test", "k3", 3, &net);
    for s in [&one, &two, &three] {
        s.hs.start_federation_sender();
    }
    user(&one.hs, ANN);
    user(&two.hs, BOB);
    user(&three.hs, CAROL);
    let (status, r) = client(
        &one.hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        "ann",
        Some(json!({ "preset": "public_chat" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let room = r["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    for (hs, token) in [(&two.hs, "bob"), (&three.hs, "carol")] {
        let (status, r) = client(hs, "POST", &join, token, Some(json!({}))).await;
        assert_eq!(status, 200, "{r}");
    }
    for u in [BOB, CAROL] {
        assert_eq!(
            one.hs.membership(&room, u).unwrap().as_deref(),
            Some("join")
        );
    }
    Net {
        net,
        one,
        two,
        three,
        room,
    }
}

/// Ann sets the room's server ACL.
async fn set_acl(n: &Net, content: Value) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.server_acl",
        enc(&n.room)
    );
    let (status, r) = client(&n.one.hs, "PUT", &path, "ann", Some(content)).await;
    assert_eq!(status, 200, "{r}");
}

/// An event by `sender` of `key`'s server on top of one.test's room.
fn remote_event(n: &Net, key: &ServerKey, sender: &str, template: EventTemplate) -> Value {
    let pdu = remote_pdu(&n.one.hs, key, &n.room, sender, template);
    serde_json::from_str(&pdu.json).unwrap()
}

fn message(body: &str) -> EventTemplate {
    EventTemplate {
        kind: "m.room.message".into(),
        state_key: None,
        content: json!({ "msgtype": "m.text", "body": body }),
        redacts: None,
    }
}

fn member(user: &str, membership: &str) -> EventTemplate {
    EventTemplate {
        kind: "m.room.member".into(),
        state_key: Some(user.into()),
        content: json!({ "membership": membership }),
        redacts: None,
    }
}

/// `PUT /send/{txn}` to one.test, signed by `key`'s server.
async fn send(n: &Net, key: &ServerKey, txn: &str, pdus: Vec<Value>, edus: Vec<Value>) -> Value {
    let body = json!({ "origin": key.server_name.as_str(), "origin_server_ts": 1, "pdus": pdus, "edus": edus });
    let (status, r) = signed_with(
        &n.net,
        key,
        "one.test",
        "PUT",
        &format!("/_matrix/federation/v1/send/{txn}"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r
}

/// Every protected endpoint, as `server` (with `key`) asks it of one.test.
async fn protected_endpoints(n: &Net, key: &ServerKey, user: &str) -> Vec<(String, u16, Value)> {
    let room = enc(&n.room);
    let some_event = n
        .one
        .hs
        .state_event(&n.room, "m.room.create", "")
        .unwrap()
        .unwrap()
        .event_id
        .to_string();
    let ev = enc(&some_event);
    let u = enc(user);
    let signed_pdu = |template| {
        let pdu = remote_pdu(&n.one.hs, key, &n.room, user, template);
        let json: Value = serde_json::from_str(&pdu.json).unwrap();
        (enc(pdu.event_id.as_str()), json)
    };
    let (join_id, join) = signed_pdu(member(user, "join"));
    let (leave_id, leave) = signed_pdu(member(user, "leave"));
    let (knock_id, knock) = signed_pdu(member(user, "knock"));
    let (invite_id, invite) = signed_pdu(member("@ann2:one.test", "invite"));
    let version = n.one.hs.store.room(&n.room).unwrap().unwrap().version;
    // Reads first: an allowed server's send_leave below does take its user out.
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        (
            "GET",
            format!("/_matrix/federation/v1/state/{room}?event_id={ev}"),
            None,
        ),
        (
            "GET",
            format!("/_matrix/federation/v1/state_ids/{room}?event_id={ev}"),
            None,
        ),
        ("GET", format!("/_matrix/federation/v1/event/{ev}"), None),
        (
            "GET",
            format!("/_matrix/federation/v1/event_auth/{room}/{ev}"),
            None,
        ),
        (
            "GET",
            format!("/_matrix/federation/v1/backfill/{room}?v={ev}&limit=10"),
            None,
        ),
        (
            "POST",
            format!("/_matrix/federation/v1/get_missing_events/{room}"),
            Some(json!({ "earliest_events": [], "latest_events": [some_event], "limit": 10 })),
        ),
        (
            "GET",
            format!("/_matrix/federation/v1/make_join/{room}/{u}?ver={version}"),
            None,
        ),
        (
            "GET",
            format!("/_matrix/federation/v1/make_leave/{room}/{u}"),
            None,
        ),
        (
            "GET",
            format!("/_matrix/federation/v1/make_knock/{room}/{u}?ver={version}"),
            None,
        ),
        (
            "PUT",
            format!("/_matrix/federation/v2/send_join/{room}/{join_id}"),
            Some(join),
        ),
        (
            "PUT",
            format!("/_matrix/federation/v1/send_knock/{room}/{knock_id}"),
            Some(knock),
        ),
        (
            "PUT",
            format!("/_matrix/federation/v2/invite/{room}/{invite_id}"),
            Some(json!({ "room_version": version, "event": invite, "invite_room_state": [] })),
        ),
        (
            "PUT",
            format!("/_matrix/federation/v2/send_leave/{room}/{leave_id}"),
            Some(leave),
        ),
    ];
    let mut out = Vec::new();
    for (method, uri, body) in requests {
        let (status, r) = signed_with(&n.net, key, "one.test", method, &uri, body).await;
        out.push((uri, status, r));
    }
    out
}

#[tokio::test]
async fn a_denied_server_is_refused_on_every_entry_point_of_the_room() {
    let n = room_of_three().await;
    set_acl(
        &n,
        json!({ "allow": ["*"], "deny": ["three.test"], "allow_ip_literals": false }),
    )
    .await;

    // Server-Server API, "Server Access Control Lists (ACLs)": "When a
    // remote server makes a request, it MUST be verified to be allowed by
    // the server ACLs. If the server is denied access to a room, the
    // receiving server MUST reply with a 403 HTTP status code and an
    // `errcode` of `M_FORBIDDEN`." Each endpoint prefix the spec lists:
    for (uri, status, r) in protected_endpoints(&n, &n.three.hs.key, CAROL).await {
        assert_eq!(
            (status, r["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")),
            "{uri}: {r}"
        );
        assert!(
            r["error"].as_str().unwrap().contains("server ACL"),
            "{uri} refused for the ACL: {r}"
        );
    }
    // The same requests from an allowed server are not refused for the ACL.
    for (uri, status, r) in protected_endpoints(&n, &n.two.hs.key, BOB).await {
        let acl_refusal = r["error"]
            .as_str()
            .is_some_and(|e| e.contains("server ACL"));
        assert!(!acl_refusal, "{uri}: {status} {r}");
        if uri.contains("/state_ids/") || uri.contains("/event/") || uri.contains("/backfill/") {
            assert_eq!(status, 200, "{uri}: {r}");
        }
    }
}

#[tokio::test]
async fn a_denied_servers_pdus_and_edus_are_dropped_while_others_are_accepted() {
    let n = room_of_three().await;
    let bob_before = remote_event(&n, &n.two.hs.key, BOB, message("before the ACL"));
    let carol_before = remote_event(&n, &n.three.hs.key, CAROL, message("before the ACL"));
    set_acl(&n, json!({ "allow": ["*.test"], "deny": ["thr?e.test"] })).await;

    // "The following endpoint prefixes MUST be protected:
    // `/_matrix/federation/v1/send` (on a per-PDU basis)".
    let carol_msg = remote_event(&n, &n.three.hs.key, CAROL, message("from a denied server"));
    let r = send(
        &n,
        &n.three.hs.key,
        "c1",
        vec![carol_msg, carol_before],
        vec![],
    )
    .await;
    let verdicts = r["pdus"].as_object().unwrap();
    assert_eq!(verdicts.len(), 2, "{r}");
    for (id, verdict) in verdicts {
        assert!(
            verdict["error"].as_str().unwrap().contains("M_FORBIDDEN"),
            "{verdict}"
        );
        assert!(n.one.hs.store.event(id).unwrap().is_none(), "dropped: {id}");
    }
    let bob_msg = remote_event(&n, &n.two.hs.key, BOB, message("from an allowed server"));
    let r = send(&n, &n.two.hs.key, "b1", vec![bob_before, bob_msg], vec![]).await;
    let verdicts = r["pdus"].as_object().unwrap();
    assert_eq!(verdicts.len(), 2, "{r}");
    for (id, verdict) in verdicts {
        assert_eq!(verdict, &json!({}), "{r}");
        assert!(n.one.hs.store.event(id).unwrap().is_some(), "stored: {id}");
    }

    // EDUs of the room from the denied server are dropped too.
    let typing = |user: &str| json!({ "edu_type": "m.typing", "content": { "room_id": n.room, "user_id": user, "typing": true } });
    let receipt = |user: &str, event: &str| json!({ "edu_type": "m.receipt", "content": { &n.room: { "m.read": { user: { "event_ids": [event], "data": { "ts": 1 } } } } } });
    let some_event = n.one.hs.store.forward_extremities(&n.room).unwrap()[0].clone();
    send(
        &n,
        &n.three.hs.key,
        "c2",
        vec![],
        vec![typing(CAROL), receipt(CAROL, &some_event)],
    )
    .await;
    send(
        &n,
        &n.two.hs.key,
        "b2",
        vec![],
        vec![typing(BOB), receipt(BOB, &some_event)],
    )
    .await;
    let (status, sync) = client(
        &n.one.hs,
        "GET",
        "/_matrix/client/v3/sync?timeout=0",
        "ann",
        None,
    )
    .await;
    assert_eq!(status, 200, "{sync}");
    let ephemeral = sync["rooms"]["join"][&n.room]["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let typing_users = ephemeral
        .iter()
        .find(|e| e["type"] == "m.typing")
        .map(|e| e["content"]["user_ids"].clone())
        .unwrap_or(Value::Null);
    assert_eq!(typing_users, json!([BOB]), "{sync}");
    let receipts = ephemeral
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .map(|e| e["content"][&some_event]["m.read"].clone())
        .unwrap_or(Value::Null);
    assert!(receipts.get(BOB).is_some(), "{receipts}");
    assert!(receipts.get(CAROL).is_none(), "{receipts}");
}

#[tokio::test]
async fn answers_the_way_the_ecosystem_expects() {
    let n = room_of_three().await;
    let two = &n.two.hs.key;

    // `/send` answers `{}` for a soft-failed PDU: one built before bob was
    // banned passes the auth rules on the state before it, not on the
    // room's current state.
    let early = remote_event(&n, two, BOB, message("sent before the ban"));
    let path = format!("/_matrix/client/v3/rooms/{}/ban", enc(&n.room));
    let (status, r) = client(
        &n.one.hs,
        "POST",
        &path,
        "ann",
        Some(json!({ "user_id": BOB })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let r = send(&n, two, "s1", vec![early], vec![]).await;
    assert_eq!(
        r["pdus"].as_object().unwrap().values().next(),
        Some(&json!({})),
        "{r}"
    );
    // And an error for a malformed PDU, the rest of the transaction accepted.
    let carol_msg = remote_event(&n, &n.three.hs.key, CAROL, message("fine"));
    let malformed = json!({ "room_id": n.room, "type": "m.room.message", "sender": CAROL });
    let r = send(
        &n,
        &n.three.hs.key,
        "s2",
        vec![malformed, carol_msg],
        vec![],
    )
    .await;
    let verdicts: Vec<&Value> = r["pdus"].as_object().unwrap().values().collect();
    assert_eq!(verdicts.len(), 2, "{r}");
    assert_eq!(
        verdicts.iter().filter(|v| v["error"].is_string()).count(),
        1,
        "{r}"
    );
    assert_eq!(
        verdicts.iter().filter(|v| **v == &json!({})).count(),
        1,
        "{r}"
    );

    // 400 M_BAD_JSON for a body that is not a transaction and for an origin
    // that is not the signing server's.
    let three = &n.three.hs.key;
    for (txn, body) in [
        (
            "j1",
            json!({ "origin": "three.test", "pdus": "not a list" }),
        ),
        ("j2", json!(["not", "an", "object"])),
        ("j3", json!({ "origin": "two.test", "pdus": [] })),
    ] {
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let (status, r) = signed_with(&n.net, three, "one.test", "PUT", &uri, Some(body)).await;
        assert_eq!(
            (status, r["errcode"].as_str()),
            (400, Some("M_BAD_JSON")),
            "{txn}: {r}"
        );
    }

    // 400 M_MISSING_PARAM for `/state` and `/state_ids` without `event_id`.
    for what in ["state", "state_ids"] {
        let uri = format!("/_matrix/federation/v1/{what}/{}", enc(&n.room));
        let (status, r) = signed(&n.net, three, "one.test", &uri).await;
        assert_eq!(
            (status, r["errcode"].as_str()),
            (400, Some("M_MISSING_PARAM")),
            "{r}"
        );
    }

    // Another room on one.test that carol's server is not in.
    let (status, r) = client(
        &n.one.hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        "ann",
        Some(json!({ "preset": "private_chat" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let other = r["room_id"].as_str().unwrap().to_owned();
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
        enc(&other)
    );
    let (status, r) = client(
        &n.one.hs,
        "PUT",
        &path,
        "ann",
        Some(json!({ "msgtype": "m.text", "body": "secret" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let secret = r["event_id"].as_str().unwrap().to_owned();

    // `/backfill` from another room's event answers as for an event that
    // does not exist: nothing tells the asker it is there.
    let unknown = "$doesnotexist";
    let uri = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=5",
        enc(&n.room),
        enc(&secret)
    );
    let (status, r) = signed(&n.net, three, "one.test", &uri).await;
    let (s2, r2) = signed(
        &n.net,
        three,
        "one.test",
        &uri.replace(&enc(&secret), unknown),
    )
    .await;
    assert_eq!((status, &r), (s2, &r2), "{uri}");
    assert_eq!(
        (status, r["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{uri}: {r}"
    );
    // `/event` of a room the asker's server has nobody in is refused as
    // Synapse refuses it (403 `M_FORBIDDEN`), with nothing of the event.
    let uri = format!("/_matrix/federation/v1/event/{}", enc(&secret));
    let (status, r) = signed(&n.net, three, "one.test", &uri).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{r}"
    );
    assert!(
        !r.to_string().contains("secret") && r.get("pdus").is_none(),
        "{r}"
    );

    // A redaction received over federation naming another room's event is
    // rejected, and the event stays as it was.
    let redaction = remote_event(
        &n,
        three,
        CAROL,
        EventTemplate {
            kind: "m.room.redaction".into(),
            state_key: None,
            content: json!({}),
            redacts: Some(secret.clone()),
        },
    );
    let r = send(&n, three, "r1", vec![redaction], vec![]).await;
    let (id, verdict) = r["pdus"].as_object().unwrap().iter().next().unwrap();
    // Rejected, not malformed: processed (`{}`) and not stored.
    assert_eq!(verdict, &json!({}), "{verdict}");
    assert!(
        n.one.hs.store.event(id).unwrap().is_none(),
        "the redaction is not stored"
    );
    let kept = n.one.hs.store.event(&secret).unwrap().unwrap().value();
    assert_eq!(kept["content"]["body"], "secret");

    // `make_join` on a room this server is no longer in is 404: ann, its
    // only member here, leaves.
    let path = format!("/_matrix/client/v3/rooms/{}/leave", enc(&n.room));
    let (status, r) = client(&n.one.hs, "POST", &path, "ann", Some(json!({}))).await;
    assert_eq!(status, 200, "{r}");
    let uri = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver={}",
        enc(&n.room),
        enc("@dave:three.test"),
        n.one.hs.store.room(&n.room).unwrap().unwrap().version
    );
    let (status, r) = signed(&n.net, three, "one.test", &uri).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{r}"
    );
}

#[tokio::test]
async fn acl_matching_ignores_ports_and_can_refuse_ip_literals() {
    let n = room_of_three().await;
    let evil = server("evil.test:8448", "k4", 4, &n.net);
    let literal = server("127.0.0.1:8448", "k5", 5, &n.net);
    let version = n.one.hs.store.room(&n.room).unwrap().unwrap().version;
    let make_join = |user: &str| {
        format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver={version}",
            enc(&n.room),
            enc(user)
        )
    };
    let (evil_user, literal_user) = ("@eve:evil.test:8448", "@ip:127.0.0.1:8448");

    // "When comparing against the server ACLs, the suspect server's port
    // number must not be considered. Therefore `evil.com`, `evil.com:8448`,
    // and `evil.com:1234` would all match rules that apply to `evil.com`".
    set_acl(&n, json!({ "allow": ["*"], "deny": ["evil.test"] })).await;
    let (status, r) = signed(&n.net, &evil.hs.key, "one.test", &make_join(evil_user)).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{r}"
    );
    let (status, r) = signed(
        &n.net,
        &literal.hs.key,
        "one.test",
        &make_join(literal_user),
    )
    .await;
    assert_eq!(
        status, 200,
        "IP literals are allowed unless the ACL says otherwise: {r}"
    );

    // "If the server name is an IP address (v4 or v6) literal, and
    // `allow_ip_literals` is present and `false`, deny."
    set_acl(&n, json!({ "allow": ["*"], "allow_ip_literals": false })).await;
    let (status, r) = signed(
        &n.net,
        &literal.hs.key,
        "one.test",
        &make_join(literal_user),
    )
    .await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{r}"
    );
    let (status, r) = signed(&n.net, &evil.hs.key, "one.test", &make_join(evil_user)).await;
    assert_eq!(status, 200, "no longer denied: {r}");
}
