//! Relay benchmark: traffic through a 3-node line on loopback, with the middle
//! node a Conifer relay (`conifer overlay`) or a Go Pinecone relay, in the same
//! run. Prints throughput at 1 KiB payloads, ping round trips, the relay's CPU
//! time, and idle CPU and RSS of a relay with 10 peers.
//!
//! The Go relay always starts multicast discovery, so run this inside a
//! network namespace of your own: `bash bench/overlay-relay.sh` does it all.
//! Without `$CONIFER_GO_PINECONE` only the Conifer relay is measured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conifer_net::{Delivery, Node};
use conifer_overlay::router::RouterConfig;
use conifer_overlay::Identity;
use tokio::sync::mpsc;

const PAYLOAD: usize = 1024;
const BLAST: Duration = Duration::from_secs(5);
const PINGS: u32 = 300;

struct Relay {
    name: &'static str,
    child: Child,
    addr: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_relay(kind: &str) -> Relay {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (name, mut cmd, ready) = match kind {
        "conifer" => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_conifer"));
            c.args(["overlay", "--no-multicast", "--listen", &addr])
                .env("RUST_LOG", "warn");
            ("conifer", c, "node key")
        }
        _ => {
            let mut c = Command::new(std::env::var("CONIFER_GO_PINECONE").unwrap());
            c.args(["-listen", &addr, "-listenws", "127.0.0.1:0"]);
            ("go", c, "Listening on 127.0.0.1")
        }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.map(|l| l.contains(ready)).unwrap_or(true) {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Relay { name, child, addr }
}

/// User + system CPU time of a process, from /proc (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Duration::from_millis((field(11) + field(12)) * 10)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct LineResult {
    mb_per_s: f64,
    frames_per_s: f64,
    relay_cpu: Duration,
    p50: Duration,
    p99: Duration,
}

async fn measure_line(relay: &Relay) -> LineResult {
    let quiet = RouterConfig {
        wakeup_broadcasts: false,
        ..RouterConfig::default()
    };
    let (s, mut srx) = Node::start(Identity::from_seed([0x51; 32]), quiet.clone());
    let (d, mut drx) = Node::start(Identity::from_seed([0xd1; 32]), quiet);
    s.connect_tcp(&relay.addr, "bench").await.unwrap();
    d.connect_tcp(&relay.addr, "bench").await.unwrap();

    // D answers pings until told to count instead.
    let (mode_tx, mut mode_rx) = mpsc::channel::<()>(1);
    let (count_tx, mut count_rx) = mpsc::channel::<(u64, Instant)>(1);
    let d2 = d.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(m) = drx.recv() => { d2.answer_ping(&m); }
                _ = mode_rx.recv() => break,
            }
        }
        let mut frames = 0u64;
        let mut last = Instant::now();
        let deadline = tokio::time::Instant::now() + BLAST + Duration::from_secs(2);
        while let Ok(Some(Delivery { payload, .. })) =
            tokio::time::timeout_at(deadline, drx.recv()).await
        {
            if payload.len() == PAYLOAD {
                frames += 1;
                last = Instant::now();
            }
        }
        let _ = count_tx.send((frames, last)).await;
    });

    // Paths form, then latency.
    let mut seq = 0;
    while s
        .ping(&mut srx, d.public_key(), seq, Duration::from_millis(300))
        .await
        .rtt
        .is_none()
    {
        seq += 1;
        assert!(seq < 100, "no path through the {} relay", relay.name);
    }
    let mut rtts = Vec::new();
    for i in 0..PINGS {
        let out = s
            .ping(&mut srx, d.public_key(), 1000 + i, Duration::from_secs(1))
            .await;
        if let Some(rtt) = out.rtt {
            rtts.push(rtt);
        }
    }
    rtts.sort();

    // Throughput: blast 1 KiB payloads; count what arrives.
    mode_tx.send(()).await.unwrap();
    let cpu_before = cpu_time(relay.child.id());
    let start = Instant::now();
    let payload = vec![0x5a; PAYLOAD];
    let dest = d.public_key();
    while start.elapsed() < BLAST {
        for _ in 0..64 {
            let _ = s.send(dest, payload.clone());
        }
        tokio::task::yield_now().await;
    }
    let (frames, last) = count_rx.recv().await.unwrap();
    let relay_cpu = cpu_time(relay.child.id()) - cpu_before;
    let secs = last.duration_since(start).as_secs_f64().max(0.001);
    s.shutdown();
    d.shutdown();
    LineResult {
        mb_per_s: frames as f64 * PAYLOAD as f64 / secs / 1e6,
        frames_per_s: frames as f64 / secs,
        relay_cpu,
        p50: percentile(&rtts, 0.5),
        p99: percentile(&rtts, 0.99),
    }
}

async fn measure_idle(relay: &Relay) -> (Duration, u64) {
    let mut nodes = Vec::new();
    for i in 0..10u8 {
        let (n, rx) = Node::start(Identity::from_seed([0x80 + i; 32]), RouterConfig::default());
        n.connect_tcp(&relay.addr, "idle").await.unwrap();
        nodes.push((n, rx));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = cpu_time(relay.child.id());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let cpu = cpu_time(relay.child.id()) - before;
    let rss = rss_kib(relay.child.id());
    for (n, _) in &nodes {
        n.shutdown();
    }
    (cpu, rss)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut kinds = vec!["conifer"];
    if std::env::var("CONIFER_GO_PINECONE").is_ok() {
        kinds.push("go");
    } else {
        eprintln!("CONIFER_GO_PINECONE not set: measuring the Conifer relay only");
    }
    let mut rows = Vec::new();
    for kind in &kinds {
        let relay = start_relay(kind);
        let line = rt.block_on(measure_line(&relay));
        drop(relay);
        let relay = start_relay(kind);
        let (idle_cpu, rss) = rt.block_on(measure_idle(&relay));
        rows.push((kind.to_string(), line, idle_cpu, rss));
    }
    println!(
        "\n{:<8} {:>9} {:>11} {:>10} {:>12} {:>9} {:>9} {:>14} {:>12}",
        "relay",
        "MB/s",
        "frames/s",
        "relay CPU",
        "MB/CPU-s",
        "p50 RTT",
        "p99 RTT",
        "idle CPU/20s",
        "idle RSS"
    );
    let per_cpu =
        |l: &LineResult| l.mb_per_s * BLAST.as_secs_f64() / l.relay_cpu.as_secs_f64().max(0.01);
    for (kind, l, idle, rss) in &rows {
        println!(
            "{:<8} {:>9.1} {:>11.0} {:>9.2}s {:>12.1} {:>7.2}ms {:>7.2}ms {:>13.2}s {:>8} KiB",
            kind,
            l.mb_per_s,
            l.frames_per_s,
            l.relay_cpu.as_secs_f64(),
            per_cpu(l),
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            idle.as_secs_f64(),
            rss
        );
    }
    if rows.len() == 2 {
        println!(
            "\nConifer/Go: throughput {:.2}x, throughput per relay CPU-second {:.2}x, p50 RTT {:.2}x",
            rows[0].1.mb_per_s / rows[1].1.mb_per_s,
            per_cpu(&rows[0].1) / per_cpu(&rows[1].1),
            rows[0].1.p50.as_secs_f64() / rows[1].1.p50.as_secs_f64()
        );
    }
}
