//! Two P2P nodes (`conifer run`, no server name) peered over TCP on
//! loopback: a user on one joins a room on the other, over QUIC sessions
//! through the overlay, and messages flow both ways.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn register(port: u16, name: &str) -> String {
    let r = call(
        port,
        "POST",
        "/_matrix/client/v3/register",
        None,
        &format!(r#"{{"username":"{name}","password":"pw","auth":{{"type":"m.login.dummy"}}}}"#),
    );
    r["access_token"].as_str().expect("registered").to_owned()
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

/// Message bodies `token`'s user sees in the room, oldest first.
fn bodies(port: u16, token: &str, room: &str) -> Vec<String> {
    let page = call(
        port,
        "GET",
        &format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=100",
            enc(room)
        ),
        Some(token),
        "",
    );
    page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Alice creates a public room (with `extra` in the request, e.g. a name)
/// on her node; Bob joins it from his node over the overlay.
fn shared_room(alice_port: u16, alice: &str, bob_port: u16, bob: &str, extra: &str) -> String {
    let body = format!(r#"{{"preset":"public_chat"{extra}}}"#);
    let room = call(
        alice_port,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(alice),
        &body,
    );
    let room = room["room_id"].as_str().unwrap().to_owned();
    eventually("bob joins alice's room over the overlay", || {
        let r = call(
            bob_port,
            "POST",
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            Some(bob),
            "{}",
        );
        r["room_id"].as_str() == Some(room.as_str())
    });
    room
}

#[test]
fn users_on_two_p2p_nodes_chat_through_the_overlay() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_p2p_with(dir_a.path(), free_port(), &[]);
    let peer = format!("127.0.0.1:{}", a.overlay_port);
    let b = start_p2p_with(dir_b.path(), free_port(), &["--peer", &peer]);
    let alice = register(a.client_port, "alice");
    let bob = register(b.client_port, "bob");

    let room = shared_room(
        a.client_port,
        &alice,
        b.client_port,
        &bob,
        r#","name":"Pines""#,
    );
    assert!(room.ends_with(&a.name), "the room lives on node A: {room}");
    let name = call(
        b.client_port,
        "GET",
        &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
        Some(&bob),
        "",
    );
    assert_eq!(name["name"], "Pines");

    call(
        a.client_port,
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
            enc(&room)
        ),
        Some(&alice),
        r#"{"msgtype":"m.text","body":"hello bob"}"#,
    );
    eventually("alice's message reaches bob", || {
        bodies(b.client_port, &bob, &room).contains(&"hello bob".to_owned())
    });
    call(
        b.client_port,
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
            enc(&room)
        ),
        Some(&bob),
        r#"{"msgtype":"m.text","body":"hello alice"}"#,
    );
    eventually("bob's reply reaches alice", || {
        bodies(a.client_port, &alice, &room).contains(&"hello alice".to_owned())
    });
}

#[test]
fn messages_queued_while_a_node_is_down_arrive_when_it_returns() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_p2p_with(dir_a.path(), free_port(), &[]);
    let peer = format!("127.0.0.1:{}", a.overlay_port);
    let b_port = free_port();
    let b = start_p2p_with(dir_b.path(), b_port, &["--peer", &peer]);
    let alice = register(a.client_port, "alice");
    let bob = register(b.client_port, "bob");
    let room = shared_room(a.client_port, &alice, b.client_port, &bob, "");

    // Bob's node dies without warning; alice keeps talking.
    drop(b);
    for i in 0..3 {
        let r = call(
            a.client_port,
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/away{i}",
                enc(&room)
            ),
            Some(&alice),
            &format!(r#"{{"msgtype":"m.text","body":"while you were away {i}"}}"#),
        );
        assert!(
            r["event_id"].is_string(),
            "alice's node acknowledges while bob's is down: {r}"
        );
    }
    // Bob's node comes back with the same key and data; A's queue flushes.
    let _b = start_p2p_with(dir_b.path(), b_port, &["--peer", &peer]);
    eventually("the queued messages reach bob", || {
        let seen = bodies(b_port, &bob, &room);
        (0..3).all(|i| seen.contains(&format!("while you were away {i}")))
    });
}

#[test]
fn the_demo_runs_and_a_and_c_talk_without_b() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conifer"))
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = text
        .split("Without B")
        .nth(1)
        .expect("the demo reaches the part without B");
    assert_eq!(
        after.matches("Loud and clear, through D.").count(),
        2,
        "both A and C show C's reply: {text}"
    );
    assert_eq!(
        after.matches("B is gone; do you still hear me, C?").count(),
        2,
        "{text}"
    );
}

#[test]
fn nodes_peer_over_websocket_on_the_client_port() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_p2p_with(dir_a.path(), free_port(), &[]);
    let ws = format!("ws://127.0.0.1:{}/ws", a.client_port);
    let b = start_p2p_with(dir_b.path(), free_port(), &["--peer", &ws]);
    let alice = register(a.client_port, "alice");
    let bob = register(b.client_port, "bob");
    shared_room(a.client_port, &alice, b.client_port, &bob, "");
    // The overlay's status is on the client port too.
    let status = call(a.client_port, "GET", "/manhole", None, "");
    assert!(
        status.to_string().contains(&b.name),
        "A lists B as a peer: {status}"
    );
}
