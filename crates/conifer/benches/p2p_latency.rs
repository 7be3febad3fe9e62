//! P2P message latency across overlay hops. Two `conifer run` nodes (alice
//! on A, bob on B) are joined by a line of `conifer overlay` relays so that
//! A→B takes 1, 3 or 5 overlay hops. Bob long-polls `/sync` while alice
//! sends at a steady 10 msg/s (latency p50/p99), then back to back
//! (messages per second). Finally, B's resident memory when idle with three
//! joined rooms. Run with `bash bench/p2p-latency.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `{"room":{"timeline":{"limit":1000}}}`, percent-encoded.
const TIMELINE_1000: &str = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1000%7D%7D%7D";

struct Proc {
    child: Child,
    overlay: String,
    client: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> String {
    std::env::var("CONIFER_BIN").unwrap_or_else(|_| "target/release/conifer".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[String], dir: Option<&std::path::Path>, client: u16) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("CONIFER_RATE_LIMITS", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = dir {
        cmd.arg("--data-dir").arg(d);
    }
    let mut child = cmd
        .spawn()
        .expect("cannot start conifer; build it with cargo build --release");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut overlay = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let addr = line
            .strip_prefix("overlay")
            .map(str::trim)
            .and_then(|a| a.strip_prefix("tcp://"));
        let relay = line
            .strip_prefix("listening for TCP peerings on ")
            .map(str::trim);
        if let Some(a) = addr.or(relay) {
            overlay = a.to_owned();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    if client != 0 {
        while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Proc {
        child,
        overlay,
        client,
    }
}

fn node(dir: &std::path::Path, peer: Option<&str>) -> Proc {
    let client = free_port();
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
    args.push(format!("127.0.0.1:{client}"));
    if let Some(p) = peer {
        args.extend(["--peer".to_string(), p.to_string()]);
    }
    spawn(&args, Some(dir), client)
}

fn relay(peer: &str) -> Proc {
    let args: Vec<String> = [
        "overlay",
        "--no-multicast",
        "--listen",
        "127.0.0.1:0",
        "--peer",
        peer,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn(&args, None, 0)
}

fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(""))
        .unwrap_or_default()
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

fn register(port: u16, name: &str) -> String {
    let r = call(
        port,
        "POST",
        "/_matrix/client/v3/register",
        None,
        &format!(r#"{{"username":"{name}","password":"pw","auth":{{"type":"m.login.dummy"}}}}"#),
    );
    r["access_token"].as_str().unwrap().to_owned()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn create_and_join(a: &Proc, alice: &str, b: &Proc, bob: &str) -> String {
    let room = call(
        a.client,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(alice),
        r#"{"preset":"public_chat"}"#,
    )["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(
        b.client,
        "POST",
        &format!("/_matrix/client/v3/join/{}", enc(&room)),
        Some(bob),
        "{}",
    )["room_id"]
        .as_str()
        != Some(room.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "bob could not join over the overlay"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    room
}

fn measure(hops: usize) -> serde_json::Value {
    let (dir_a, dir_b) = (tempdir("a"), tempdir("b"));
    let a = node(&dir_a, None);
    let mut relays = Vec::new();
    let mut last = a.overlay.clone();
    for _ in 1..hops {
        let r = relay(&last);
        last = r.overlay.clone();
        relays.push(r);
    }
    let b = node(&dir_b, Some(&last));
    let (alice, bob) = (register(a.client, "alice"), register(b.client, "bob"));
    let room = create_and_join(&a, &alice, &b, &bob);

    // Bob's client long-polls; arrivals are matched to send times by body.
    let sent: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (sent, seen, stop, bob, port) = (
            sent.clone(),
            seen.clone(),
            stop.clone(),
            bob.clone(),
            b.client,
        );
        // The first token is taken before anything is sent, so that no
        // message (the warm-up above all) can land before it and be missed.
        let mut since = call(port, "GET", "/_matrix/client/v3/sync", Some(&bob), "")["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = call(
                    port,
                    "GET",
                    // A large timeline limit: a transaction can bring 50 events
                    // at once, and the default limit of 10 would hide most.
                    &format!(
                        "/_matrix/client/v3/sync?timeout=2000&filter={TIMELINE_1000}&since={since}"
                    ),
                    Some(&bob),
                    "",
                );
                let now = Instant::now();
                for room in r["rooms"]["join"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    for e in room["timeline"]["events"].as_array().into_iter().flatten() {
                        if let Some(body) = e["content"]["body"].as_str() {
                            if let Some(t) = sent.lock().unwrap().get(body) {
                                seen.lock().unwrap().push((
                                    body.to_owned(),
                                    now.duration_since(*t).as_secs_f64() * 1000.0,
                                ));
                            }
                        }
                    }
                }
                since = r["next_batch"].as_str().unwrap_or(&since).to_owned();
            }
        })
    };
    let send = |body: String| {
        sent.lock().unwrap().insert(body.clone(), Instant::now());
        let r = call(
            a.client,
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{body}",
                enc(&room)
            ),
            Some(&alice),
            &format!(r#"{{"msgtype":"m.text","body":"{body}"}}"#),
        );
        assert!(r["event_id"].is_string(), "{r}");
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Warm-up: the first message also sets up the QUIC session.
    send("warmup".into());
    wait_for(1);
    for i in 0..100 {
        send(format!("paced{i}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(101);
    let start = Instant::now();
    for i in 0..300 {
        send(format!("burst{i}"));
    }
    wait_for(401);
    let burst_secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = syncer.join();
    let seen = seen.lock().unwrap().clone();
    let mut paced: Vec<f64> = seen
        .iter()
        .filter(|(b, _)| b.starts_with("paced"))
        .map(|(_, l)| *l)
        .collect();
    paced.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let burst = seen.iter().filter(|(b, _)| b.starts_with("burst")).count();

    // Idle memory of B with three joined rooms.
    create_and_join(&a, &alice, &b, &bob);
    create_and_join(&a, &alice, &b, &bob);
    std::thread::sleep(Duration::from_secs(5));
    let idle_rss = rss_mib(b.child.id());
    // For a look inside the idle node (gdb, /proc/PID/smaps) before it stops.
    if let Some(hold) = std::env::var("P2P_BENCH_HOLD_S")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("holding node B (pid {}) for {hold} s", b.child.id());
        std::thread::sleep(Duration::from_secs(hold));
    }
    drop(relays);
    let _ = (
        std::fs::remove_dir_all(&dir_a),
        std::fs::remove_dir_all(&dir_b),
    );
    serde_json::json!({
        "overlay_hops": hops,
        "paced_messages": paced.len(),
        "latency_ms_p50": (percentile(&paced, 0.5) * 100.0).round() / 100.0,
        "latency_ms_p99": (percentile(&paced, 0.99) * 100.0).round() / 100.0,
        "burst_delivered": burst,
        "messages_per_s": (burst as f64 / burst_secs * 10.0).round() / 10.0,
        "idle_rss_mib_3_rooms": (idle_rss * 10.0).round() / 10.0,
    })
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("conifer-p2p-bench-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn main() {
    let hops: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    for h in if hops.is_empty() { vec![1, 3, 5] } else { hops } {
        println!("{}", measure(h));
    }
}
