//! Conifer and matrix-org's Go Pinecone in one network, on loopback.
//!
//! These need the Go reference relay (`cmd/pinecone`, built by `.ci/run` from
//! `interop/go-pinecone`) at `$CONIFER_GO_PINECONE`, and must run inside a
//! network namespace of their own: the Go relay always starts multicast
//! discovery, which must not reach a real network. `.ci/run` does both:
//!
//! ```sh
//! ip netns exec <ns> cargo test -p conifer-net --test go_interop -- --ignored
//! ```

use std::process::Stdio;
use std::time::Duration;

use conifer_net::{Delivery, Node};
use conifer_overlay::router::RouterConfig;
use conifer_overlay::wire::{encode_handshake, HANDSHAKE_LEN};
use conifer_overlay::{Identity, PublicKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

struct GoNode {
    child: Child,
    key: PublicKey,
    tcp: String,
    ws: String,
}

impl GoNode {
    async fn start(seed: [u8; 32], connect: Option<&str>) -> GoNode {
        let bin = std::env::var("CONIFER_GO_PINECONE")
            .expect("set CONIFER_GO_PINECONE to the Go pinecone binary (see .ci/run)");
        let mut cmd = Command::new(bin);
        cmd.args([
            "-listen",
            "127.0.0.1:0",
            "-listenws",
            "127.0.0.1:0",
            "-manhole",
            "-secretkey",
            &hex::encode(seed),
        ]);
        if let Some(c) = connect {
            cmd.args(["-connect", c]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Go pinecone starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut key, mut tcp, mut ws) = (None, None, None);
        while key.is_none() || tcp.is_none() || ws.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("Go pinecone prints its addresses")
                .unwrap()
                .expect("Go pinecone exited early");
            if let Some(k) = line.strip_prefix("Router identity: ") {
                key = Some(PublicKey::from_hex(k).unwrap());
            } else if let Some(a) = line.strip_prefix("Listening on 127.0.0.1:") {
                tcp = Some(format!("127.0.0.1:{a}"));
            } else if let Some(a) = line.strip_prefix("Listening for WebSockets on http://") {
                ws = Some(a.to_string());
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let node = GoNode {
            child,
            key: key.unwrap(),
            tcp: tcp.unwrap(),
            ws: ws.unwrap(),
        };
        assert_eq!(node.key, Identity::from_seed(seed).public_key());
        node
    }

    /// The Go node's manhole JSON.
    async fn manhole(&self) -> serde_json::Value {
        let mut s = tokio::net::TcpStream::connect(&self.ws).await.unwrap();
        s.write_all(b"GET /manhole HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(json).unwrap()
    }

    async fn root(&self) -> Option<PublicKey> {
        let m = self.manhole().await;
        PublicKey::from_hex(m["root"]["root_public_key"].as_str()?).ok()
    }

    async fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn conifer(seed: [u8; 32]) -> (Node, mpsc::Receiver<Delivery>) {
    Node::start(Identity::from_seed(seed), RouterConfig::default())
}

fn echo(node: &Node, mut rx: mpsc::Receiver<Delivery>) {
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            node.answer_ping(&d);
        }
    });
}

/// Seeds whose keys sort in the order given (lowest first).
fn ordered_seeds(n: usize) -> Vec<[u8; 32]> {
    let mut seeds: Vec<[u8; 32]> = (0..n as u8)
        .map(|i| [i.wrapping_mul(37).wrapping_add(11); 32])
        .collect();
    seeds.sort_by_key(|s| Identity::from_seed(*s).public_key());
    seeds
}

async fn wait_for<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn ping_until(from: &Node, rx: &mut mpsc::Receiver<Delivery>, to: PublicKey) -> Option<bool> {
    for seq in 0..60 {
        let out = from.ping(rx, to, seq, Duration::from_millis(300)).await;
        if out.rtt.is_some() {
            return Some(out.via_tree);
        }
    }
    None
}

#[tokio::test]
#[ignore = "needs the Go reference relay and a network namespace; run by .ci/run"]
async fn pair_agrees_on_root_whichever_side_is_higher() {
    let seeds = ordered_seeds(2);
    for (transport, go_high) in [("tcp", true), ("tcp", false), ("ws", true), ("ws", false)] {
        let (go_seed, our_seed) = if go_high {
            (seeds[1], seeds[0])
        } else {
            (seeds[0], seeds[1])
        };
        let go = GoNode::start(go_seed, None).await;
        let (ours, _rx) = conifer(our_seed);
        let got = if transport == "tcp" {
            ours.connect_tcp(&go.tcp, "static").await.unwrap()
        } else {
            ours.connect_ws(&format!("ws://{}/", go.ws)).await.unwrap()
        };
        assert_eq!(got, go.key);
        let root = go.key.max(ours.public_key());
        let agreed = wait_for(10, || async {
            ours.status().root.key == root && go.root().await == Some(root)
        })
        .await;
        assert!(
            agreed,
            "{transport}, go higher = {go_high}: ours {:?}, go {:?}",
            ours.status().root,
            go.manhole().await["root"]
        );
        ours.shutdown();
    }
}

#[tokio::test]
#[ignore = "needs the Go reference relay and a network namespace; run by .ci/run"]
async fn traffic_crosses_a_mixed_line_both_ways_snek_then_tree() {
    // Conifer A – Go X – Conifer B – Go Y – Conifer C, with varied key order.
    let seeds = ordered_seeds(5);
    let (a, mut arx) = conifer(seeds[2]);
    let (b, brx) = conifer(seeds[4]);
    let (c, mut crx) = conifer(seeds[0]);
    echo(&b, brx);
    let b_tcp = b.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let c_tcp = c.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let x = GoNode::start(seeds[1], Some(&b_tcp.to_string())).await;
    let y = GoNode::start(seeds[3], Some(&c_tcp.to_string())).await;
    a.connect_tcp(&x.tcp, "static").await.unwrap();
    b.connect_ws(&format!("ws://{}/", y.ws)).await.unwrap();

    let root = b.public_key();
    assert!(
        wait_for(15, || async {
            [&a, &b, &c].iter().all(|n| n.status().root.key == root)
                && x.root().await == Some(root)
                && y.root().await == Some(root)
        })
        .await,
        "all five agree on the highest key as root"
    );

    // A → C: the first ping leaves by SNEK, the pong teaches A's router the
    // tree coordinates, later pings leave by tree. C answers meanwhile.
    let outcomes = tokio::select! {
        o = async {
            let first = ping_until(&a, &mut arx, c.public_key()).await;
            let later = a.ping(&mut arx, c.public_key(), 1000, Duration::from_secs(2)).await;
            (first, later)
        } => o,
        _ = answer_for(&c, &mut crx, Duration::from_secs(60)) => unreachable!("pings finish first"),
    };
    let (first, later) = outcomes;
    assert_eq!(first, Some(false), "first ping A→C by SNEK");
    assert!(
        later.rtt.is_some() && later.via_tree,
        "then by tree: {later:?}"
    );

    // C → A, with A answering: C learned A's coordinates from A's pings.
    let back = tokio::select! {
        o = c.ping(&mut crx, a.public_key(), 2000, Duration::from_secs(3)) => o,
        _ = answer_for(&a, &mut arx, Duration::from_secs(60)) => unreachable!("ping finishes first"),
    };
    assert!(back.rtt.is_some(), "C→A across both Go relays: {back:?}");
    assert!(back.via_tree, "C→A by tree");
}

/// Answers pings arriving at `node` for `how_long`.
async fn answer_for(node: &Node, rx: &mut mpsc::Receiver<Delivery>, how_long: Duration) {
    let deadline = tokio::time::Instant::now() + how_long;
    while let Ok(Some(d)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        node.answer_ping(&d);
    }
}

#[tokio::test]
#[ignore = "needs the Go reference relay and a network namespace; run by .ci/run"]
async fn removing_a_go_relay_reroutes_through_another() {
    // A – X – C and A – Z – C; kill X, traffic flows through Z.
    let seeds = ordered_seeds(4);
    let (a, mut arx) = conifer(seeds[0]);
    let (c, crx) = conifer(seeds[1]);
    echo(&c, crx);
    let c_tcp = c.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut x = GoNode::start(seeds[3], Some(&c_tcp.to_string())).await;
    a.connect_tcp(&x.tcp, "static").await.unwrap();
    assert!(
        ping_until(&a, &mut arx, c.public_key()).await.is_some(),
        "A→C via X"
    );
    let z = GoNode::start(seeds[2], Some(&c_tcp.to_string())).await;
    a.connect_tcp(&z.tcp, "static").await.unwrap();
    x.child.kill().await.unwrap();
    assert!(!x.alive().await);
    assert!(
        wait_for(10, || async { a.status().peers.len() == 1 }).await,
        "A notices X is gone"
    );
    assert!(
        ping_until(&a, &mut arx, c.public_key()).await.is_some(),
        "A→C via Z"
    );
}

#[tokio::test]
#[ignore = "needs the Go reference relay and a network namespace; run by .ci/run"]
async fn short_length_frame_kills_go_but_not_conifer() {
    let seeds = ordered_seeds(2);
    let attacker = Identity::from_seed([0xab; 32]);
    let poison = hex::decode("70696e65000000000005").unwrap();

    async fn attack(addr: &str, me: &Identity, poison: &[u8]) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&encode_handshake(me)).await.unwrap();
        let mut hs = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut hs).await.unwrap();
        s.write_all(poison).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut sink)).await;
    }

    let mut go = GoNode::start(seeds[0], None).await;
    attack(&go.tcp, &attacker, &poison).await;
    let mut died = false;
    for _ in 0..50 {
        if !go.alive().await {
            died = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        died,
        "the Go reference crashes on a length below 10 (if this fails, Go fixed it)"
    );

    let (ours, _rx) = conifer(seeds[1]);
    let addr = ours
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let friend = GoNode::start(seeds[0], Some(&addr.to_string())).await;
    assert!(wait_for(10, || async { ours.status().peers.len() == 1 }).await);
    attack(&addr.to_string(), &attacker, &poison).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peers = ours.status().peers;
    assert_eq!(peers.len(), 1, "only the attacker's peering was closed");
    assert_eq!(peers[0].key, friend.key);
}

