//! `conifer overlay`: a bare Pinecone relay node, and `conifer overlay ping`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use conifer_net::Node;
use conifer_overlay::router::{Event, RouterConfig};
use conifer_overlay::{Identity, PublicKey};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OverlayArgs {
    #[command(subcommand)]
    pub ping: Option<OverlaySub>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Subcommand, Debug)]
pub enum OverlaySub {
    /// Send pings to a key through the overlay and report round trips.
    Ping {
        /// The destination's public key (64 hex characters).
        key: String,
        /// How many pings to send.
        #[arg(short, long, default_value_t = 5)]
        count: u32,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Where the node listens and whom it peers with.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// TCP address to accept peerings on, e.g. 127.0.0.1:65432.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address for WebSocket peerings (path `/`) and the JSON manhole (`/manhole`).
    #[arg(long)]
    pub listen_ws: Option<SocketAddr>,
    /// A static peer to keep connected: host:port (TCP) or ws://host:port/path. Repeatable.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// File holding the node's key (created if missing); a fresh key each run if omitted.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Do not discover peers on the LAN by multicast.
    #[arg(long)]
    pub no_multicast: bool,
}

impl NodeArgs {
    async fn start(
        &self,
    ) -> anyhow::Result<(Node, tokio::sync::mpsc::Receiver<conifer_net::Delivery>)> {
        let identity = match &self.key_file {
            Some(path) => crate::key_file::load_or_create(path)?,
            None => Identity::generate(&mut rand::rngs::OsRng),
        };
        let (node, rx) = Node::start(identity, RouterConfig::default());
        if let Some(addr) = self.listen {
            let bound = node
                .listen_tcp(addr)
                .await
                .with_context(|| format!("cannot listen for TCP on {addr}"))?;
            println!("listening for TCP peerings on {bound}");
        }
        if let Some(addr) = self.listen_ws {
            let bound = node
                .listen_ws(addr, "/")
                .await
                .with_context(|| format!("cannot listen for WebSockets on {addr}"))?;
            println!("listening for WebSocket peerings on ws://{bound}/ (manhole at http://{bound}/manhole)");
        }
        if !self.no_multicast {
            if let Err(e) = node.start_multicast().await {
                tracing::warn!(error = %e, "LAN discovery is off; use --peer to reach other nodes");
            }
        }
        for peer in &self.peers {
            node.add_static_peer(peer.clone());
        }
        Ok((node, rx))
    }
}

impl OverlayArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        match self.ping {
            Some(OverlaySub::Ping { key, count, node }) => rt.block_on(ping(key, count, node)),
            None => rt.block_on(relay(self.node)),
        }
    }
}

async fn relay(args: NodeArgs) -> anyhow::Result<()> {
    let (node, mut rx) = args.start().await?;
    println!("node key {}", node.public_key());
    let mut events = node.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            Some(d) = rx.recv() => { node.answer_ping(&d); }
            Ok(e) = events.recv() => {
                match e {
                    Event::PeerAdded { key, port } => println!("peer {key} connected on port {port}"),
                    Event::PeerRemoved { key, port } => println!("peer {key} on port {port} left"),
                    Event::RootChanged { .. } | Event::ParentChanged { .. } => print_state(&node),
                    Event::BroadcastReceived { .. } => {}
                }
            }
            _ = tick.tick() => print_state(&node),
            _ = tokio::signal::ctrl_c() => {
                node.shutdown();
                return Ok(());
            }
        }
    }
}

fn print_state(node: &Node) {
    let s = node.status();
    let parent = s
        .parent
        .map_or("none (we are root)".to_string(), |k| k.to_string());
    println!(
        "root {} seq {} | parent {} | coords {} | {} peer(s)",
        s.root.key,
        s.root.seq,
        parent,
        s.coords,
        s.peers.len()
    );
}

async fn ping(key: String, count: u32, args: NodeArgs) -> anyhow::Result<()> {
    let dest = PublicKey::from_hex(&key).with_context(|| format!("bad destination key {key:?}"))?;
    if args.peers.is_empty() {
        anyhow::bail!("give at least one --peer to reach the overlay through");
    }
    let (node, mut rx) = args.start().await?;
    // Wait for a peering and a couple of SNEK bootstrap rounds.
    for _ in 0..100 {
        if !node.status().peers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = 0;
    for seq in 0..count {
        let out = node.ping(&mut rx, dest, seq, Duration::from_secs(3)).await;
        let via = if out.via_tree { "tree" } else { "snek" };
        match out.rtt {
            Some(rtt) => {
                received += 1;
                println!(
                    "pong from {dest}: seq={seq} time={:.2} ms via {via}",
                    rtt.as_secs_f64() * 1e3
                );
            }
            None => println!("no pong from {dest}: seq={seq} (sent via {via})"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    node.shutdown();
    println!("{count} sent, {received} received");
    if received == 0 {
        anyhow::bail!("{dest} did not answer");
    }
    Ok(())
}
