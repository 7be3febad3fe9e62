//! How much memory unauthenticated WebSocket peers can make a node hold.
//!
//! A test binary of its own with a single test: it reads this process's RSS,
//! which other tests running alongside would disturb.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Hostile connections to the listener: 8 sources (127.0.0.2–9) × 8 each.
const HOSTILE_SOURCES: u8 = 8;
const PER_SOURCE: usize = 8;
/// Each hostile connection pushes at most this much of its never-ending message.
const LISTENER_PUSH: usize = 4 << 20;
/// Hostile servers we dial, and what each pushes at most.
const DIALS: usize = 8;
const DIAL_PUSH: usize = 16 << 20;
/// How long any hostile side keeps pushing.
const PUSH_TIME: Duration = Duration::from_secs(5);
/// Frames of the fragmented shape.
const FRAGMENT: u64 = 1 << 20;
/// What the node may grow by in each phase.
const GROWTH_LIMIT: u64 = 64 << 20;

/// The payload every hostile writer sends, shared so the attackers
/// themselves cost (almost) nothing.
static CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];

/// This process's resident set size, from /proc/self/status.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

/// Samples RSS every 2 ms on a thread of its own, keeping the peak, so a
/// transient spike counts as much as a lasting one.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler thread");
        }
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

/// The ways a hostile side starts a message it never finishes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// One frame declaring 1 GiB.
    HugeFrame,
    /// One frame declaring 15 MiB: under the library's default frame limit.
    LargeFrame,
    /// 1 MiB fragments that never set FIN: under any frame limit, growing
    /// only the message.
    Fragments,
}

const SHAPES: [Shape; 3] = [Shape::HugeFrame, Shape::LargeFrame, Shape::Fragments];