#[tokio::test]
#[ignore = "needs the Go reference relay and a network namespace; run by .ci/run"]
async fn star_around_a_go_hub() {
    // Three Conifer nodes around one Go hub; every pair talks through it.
    let seeds = ordered_seeds(4);
    let hub = GoNode::start(seeds[1], None).await;
    let mut leaves = Vec::new();
    for s in [seeds[0], seeds[2], seeds[3]] {
        let (n, rx) = conifer(s);
        n.connect_tcp(&hub.tcp, "static").await.unwrap();
        leaves.push((n, rx));
    }
    let root = seeds
        .iter()
        .map(|s| Identity::from_seed(*s).public_key())
        .max()
        .unwrap();
    assert!(
        wait_for(10, || async {
            leaves.iter().all(|(n, _)| n.status().root.key == root)
                && hub.root().await == Some(root)
        })
        .await
    );
    for i in 0..3 {
        for j in 0..3 {
            if i == j {
                continue;
            }
            let to = leaves[j].0.public_key();
            let (left, right) = leaves.split_at_mut(i.max(j));
            let ((from, frx), (target, trx)) = if i < j {
                (&mut left[i], &mut right[0])
            } else {
                (&mut right[0], &mut left[j])
            };
            let got = tokio::select! {
                o = ping_until(from, frx, to) => o,
                _ = answer_for(target, trx, Duration::from_secs(60)) => unreachable!(),
            };
            assert!(got.is_some(), "leaf {i} -> leaf {j} through the Go hub");
        }
    }
}
