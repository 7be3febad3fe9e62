//! The client listener of `conifer run` bounds what a client may hold
//! before it has sent a request: a header-read timeout, an early 413 on a
//! declared body over the limit, and a cap on connections per address.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node(Child);
impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `conifer run` with a config file on a free port; returns the node
/// and its port. A port that another test's node took between our probe
/// and our bind makes ours exit: then another port is tried, so the test
/// never talks to someone else's node.
fn start_with_config(dir: &std::path::Path, toml: &str) -> (Node, u16) {
    let config = dir.join("conifer.toml");
    std::fs::write(&config, toml).unwrap();
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_conifer"))
            .args(["run", "--server-name", "limits.test", "--client-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut node = Node(child);
        wait_for_port(port);
        std::thread::sleep(Duration::from_millis(200));
        if node.0.try_wait().unwrap().is_none() {
            return (node, port);
        }
    }
    panic!("conifer run did not start");
}

/// Reads until the server closes the connection (or `limit` passes);
/// returns what it sent and whether it closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

#[test]
fn half_sent_requests_time_out_and_huge_bodies_are_refused_before_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, port) = start_with_config(dir.path(), "[client]\nheader_read_timeout_secs = 1\n");

    // A request head that never ends is cut off after the timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10));
    assert!(closed, "a half-sent request held its connection for 10 s");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body of 10^12 bytes is refused on its declared length alone.
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    big.write_all(
        b"POST /_matrix/client/v3/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{",
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut big, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("M_TOO_LARGE"), "{answer}");

    // The same for a media upload over media.max_upload_bytes.
    let mut upload = TcpStream::connect(("127.0.0.1", port)).unwrap();
    upload
        .write_all(
            b"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000000\r\n\r\n",
        )
        .unwrap();
    let (answer, _) = read_until_closed(&mut upload, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Honest requests are served as before.
    let versions = call(port, "GET", "/_matrix/client/versions", None, "");
    assert!(versions["versions"].is_array(), "{versions}");
}

#[test]
fn one_address_may_hold_only_so_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, port) = start_with_config(
        dir.path(),
        "[client]\nmax_connections_per_ip = 4\nlimit_loopback_per_ip = true\n",
    );
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Let the server accept all four before the fifth.
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = fifth.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut fifth, Duration::from_secs(3));
    assert!(closed && answer.is_empty(), "the fifth got: {answer:?}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let versions = call(port, "GET", "/_matrix/client/versions", None, "");
    assert!(
        versions["versions"].is_array(),
        "served again once the four closed"
    );
}
