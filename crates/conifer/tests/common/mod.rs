//! Running the `conifer` binary in tests: ports, start-up, a tiny HTTP client.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `conifer run` accepts client connections.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "conifer run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn start(dir: &std::path::Path, port: u16) -> Child {
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
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> serde_json::Value {
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

/// A running P2P node (no `--server-name`).
pub struct P2pNode {
    pub child: Child,
    pub name: String,
    pub overlay_port: u16,
    pub client_port: u16,
}

impl Drop for P2pNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a P2P node listening for overlay peerings on loopback, with extra
/// arguments (e.g. `--peer`), and reads its server name and overlay port.
pub fn start_p2p_with(dir: &std::path::Path, client_port: u16, extra: &[&str]) -> P2pNode {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args([
            "run",
            "--no-multicast",
            "--listen",
            "127.0.0.1:0",
            "--client-addr",
            &format!("127.0.0.1:{client_port}"),
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("CONIFER_RATE_LIMITS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut name, mut overlay_port) = (String::new(), 0);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("server name") {
            name = n.trim().to_owned();
        }
        if let Some(addr) = line
            .strip_prefix("overlay")
            .map(str::trim)
            .and_then(|a| a.strip_prefix("tcp://"))
        {
            overlay_port = addr.rsplit(':').next().unwrap().parse().unwrap();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    wait_for_port(client_port);
    P2pNode {
        child,
        name,
        overlay_port,
        client_port,
    }
}

/// Starts a P2P node and returns it with its printed server name.
pub fn start_p2p(dir: &std::path::Path, port: u16) -> (P2pNode, String) {
    let node = start_p2p_with(dir, port, &[]);
    let name = node.name.clone();
    (node, name)
}
