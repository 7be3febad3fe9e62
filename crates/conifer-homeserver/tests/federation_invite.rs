//! Invites across servers (federation invite v2): a user of one server
//! invites a user of another, who sees the invite in `/sync` and joins;
//! invites in `/createRoom`; and invites that must be refused, inbound and
//! outbound.

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

async fn create_room(hs: &Arc<Homeserver>, token: &str, body: Value) -> String {
    let (status, r) = client(
        hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        token,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["room_id"].as_str().unwrap().to_owned()
}

/// Two servers, federation senders running, with ann on one.test and bob
/// on two.test.
struct Pair {
    net: InProcess,
    one: Server,
    two: Server,
}

const ANN: &str = "@ann:one.test";
const BOB: &str = "@bob:two.test";

fn pair() -> Pair {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs.start_federation_sender();
    two.hs.start_federation_sender();
    user(&one.hs, ANN);
    user(&two.hs, BOB);
    Pair { net, one, two }
}

/// Bob's `/sync` on his server: the first one, or the next after `since`.
async fn bob_sync(p: &Pair, since: Option<&str>) -> Value {
    let uri = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    client(&p.two.hs, "GET", &uri, "bob", None).await.1
}

fn signed_by(event: &Value, server: &str) -> bool {
    event["signatures"][server]
        .as_object()
        .is_some_and(|s| !s.is_empty())
}

#[tokio::test]
async fn a_remote_user_is_invited_sees_the_invite_in_sync_and_joins() {
    let p = pair();
    let room = create_room(
        &p.one.hs,
        "ann",
        json!({ "preset": "private_chat", "name": "Secret garden" }),
    )
    .await;
    let before = bob_sync(&p, None).await;
    let since = before["next_batch"].as_str().unwrap().to_owned();

    let (status, r) = client(
        &p.one.hs,
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
        "ann",
        Some(json!({ "user_id": BOB })),
    )
    .await;
    assert_eq!(status, 200, "{r}");

    // The invite in the room carries both servers' signatures.
    assert_eq!(
        p.one.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("invite")
    );
    let invite = p
        .one
        .hs
        .state_event(&room, "m.room.member", BOB)
        .unwrap()
        .unwrap();
    let invite_json: Value = serde_json::from_str(&invite.json).unwrap();
    assert!(signed_by(&invite_json, "one.test"), "{invite_json}");
    assert!(
        signed_by(&invite_json, "two.test"),
        "two.test co-signed: {invite_json}"
    );

    // Bob's next sync shows it, with the room's name and the invite itself.
    let sync = bob_sync(&p, Some(&since)).await;
    let state = sync["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("bob sees an invite: {sync}"))
        .clone();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret garden"),
        "{state:?}"
    );
    assert!(
        state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == BOB
            && e["sender"] == ANN
            && e["content"]["membership"] == "invite"),
        "{state:?}"
    );
    let since = sync["next_batch"].as_str().unwrap().to_owned();

    // Bob joins the invite-only room through ann's server.
    let (status, r) = client(
        &p.two.hs,
        "POST",
        &format!("/_matrix/client/v3/join/{}", enc(&room)),
        "bob",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        p.one.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("join")
    );
    let sync = bob_sync(&p, Some(&since)).await;
    assert!(sync["rooms"]["join"][&room].is_object(), "{sync}");
    assert!(sync["rooms"]["invite"][&room].is_null(), "{sync}");
    assert!(p.two.hs.store.remote_invite(&room, BOB).unwrap().is_none());
}

