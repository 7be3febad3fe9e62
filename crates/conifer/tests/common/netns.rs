//! Network namespaces for tests that need more than loopback: two
//! namespaces joined by a veth pair, and processes started inside one.
//! Needs root.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Namespaces {
    pub a: String,
    pub b: String,
}

pub fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .expect("ip runs")
        .success();
    assert!(ok, "ip {args:?} failed");
}

impl Namespaces {
    /// Two namespaces, `a` and `b`, linked by veth with 10.251.0.1/24 and 10.251.0.2/24.
    pub fn new(tag: &str) -> Self {
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
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(ns: &str, program: &str, args: &[&str]) -> Proc {
        Self::spawn_env(ns, program, args, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_env(ns: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
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
    pub fn expect(&self, needle: &str, within: Duration) -> Option<String> {
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
