//! `conifer demo`: three P2P nodes on loopback, peered in a line A–B–C, each
//! with a user; they share a room and chat; then a relay D links A and C,
//! B stops, and A and C keep talking through D. Every node is this same
//! binary run as `conifer run` (or `conifer overlay` for the relay).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Proc {
    child: Child,
    name: String,
    overlay: String,
    client: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `conifer run` (P2P) or `conifer overlay` and reads what it prints.
fn spawn(args: &[String], dir: Option<&std::path::Path>) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("cannot find the conifer binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("CONIFER_RATE_LIMITS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = dir {
        cmd.arg("--data-dir").arg(d);
    }
    let mut child = cmd.spawn().context("cannot start a node")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let (mut name, mut overlay) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line?;
        if let Some(n) = line.strip_prefix("server name") {
            name = n.trim().to_owned();
        } else if let Some(n) = line.strip_prefix("node key") {
            name = n.trim().to_owned();
        }
        let addr = line
            .strip_prefix("overlay")
            .map(str::trim)
            .and_then(|a| a.strip_prefix("tcp://"));
        let relay_addr = line
            .strip_prefix("listening for TCP peerings on ")
            .map(str::trim);
        if let Some(a) = addr.or(relay_addr) {
            overlay = a.to_owned();
        }
        if !name.is_empty() && !overlay.is_empty() {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let client = args
        .iter()
        .position(|a| a == "--client-addr")
        .and_then(|i| args[i + 1].rsplit(':').next()?.parse().ok())
        .unwrap_or(0);
    if client != 0 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            if Instant::now() > deadline {
                bail!("a node did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(Proc {
        child,
        name,
        overlay,
        client,
    })
}

fn node(dir: &std::path::Path, peers: &[&str]) -> anyhow::Result<Proc> {
    let mut args: Vec<String> = [
        "run",
        "--no-multicast",
        "--listen",
        "127.0.0.1:0",
        "--client-addr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("127.0.0.1:{}", free_port()?));
    for p in peers {
        args.push("--peer".into());
        args.push(p.to_string());
    }
    spawn(&args, Some(dir))
}

/// One HTTP/1.1 exchange with a node's client API.
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
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

fn register(port: u16, user: &str) -> anyhow::Result<String> {
    let r = call(
        port,
        "POST",
        "/_matrix/client/v3/register",
        None,
        &format!(r#"{{"username":"{user}","password":"demo","auth":{{"type":"m.login.dummy"}}}}"#),
    )?;
    r["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("registration failed")
}

fn until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out: {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// `(sender, body)` of the messages a user sees in the room, oldest first.
fn transcript(port: u16, token: &str, room: &str) -> Vec<(String, String)> {
    let page = call(
        port,
        "GET",
        &format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=100",
            enc(room)
        ),
        Some(token),
        "",
    )
    .unwrap_or_default();
    page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or("").to_owned(),
                e["content"]["body"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn short(user: &str) -> String {
    let (local, server) = user
        .trim_start_matches('@')
        .split_once(':')
        .unwrap_or((user, ""));
    format!("@{local}:{}…", &server[..8.min(server.len())])
}

fn say(port: u16, token: &str, room: &str, txn: &str, text: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "msgtype": "m.text", "body": text }).to_string();
    let r = call(
        port,
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            enc(room)
        ),
        Some(token),
        &body,
    )?;
    r["event_id"].as_str().map(|_| ()).context("sending failed")
}

fn print_transcripts(nodes: &[(&str, &Proc, &str)], room: &str) {
    for (label, p, token) in nodes {
        println!("  as node {label}'s client sees it:");
        for (sender, body) in transcript(p.client, token, room) {
            println!("    {:<22} {body}", short(&sender));
        }
    }
}

pub fn run() -> anyhow::Result<()> {
    let dirs = [tempfile_dir("a")?, tempfile_dir("b")?, tempfile_dir("c")?];
    println!("Starting three P2P nodes on loopback, peered in a line A - B - C ...");
    let a = node(&dirs[0], &[])?;
    let b = node(&dirs[1], &[&a.overlay])?;
    let c = node(&dirs[2], &[&b.overlay])?;
    for (l, p) in [("A", &a), ("B", &b), ("C", &c)] {
        println!(
            "  node {l}: server name {}…  client API http://127.0.0.1:{}",
            &p.name[..16],
            p.client
        );
    }
    let (alice, bob, carol) = (
        register(a.client, "alice")?,
        register(b.client, "bob")?,
        register(c.client, "carol")?,
    );
    println!("Registered @alice on A, @bob on B, @carol on C.");
    let room = call(
        a.client,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&alice),
        r#"{"preset":"public_chat","name":"Conifer demo"}"#,
    )?;
    let room = room["room_id"]
        .as_str()
        .context("createRoom failed")?
        .to_owned();
    println!("Alice created {room} on A; Bob and Carol join it over the overlay (Carol's node reaches A through B) ...");
    for (port, token) in [(b.client, &bob), (c.client, &carol)] {
        until("a join over the overlay", || {
            call(
                port,
                "POST",
                &format!("/_matrix/client/v3/join/{}", enc(&room)),
                Some(token),
                "{}",
            )
            .is_ok_and(|r| r["room_id"].as_str() == Some(room.as_str()))
        })?;
    }
    say(a.client, &alice, &room, "a1", "Hello from A!")?;
    say(b.client, &bob, &room, "b1", "B here, relaying for C.")?;
    say(c.client, &carol, &room, "c1", "C here, two hops from A.")?;
    let everyone = [
        ("A", &a, alice.as_str()),
        ("B", &b, bob.as_str()),
        ("C", &c, carol.as_str()),
    ];
    until("every message on every node", || {
        everyone
            .iter()
            .all(|(_, p, t)| transcript(p.client, t, &room).len() >= 3)
    })?;
    println!("\nThe room on each node:");
    print_transcripts(&everyone, &room);

    println!("\nAdding a relay D peered with A and C, then stopping B ...");
    let d = spawn(
        &[
            "overlay".into(),
            "--no-multicast".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--peer".into(),
            a.overlay.clone(),
            "--peer".into(),
            c.overlay.clone(),
        ],
        None,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    drop(b);
    say(
        a.client,
        &alice,
        &room,
        "a2",
        "B is gone; do you still hear me, C?",
    )?;
    until("A's message reaches C without B", || {
        transcript(c.client, &carol, &room)
            .iter()
            .any(|(_, m)| m.starts_with("B is gone"))
    })?;
    say(c.client, &carol, &room, "c2", "Loud and clear, through D.")?;
    until("C's reply reaches A without B", || {
        transcript(a.client, &alice, &room)
            .iter()
            .any(|(_, m)| m.starts_with("Loud and clear"))
    })?;
    println!("\nWithout B (A and C talk through the relay D):");
    print_transcripts(
        &[("A", &a, alice.as_str()), ("C", &c, carol.as_str())],
        &room,
    );
    drop(d);
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    println!("\nDone: three homeservers, no DNS, no certificates, one overlay.");
    Ok(())
}

fn tempfile_dir(label: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("conifer-demo-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