/// Writes `shape` until `limit` bytes are out, the deadline passes, or the
/// other side stops taking them. Returns the payload bytes written, which
/// includes what the kernel's socket buffers absorbed after the other side
/// stopped reading.
async fn push(stream: &mut TcpStream, shape: Shape, masked: bool, limit: usize) -> usize {
    let deadline = tokio::time::Instant::now() + PUSH_TIME;
    let (first_len, fragmented) = match shape {
        Shape::HugeFrame => (1u64 << 30, false),
        Shape::LargeFrame => (15u64 << 20, false),
        Shape::Fragments => (FRAGMENT, true),
    };
    let mut sent = 0usize;
    let mut opcode = OP_BINARY;
    let mut frame_left = 0u64;
    while sent < limit {
        if frame_left == 0 {
            if sent > 0 && !fragmented {
                break;
            }
            let len = if sent == 0 { first_len } else { FRAGMENT };
            let header = frame_header(false, opcode, len, masked);
            opcode = OP_CONTINUATION;
            frame_left = len;
            match tokio::time::timeout_at(deadline, stream.write_all(&header)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let n = CHUNK.len().min(frame_left as usize).min(limit - sent);
        match tokio::time::timeout_at(deadline, stream.write_all(&CHUNK[..n])).await {
            Ok(Ok(())) => {
                sent += n;
                frame_left -= n as u64;
            }
            _ => break,
        }
    }
    sent
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[tokio::test]
async fn hostile_websocket_messages_do_not_amplify_memory() {
    let (b, brx) = node(0x51);
    echo(&b, brx);
    let addr = b.listen_ws(LOOPBACK.parse().unwrap(), "/ws").await.unwrap();
    let (a, mut arx) = node(0x52);
    // Settle the runtime and allocator before the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Phase 1: 64 hostile connections to the listener.
    let before = rss_bytes();
    let sampler = PeakRss::start();
    let started = Instant::now();
    let mut attackers = Vec::new();
    for source in 0..HOSTILE_SOURCES {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + source));
        for k in 0..PER_SOURCE {
            let shape = SHAPES[(usize::from(source) * PER_SOURCE + k) % SHAPES.len()];
            attackers.push(tokio::spawn(async move {
                let Ok(mut stream) = upgraded_from(ip, addr, "/ws").await else {
                    return (None, 0);
                };
                let sent = push(&mut stream, shape, true, LISTENER_PUSH).await;
                // Hold the connection: hand it back to the test.
                (Some(stream), sent)
            }));
        }
    }
    let mut held = Vec::new();
    let (mut upgraded, mut pushed) = (0, 0usize);
    for attacker in attackers {
        let (stream, sent) = attacker.await.unwrap();
        upgraded += usize::from(stream.is_some());
        pushed += sent;
        held.extend(stream);
    }
    let flood_time = started.elapsed();
    // Let the node act on what arrived before reading the peak.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    let peak = sampler.finish();
    println!(
        "listener: {upgraded} of {} hostile upgrades accepted, {:.1} MiB written by them in {flood_time:.1?}; \
         RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        usize::from(HOSTILE_SOURCES) * PER_SOURCE,
        mib(pushed as u64),
        mib(before),
        mib(peak),
        mib(after),
    );
    assert!(
        upgraded > 0,
        "no hostile connection got as far as the upgrade"
    );
    // Each over-size message ended its connection (writes above may still
    // have "succeeded" into the kernel's socket buffers).
    let mut closed = 0;
    for stream in &mut held {
        closed += usize::from(closed_within(stream, Duration::from_secs(2)).await);
    }
    println!("listener: the node closed {closed} of {upgraded} hostile connections");
    assert_eq!(closed, upgraded, "hostile connections left open");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < GROWTH_LIMIT,
        "hostile WebSocket connections grew RSS by {:.1} MiB",
        mib(growth)
    );

    // An honest peer still peers through the same listener and routes. The
    // node may take a moment to drop the hostile connections, so redial a
    // few times as a static peer would.
    let mut connected = false;
    for _ in 0..20 {
        if a.connect_ws(&format!("ws://{addr}/ws")).await.is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(connected, "an honest peer could not peer with the listener");
    assert!(can_ping(&a, &mut arx, b.public_key()).await);
    // No slot is left taken by the flood or by the honest peer.
    assert!(eventually(5, || b.pending_handshakes() == 0).await);
    drop(held);

    // Phase 2: dialling hostile servers that answer the upgrade with a
    // message that never ends.
    let server = TcpListener::bind(LOOPBACK).await.unwrap();
    let server_addr: SocketAddr = server.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let mut pushers = Vec::new();
        for i in 0..DIALS {
            let Ok((mut stream, _)) = server.accept().await else {
                break;
            };
            pushers.push(tokio::spawn(async move {
                if accept_upgrade(&mut stream).await.is_err() {
                    return (stream, 0);
                }
                let sent = push(&mut stream, SHAPES[i % SHAPES.len()], false, DIAL_PUSH).await;
                (stream, sent)
            }));
        }
        let mut out = Vec::new();
        for p in pushers {
            out.push(p.await.unwrap());
        }
        out
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let sampler = PeakRss::start();
    let started = Instant::now();
    let dials: Vec<_> = (0..DIALS)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let result = a.connect_ws(&format!("ws://{server_addr}/")).await;
                (result, t.elapsed())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for d in dials {
        outcomes.push(d.await.unwrap());
    }
    let held = tokio::time::timeout(PUSH_TIME * 2, serving)
        .await
        .expect("hostile server finished")
        .unwrap();
    let pushed: usize = held.iter().map(|(_, sent)| sent).sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    let peak = sampler.finish();
    let slowest = outcomes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!(
        "dialler: {DIALS} dials, {:.1} MiB written by the servers in {:.1?}, slowest dial failed after {slowest:.1?}; \
         RSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        mib(pushed as u64),
        started.elapsed(),
        mib(before),
        mib(peak),
        mib(after),
    );
    for (result, _) in &outcomes {
        assert!(
            result.is_err(),
            "a dial to a hostile server peered: {result:?}"
        );
    }
    let growth = peak.saturating_sub(before);
    assert!(
        growth < GROWTH_LIMIT,
        "dialling hostile WebSocket servers grew RSS by {:.1} MiB",
        mib(growth)
    );
    // The honest peering survived all this.
    assert!(can_ping(&a, &mut arx, b.public_key()).await);
}
