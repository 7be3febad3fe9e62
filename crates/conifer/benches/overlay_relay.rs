//! Relay benchmark: traffic through a 3-node line on loopback, with the middle
//! node a Conifer relay (`conifer overlay`) or a Go Pinecone relay, in the same
//! run. Prints throughput at 1 KiB payloads, ping round trips, the relay's CPU
//! time, and idle CPU and RSS of a relay with 10 peers.
//!
//! Then 64 flows (8 senders × 8 receivers, all peered with the relay) at
//! fixed offered rates, each flow sending bursts of 17 to 64 QUIC-sized
//! (1200-byte) frames back to back: frames delivered per second, loss, and
//! the relay's CPU per 1000 frames, with the Conifer/Go ratio of frames per
//! relay CPU-second.
//!
//! The Go relay always starts multicast discovery, so run this inside a
//! network namespace of your own: `bash bench/overlay-relay.sh` does it all.
//! Without `$CONIFER_GO_PINECONE` only the Conifer relay is measured.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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

/// The multi-flow run: 8 senders × 8 receivers = 64 flows through the relay.
const SENDERS: usize = 8;
const RECEIVERS: usize = 8;
const FLOWS: usize = SENDERS * RECEIVERS;
/// QUIC's packet size on the overlay.
const FLOW_PAYLOAD: usize = 1200;
/// Offered load, frames per second over all 64 flows.
const RATES: [u32; 5] = [2_000, 5_000, 10_000, 20_000, 40_000];
const FLOW_SEND: Duration = Duration::from_secs(4);
/// Time left after sending for the last frames to arrive.
const FLOW_DRAIN: Duration = Duration::from_millis(1500);
const FLOW_MAGIC: &[u8; 4] = b"FLOW";

/// The k-th burst size of flow `f`: 17 to 64 frames, spread over the range.
fn burst_size(f: usize, k: u64) -> u32 {
    17 + ((f as u64 * 13 + k * 29) % 48) as u32
}

struct FlowResult {
    rate: u32,
    sent: u64,
    delivered: u64,
    relay_cpu: Duration,
}

impl FlowResult {
    fn delivered_per_s(&self) -> f64 {
        self.delivered as f64 / FLOW_SEND.as_secs_f64()
    }
    fn loss_pct(&self) -> f64 {
        100.0 * (1.0 - self.delivered as f64 / self.sent.max(1) as f64)
    }
    fn cpu_ms_per_1000(&self) -> f64 {
        self.relay_cpu.as_secs_f64() * 1e3 / (self.delivered.max(1) as f64 / 1000.0)
    }
    /// Frames delivered per relay CPU-second (the CPU clock has 10 ms ticks,
    /// so at least one tick is assumed).
    fn per_cpu_s(&self) -> f64 {
        self.delivered as f64 / self.relay_cpu.as_secs_f64().max(0.01)
    }
}

/// Counts what receivers get: payload = magic, phase (u32), flow (u16).
struct Counters {
    /// Frames delivered per phase (phase 0: path probes, not counted here).
    delivered: Vec<AtomicU64>,
    /// Flows whose probe arrived.
    probed: Vec<AtomicBool>,
}

fn flow_payload(phase: u32, flow: usize) -> Vec<u8> {
    let mut p = vec![0xa5; FLOW_PAYLOAD];
    p[..4].copy_from_slice(FLOW_MAGIC);
    p[4..8].copy_from_slice(&phase.to_be_bytes());
    p[8..10].copy_from_slice(&(flow as u16).to_be_bytes());
    p
}