#[tokio::test]
async fn create_room_invites_remote_users_over_federation() {
    let p = pair();
    let room = create_room(
        &p.one.hs,
        "ann",
        json!({ "preset": "trusted_private_chat", "invite": [BOB], "is_direct": true }),
    )
    .await;
    assert_eq!(
        p.one.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("invite")
    );
    let invite = p.two.hs.store.remote_invite(&room, BOB).unwrap().unwrap();
    assert_eq!(invite.event["content"]["is_direct"], true);
    assert!(signed_by(&invite.event, "one.test") && signed_by(&invite.event, "two.test"));
    // The preset still makes the invitee an admin.
    let pl = p
        .one
        .hs
        .state_event(&room, "m.room.power_levels", "")
        .unwrap()
        .unwrap();
    assert_eq!(pl.content_value()["users"][BOB], 100);

    // Rejecting tells ann's server, and bob's next sync shows the room left.
    let sync = bob_sync(&p, None).await;
    assert!(sync["rooms"]["invite"][&room].is_object(), "{sync}");
    let since = sync["next_batch"].as_str().unwrap().to_owned();
    let (status, r) = client(
        &p.two.hs,
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        "bob",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        p.one.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("leave"),
        "one.test learnt of the rejection"
    );
    let sync = bob_sync(&p, Some(&since)).await;
    assert!(sync["rooms"]["invite"][&room].is_null(), "{sync}");
    let left = &sync["rooms"]["leave"][&room]["timeline"]["events"][0];
    assert_eq!(left["content"]["membership"], "leave", "{sync}");
    assert_eq!(left["state_key"], BOB);
    let on_one = p
        .one
        .hs
        .state_event(&room, "m.room.member", BOB)
        .unwrap()
        .unwrap();
    assert_eq!(
        left["event_id"],
        on_one.event_id.as_str(),
        "the very leave one.test has"
    );
    // Rejecting twice is refused.
    let (status, _) = client(
        &p.two.hs,
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        "bob",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn an_invite_is_rejected_even_when_the_inviting_server_is_gone() {
    let p = pair();
    let room = create_room(
        &p.one.hs,
        "ann",
        json!({ "preset": "private_chat", "invite": [BOB] }),
    )
    .await;
    assert!(p.two.hs.store.remote_invite(&room, BOB).unwrap().is_some());
    p.net.servers.lock().unwrap().remove("one.test");
    let (status, r) = client(
        &p.two.hs,
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        "bob",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let left = p.two.hs.store.remote_invite(&room, BOB).unwrap().unwrap();
    assert_eq!(left.membership, "leave");
    assert_eq!(left.event["content"]["membership"], "leave");
    assert!(
        signed_by(&left.event, "two.test"),
        "signed here: {}",
        left.event
    );
    assert_eq!(
        left.event["prev_events"][0],
        ann_invite_id(&p.one.hs, &room)
    );
}

fn ann_invite_id(hs: &Homeserver, room: &str) -> String {
    hs.state_event(room, "m.room.member", BOB)
        .unwrap()
        .unwrap()
        .event_id
        .to_string()
}

#[tokio::test]
async fn an_invite_the_invitee_server_refuses_or_cannot_get_is_not_stored() {
    let p = pair();
    let room = create_room(&p.one.hs, "ann", json!({ "preset": "private_chat" })).await;
    for (who, why) in [
        ("@nobody:two.test", "no such user on two.test"),
        ("@carl:nowhere.test", "no such server"),
    ] {
        let (status, r) = client(
            &p.one.hs,
            "POST",
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            "ann",
            Some(json!({ "user_id": who })),
        )
        .await;
        assert_ne!(status, 200, "{why}: {r}");
        assert_eq!(p.one.hs.membership(&room, who).unwrap(), None, "{why}");
    }
    // The room still works: its tips were not moved by the failed invites.
    let (status, r) = client(
        &p.one.hs,
        "POST",
        &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
        "ann",
        Some(json!({ "user_id": BOB })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

/// An invite event (its ID and JSON) by `sender` (of `key`'s server) for
/// `invitee`, built on the current state of `room` on `hs`.
fn invite_event(
    hs: &Homeserver,
    key: &ServerKey,
    room: &str,
    sender: &str,
    invitee: &str,
) -> (String, Value) {
    let template = EventTemplate {
        kind: "m.room.member".into(),
        state_key: Some(invitee.into()),
        content: json!({ "membership": "invite" }),
        redacts: None,
    };
    let pdu = remote_pdu(hs, key, room, sender, template);
    (
        pdu.event_id.to_string(),
        serde_json::from_str(&pdu.json).unwrap(),
    )
}

async fn send_invite(
    p: &Pair,
    key: &ServerKey,
    room: &str,
    id: &str,
    event: Value,
) -> (u16, Value) {
    signed_with(
        &p.net,
        key,
        "one.test",
        "PUT",
        &format!("/_matrix/federation/v2/invite/{}/{}", enc(room), enc(id)),
        Some(json!({
            "room_version": "11",
            "event": event,
            "invite_room_state": [{ "type": "m.room.name", "state_key": "", "sender": BOB, "content": { "name": "Bob's" } }],
        })),
    )
    .await
}

#[tokio::test]
async fn inbound_invites_are_checked_before_they_are_co_signed() {
    let p = pair();
    // Bob's room lives on two.test; one.test knows nothing of it.
    let room = public_room(&p.two.hs, BOB, Some("Bob's")).await;
    let key = &p.two.hs.key;
    let (id, good) = invite_event(&p.two.hs, key, &room, BOB, ANN);

    // Not from the inviter's server.
    let three = server("three.test", "k3", 3, &p.net);
    let (status, _) = send_invite(&p, &three.hs.key, &room, &id, good.clone()).await;
    assert_eq!(status, 403, "signed by a server that is not the sender's");
    // For a user who is not here.
    let (sid, stranger) = invite_event(&p.two.hs, key, &room, BOB, "@nobody:one.test");
    let (status, _) = send_invite(&p, key, &room, &sid, stranger).await;
    assert_eq!(status, 404);
    // For another server's user.
    let (eid, elsewhere) = invite_event(&p.two.hs, key, &room, BOB, "@carl:three.test");
    let (status, _) = send_invite(&p, key, &room, &eid, elsewhere).await;
    assert_eq!(status, 403);
    // Under another event ID.
    let (status, _) = send_invite(&p, key, &room, "$not-this-one", good.clone()).await;
    assert_eq!(status, 400);
    // With a forged signature.
    let mut forged = good.clone();
    forged["signatures"]["two.test"]["ed25519:k2"] = json!("AAAA".repeat(21) + "AA");
    let (status, _) = send_invite(&p, key, &room, &id, forged).await;
    assert_eq!(status, 403);
    assert!(p.one.hs.store.remote_invite(&room, ANN).unwrap().is_none());

    // The real one is co-signed, returned and kept for ann.
    let (status, r) = send_invite(&p, key, &room, &id, good).await;
    assert_eq!(status, 200, "{r}");
    assert!(signed_by(&r["event"], "one.test") && signed_by(&r["event"], "two.test"));
    let kept = p.one.hs.store.remote_invite(&room, ANN).unwrap().unwrap();
    assert_eq!(kept.event_id, id);
    assert!(kept
        .invite_state
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Bob's"));
}
