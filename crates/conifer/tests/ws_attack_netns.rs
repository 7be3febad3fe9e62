//! Issue 18's WebSocket attack as a test: "64 hostile connections against a
//! listener in a network namespace; RSS must stay under 64 MB and an honest
//! peer must keep routing."
//!
//! A `conifer overlay` relay listens (TCP and WebSocket) in namespace `b`.
//! From namespace `a`, over a veth pair, 64 hostile connections from eight
//! source addresses upgrade to WebSocket and send messages that never end:
//! half announce one huge frame and stream its payload, half send an endless
//! run of unfinished fragments, reconnecting whenever the relay hangs up.
//! Meanwhile an honest node in `a` pings the relay through it over TCP. The
//! relay's resident set is sampled every 5 ms for the whole attack.
//!
//! Needs root (it creates namespaces); `.ci/run` runs it with `-- --ignored`.
//! The attacker is this test binary again, started inside namespace `a` with
//! `CONIFER_WS_ATTACK` naming the target (the `attacker` test does nothing
//! without it).

#[path = "common/netns.rs"]
mod netns;

use netns::{ip, Namespaces, Proc};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCES: u8 = 8;
const PER_SOURCE: usize = 8;
const ATTACK: Duration = Duration::from_secs(6);
const RSS_LIMIT: u64 = 64 << 20;
const TCP_PORT: u16 = 7301;
const WS_PORT: u16 = 7302;

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[test]
#[ignore = "needs root to create network namespaces; run by .ci/run"]
fn a_websocket_flood_keeps_the_relay_small_and_routing() {
    let ns = Namespaces::new("wsatk");
    for n in 0..SOURCES {
        ip(&[
            "-n",
            &ns.a,
            "addr",
            "add",
            &format!("10.251.0.{}/24", 10 + n),
            "dev",
            "va",
        ]);
    }
    let relay = Proc::spawn(
        &ns.b,
        env!("CARGO_BIN_EXE_conifer"),
        &[
            "overlay",
            "--no-multicast",
            "--listen",
            &format!("10.251.0.2:{TCP_PORT}"),
            "--listen-ws",
            &format!("10.251.0.2:{WS_PORT}"),
        ],
    );
    let key = relay
        .expect("node key ", Duration::from_secs(10))
        .expect("the relay prints its key")
        .trim_start_matches("node key ")
        .trim()
        .to_string();
    let pid = relay.child.id();
    let baseline = rss_of(pid).expect("the relay's RSS");

    // Peak RSS, sampled on a thread of its own.
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let exe = std::env::current_exe().unwrap();
    let target = format!("10.251.0.2:{WS_PORT}");
    let attacker = Proc::spawn_env(
        &ns.a,
        exe.to_str().unwrap(),
        &["--ignored", "--exact", "attacker", "--nocapture"],
        &[("CONIFER_WS_ATTACK", &target)],
    );
    std::thread::sleep(Duration::from_secs(1));

    // The honest peer, in the middle of the attack.
    let ping = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.a, env!("CARGO_BIN_EXE_conifer")])
        .args([
            "overlay",
            "ping",
            &key,
            "--count",
            "3",
            "--no-multicast",
            "--peer",
        ])
        .arg(format!("10.251.0.2:{TCP_PORT}"))
        .output()
        .unwrap();
    let report = attacker
        .expect("attack report", ATTACK + Duration::from_secs(20))
        .expect("the attacker reports");
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let stdout = String::from_utf8_lossy(&ping.stdout);
    println!("{report}");
    println!(
        "relay RSS: {:.1} MB before, {:.1} MB peak under attack",
        baseline as f64 / 1e6,
        peak as f64 / 1e6
    );

    // The attack happened: connections were upgraded and pushed data.
    let field = |name: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(field("upgraded") >= 8, "too few upgrades: {report}");
    assert!(field("bytes") >= 1 << 20, "too little pushed: {report}");
    assert!(
        peak < RSS_LIMIT,
        "the relay grew to {peak} bytes under 64 hostile WebSocket connections"
    );
    assert!(ping.status.success(), "the honest ping failed: {stdout}");
    assert!(stdout.contains(&format!("pong from {key}")), "{stdout}");
    assert!(rss_of(pid).is_some(), "the relay died");
}

/// The hostile side (only when started by the test above).
#[test]
#[ignore = "the attacker process of a_websocket_flood_keeps_the_relay_small_and_routing"]
fn attacker() {
    let Ok(target) = std::env::var("CONIFER_WS_ATTACK") else {
        return;
    };
    let target: std::net::SocketAddr = target.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (upgraded, bytes, conns) = rt.block_on(async move {
        let upgraded = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + ATTACK;
        let mut tasks = Vec::new();
        for n in 0..SOURCES {
            for k in 0..PER_SOURCE {
                let source: std::net::SocketAddr =
                    format!("10.251.0.{}:0", 10 + n).parse().unwrap();
                let (upgraded, bytes, conns) = (upgraded.clone(), bytes.clone(), conns.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        conns.fetch_add(1, Ordering::Relaxed);
                        let fragmented = k % 2 == 1;
                        // A relay that stops reading without hanging up ends
                        // the connection's turn at the end of the attack.
                        let deadline = tokio::time::Instant::from_std(end);
                        let _ = tokio::time::timeout_at(
                            deadline,
                            hostile(source, target, fragmented, end, &upgraded, &bytes),
                        )
                        .await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        (
            upgraded.load(Ordering::Relaxed),
            bytes.load(Ordering::Relaxed),
            conns.load(Ordering::Relaxed),
        )
    });
    println!("attack report connections={conns} upgraded={upgraded} bytes={bytes}");
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// One hostile connection: upgrade, then push a message that never ends
/// until `end` or until the relay hangs up.
async fn hostile(
    source: std::net::SocketAddr,
    target: std::net::SocketAddr,
    fragmented: bool,
    end: Instant,
    upgraded: &AtomicU64,
    bytes: &AtomicU64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(source)?;
    let mut s = tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Ok(());
    }
    upgraded.fetch_add(1, Ordering::Relaxed);
    // A masked binary frame header: 2 bytes, 8-byte length, 4-byte mask.
    let frame = |fin: bool, opcode: u8, len: u64| {
        let mut h = vec![(if fin { 0x80 } else { 0 }) | opcode, 0x80 | 127];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    if fragmented {
        // An unfinished message of endless 1 MiB fragments.
        let mut first = true;
        while Instant::now() < end {
            s.write_all(&frame(false, if first { 2 } else { 0 }, 1 << 20))
                .await?;
            first = false;
            for _ in 0..16 {
                s.write_all(&ZEROS).await?;
                bytes.fetch_add(ZEROS.len() as u64, Ordering::Relaxed);
            }
        }
    } else {
        // One frame announcing 1 GiB, streamed.
        s.write_all(&frame(true, 2, 1 << 30)).await?;
        while Instant::now() < end {
            s.write_all(&ZEROS).await?;
            bytes.fetch_add(ZEROS.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}
