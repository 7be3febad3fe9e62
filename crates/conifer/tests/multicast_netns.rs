//! LAN discovery between two network namespaces joined by a veth pair: two
//! Conifer nodes find each other, and so do a Conifer node and Go Pinecone.
//!
//! Needs root (it creates namespaces) and, for the Go half, the relay at
//! `$CONIFER_GO_PINECONE`; `.ci/run` runs it with `-- --ignored`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Namespaces {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .expect("ip runs")
        .success();
    assert!(ok, "ip {args:?} failed");
}

impl Namespaces {
    /// Two namespaces, `a` and `b`, linked by veth with 10.251.0.1/24 and 10.251.0.2/24.
    fn new(tag: &str) -> Self {
        let pid = std::process::id();
        let ns = Namespaces {
            a: format!("cfa-{tag}-{pid}"),
            b: format!("cfb-{tag}-{pid}"),
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&[
            "link", "add", "va", "netns", &ns.a, "type", "veth", "peer", "name", "vb", "netns",
            &ns.b,
        ]);
        for (n, dev, addr) in [
            (&ns.a, "va", "10.251.0.1/24"),
            (&ns.b, "vb", "10.251.0.2/24"),
        ] {
            ip(&["-n", n, "addr", "add", addr, "dev", dev]);
            ip(&["-n", n, "link", "set", dev, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A child process whose stdout lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(ns: &str, program: &str, args: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("process starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc { child, lines }
    }

    /// Waits for a line containing `needle`; returns it.
    fn expect(&self, needle: &str, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conifer(ns: &str) -> (Proc, String) {
    let p = Proc::spawn(ns, env!("CARGO_BIN_EXE_conifer"), &["overlay"]);
    let line = p
        .expect("node key ", Duration::from_secs(10))
        .expect("node prints its key");
    let key = line.trim_start_matches("node key ").trim().to_string();
    (p, key)
}

#[test]
#[ignore = "needs root to create network namespaces; run by .ci/run"]
fn two_conifer_nodes_discover_each_other() {
    let ns = Namespaces::new("cc");
    let (a, key_a) = conifer(&ns.a);
    let (b, key_b) = conifer(&ns.b);
    assert!(
        a.expect(&format!("peer {key_b} connected"), Duration::from_secs(15))
            .is_some(),
        "a discovered b"
    );
    assert!(
        b.expect(&format!("peer {key_a} connected"), Duration::from_secs(15))
            .is_some(),
        "b discovered a"
    );
}

#[test]
#[ignore = "needs root and the Go reference relay; run by .ci/run"]
fn conifer_and_go_discover_each_other() {
    let go_bin = std::env::var("CONIFER_GO_PINECONE").expect("CONIFER_GO_PINECONE is set");
    let ns = Namespaces::new("cg");
    let (a, _key_a) = conifer(&ns.a);
    let go = Proc::spawn(
        &ns.b,
        &go_bin,
        &["-listen", "127.0.0.1:0", "-listenws", "127.0.0.1:0"],
    );
    let line = go
        .expect("Router identity: ", Duration::from_secs(10))
        .expect("Go prints its key");
    let go_key = line
        .trim_start_matches("Router identity: ")
        .trim()
        .to_string();
    assert!(
        a.expect(&format!("peer {go_key} connected"), Duration::from_secs(20))
            .is_some(),
        "Conifer and Go peered by multicast"
    );
}