async fn measure_flows(relay: &Relay) -> Vec<FlowResult> {
    let quiet = RouterConfig {
        wakeup_broadcasts: false,
        ..RouterConfig::default()
    };
    let counters = Arc::new(Counters {
        delivered: (0..=RATES.len()).map(|_| AtomicU64::new(0)).collect(),
        probed: (0..FLOWS).map(|_| AtomicBool::new(false)).collect(),
    });
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let (n, rx) = Node::start(Identity::from_seed([0x20 + i as u8; 32]), quiet.clone());
        n.connect_tcp(&relay.addr, "flows").await.unwrap();
        senders.push((n, rx));
    }
    let mut receivers = Vec::new();
    for j in 0..RECEIVERS {
        let (n, mut rx) = Node::start(Identity::from_seed([0xa0 + j as u8; 32]), quiet.clone());
        n.connect_tcp(&relay.addr, "flows").await.unwrap();
        let c = counters.clone();
        let me = n.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let p = &d.payload;
                if p.len() != FLOW_PAYLOAD || !p.starts_with(FLOW_MAGIC) {
                    continue;
                }
                let phase = u32::from_be_bytes(p[4..8].try_into().unwrap()) as usize;
                let flow = u16::from_be_bytes(p[8..10].try_into().unwrap()) as usize;
                if phase == 0 {
                    // Answered, as a QUIC peer would: the sender learns our
                    // tree coordinates, and its flow goes tree-routed.
                    c.probed[flow % FLOWS].store(true, Ordering::Relaxed);
                    let _ = me.send(d.source, d.payload);
                } else if let Some(n) = c.delivered.get(phase) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        receivers.push(n);
    }
    let dests: Vec<_> = receivers.iter().map(|n| n.public_key()).collect();
    // Every flow's path forms (and its tree coordinates arrive) first.
    for round in 0.. {
        let mut all = true;
        for f in 0..FLOWS {
            let (i, j) = (f / RECEIVERS, f % RECEIVERS);
            let ready = counters.probed[f].load(Ordering::Relaxed)
                && senders[i].0.has_coords_for(&dests[j]);
            if !ready {
                all = false;
                let _ = senders[i].0.send(dests[j], flow_payload(0, f));
            }
        }
        if all {
            break;
        }
        assert!(
            round < 300,
            "64 flows through the {} relay never formed",
            relay.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut results = Vec::new();
    for (r, &rate) in RATES.iter().enumerate() {
        let phase = r as u32 + 1;
        let per_flow = rate as f64 / FLOWS as f64;
        // Flow f's bursts start spread over the first burst period.
        let mut next: Vec<f64> = (0..FLOWS)
            .map(|f| (f as f64 / FLOWS as f64) * 40.0 / per_flow)
            .collect();
        let mut bursts = vec![0u64; FLOWS];
        let mut sent = 0u64;
        let cpu_before = cpu_time(relay.child.id());
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        loop {
            tick.tick().await;
            let t = start.elapsed().as_secs_f64();
            if t >= FLOW_SEND.as_secs_f64() {
                break;
            }
            for f in 0..FLOWS {
                while next[f] <= t {
                    let size = burst_size(f, bursts[f]);
                    bursts[f] += 1;
                    next[f] += size as f64 / per_flow;
                    let (i, j) = (f / RECEIVERS, f % RECEIVERS);
                    for _ in 0..size {
                        if senders[i].0.send(dests[j], flow_payload(phase, f)).is_ok() {
                            sent += 1;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(FLOW_DRAIN).await;
        let relay_cpu = cpu_time(relay.child.id()) - cpu_before;
        results.push(FlowResult {
            rate,
            sent,
            delivered: counters.delivered[phase as usize].load(Ordering::Relaxed),
            relay_cpu,
        });
    }
    for (n, _) in &senders {
        n.shutdown();
    }
    for n in &receivers {
        n.shutdown();
    }
    results
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
    let mut flow_rows = Vec::new();
    for kind in &kinds {
        let relay = start_relay(kind);
        let line = rt.block_on(measure_line(&relay));
        drop(relay);
        let relay = start_relay(kind);
        let flows = rt.block_on(measure_flows(&relay));
        drop(relay);
        let relay = start_relay(kind);
        let (idle_cpu, rss) = rt.block_on(measure_idle(&relay));
        rows.push((kind.to_string(), line, idle_cpu, rss));
        flow_rows.push((kind.to_string(), flows));
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

    println!(
        "\n{FLOWS} flows, bursts of 17-64 frames of {FLOW_PAYLOAD} B, {} s per rate",
        FLOW_SEND.as_secs()
    );
    println!(
        "{:<8} {:>9} {:>11} {:>11} {:>8} {:>10} {:>14} {:>16}",
        "relay",
        "offered/s",
        "sent",
        "delivered/s",
        "loss",
        "relay CPU",
        "CPU ms/1000 fr",
        "frames/CPU-s"
    );
    for (kind, flows) in &flow_rows {
        for f in flows {
            println!(
                "{:<8} {:>9} {:>11} {:>11.0} {:>7.2}% {:>9.2}s {:>14.2} {:>16.0}",
                kind,
                f.rate,
                f.sent,
                f.delivered_per_s(),
                f.loss_pct(),
                f.relay_cpu.as_secs_f64(),
                f.cpu_ms_per_1000(),
                f.per_cpu_s()
            );
        }
    }
    if flow_rows.len() == 2 {
        for (c, g) in flow_rows[0].1.iter().zip(&flow_rows[1].1) {
            println!(
                "Conifer/Go at {:>6} frames/s offered: frames per relay CPU-second {:.2}x, delivered {:.2}x",
                c.rate,
                c.per_cpu_s() / g.per_cpu_s(),
                c.delivered_per_s() / g.delivered_per_s().max(1.0)
            );
        }
    }
}
