//! `conifer overlay` as a user runs it: a relay on loopback, then
//! `conifer overlay ping` through it, and the relay's manhole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ping_through_a_relay_and_read_its_manhole() {
    let (tcp, ws) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["overlay", "--no-multicast", "--listen"])
        .arg(format!("127.0.0.1:{tcp}"))
        .arg("--listen-ws")
        .arg(format!("127.0.0.1:{ws}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let relay = Relay(child);
    let key = loop {
        let line = lines.next().expect("relay prints its key").unwrap();
        if let Some(k) = line.strip_prefix("node key ") {
            break k.trim().to_string();
        }
    };

    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args([
            "overlay",
            "ping",
            &key,
            "--count",
            "3",
            "--no-multicast",
            "--peer",
        ])
        .arg(format!("127.0.0.1:{tcp}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ping failed: {stdout}");
    assert!(
        stdout.contains(&format!("pong from {key}: seq=")),
        "{stdout}"
    );
    assert!(
        stdout.contains("via snek"),
        "the first ping has no coordinates: {stdout}"
    );
    assert!(stdout.contains("3 sent, "), "{stdout}");

    // The manhole, over plain HTTP on the WebSocket listener.
    let mut s = TcpStream::connect(("127.0.0.1", ws)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /manhole HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&body[body.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(json["key"], key);
    for field in ["root", "parent", "coords", "peers", "snek_routes"] {
        assert!(json.get(field).is_some(), "manhole has {field}");
    }
    drop(relay);
}

#[test]
fn ping_needs_a_peer_and_a_valid_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args([
            "overlay",
            "ping",
            "not-a-key",
            "--no-multicast",
            "--peer",
            "127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad destination key"));
    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["overlay", "ping", &"ab".repeat(32), "--no-multicast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--peer"));
}
