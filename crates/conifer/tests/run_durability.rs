//! `conifer run` as users run it: the binary, a data directory, the client
//! API on loopback. Messages a client saw acknowledged survive `kill -9`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `conifer run` accepts client connections.
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "conifer run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args([
            "run",
            "--server-name",
            "durable.test",
            "--client-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("CONIFER_RATE_LIMITS", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    child
}

/// A minimal HTTP/1.1 JSON client over std, so the test needs no runtime.
fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

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

/// Starts a P2P node (no `--server-name`) and returns its printed server name.
fn start_p2p(dir: &std::path::Path, port: u16) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args([
            "run",
            "--no-multicast",
            "--listen",
            "127.0.0.1:0",
            "--client-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let name = first
        .strip_prefix("server name")
        .expect("first line names the server")
        .trim()
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    wait_for_port(port);
    (child, name)
}

#[test]
fn a_p2p_node_is_named_by_its_key_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut node, name) = start_p2p(dir.path(), port);
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
    node.kill().unwrap();
    node.wait().unwrap();
    let (mut again, name_again) = start_p2p(dir.path(), port);
    assert_eq!(
        name, name_again,
        "the node key persists in the data directory"
    );
    again.kill().unwrap();
    again.wait().unwrap();
}
