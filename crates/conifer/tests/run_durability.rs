//! `conifer run` as users run it: the binary, a data directory, the client
//! API on loopback. Messages a client saw acknowledged survive `kill -9`.

mod common;
use common::*;

#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = start(dir.path(), port);
    let reg = call(
        port,
        "POST",
        "/_matrix/client/v3/register",
        None,
        r#"{"username":"ann","password":"pw","auth":{"type":"m.login.dummy"}}"#,
    );
    let token = reg["access_token"].as_str().unwrap().to_owned();
    let room = call(
        port,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&token),
        "{}",
    )["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let room_path = room.replace('!', "%21").replace(':', "%3A");
    let mut acked = Vec::new();
    for i in 0..50 {
        let r = call(
            port,
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room_path}/send/m.room.message/t{i}"),
            Some(&token),
            &format!(r#"{{"msgtype":"m.text","body":"m{i}"}}"#),
        );
        acked.push(r["event_id"].as_str().expect("acknowledged").to_owned());
    }
    node.kill().unwrap(); // SIGKILL: no shutdown path runs.
    node.wait().unwrap();

    let mut node = start(dir.path(), port);
    let msgs = call(
        port,
        "GET",
        &format!("/_matrix/client/v3/rooms/{room_path}/messages?dir=b&limit=100"),
        Some(&token),
        "",
    );
    let ids: Vec<&str> = msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    for id in &acked {
        assert!(
            ids.contains(&id.as_str()),
            "acknowledged event {id} was lost"
        );
    }
    // The node keeps working on the same room after the restart.
    let r = call(
        port,
        "PUT",
        &format!("/_matrix/client/v3/rooms/{room_path}/send/m.room.message/after"),
        Some(&token),
        r#"{"msgtype":"m.text","body":"after"}"#,
    );
    assert!(r["event_id"].is_string(), "{r}");
    node.kill().unwrap();
    node.wait().unwrap();
}

#[test]
fn a_p2p_node_is_named_by_its_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (node, name) = start_p2p(dir.path(), port);
    assert_eq!(name.len(), 64, "{name}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{name}"
    );
    let reg = call(
        port,
        "POST",
        "/_matrix/client/v3/register",
        None,
        r#"{"username":"me","password":"pw","auth":{"type":"m.login.dummy"}}"#,
    );
    assert_eq!(reg["user_id"], format!("@me:{name}"));
    drop(node); // kills the process
    let (_again, name_again) = start_p2p(dir.path(), port);
    assert_eq!(
        name, name_again,
        "the node key persists in the data directory"
    );
}

/// A second `conifer run` on a data directory in use exits at once with a
/// message naming the first one's PID, instead of splitting the node.
#[test]
fn a_second_node_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path(), free_port());
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["run", "--server-name", "durable.test", "--client-addr"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains(&first.id().to_string()),
        "{stderr}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}
