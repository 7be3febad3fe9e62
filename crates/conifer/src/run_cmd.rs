//! `conifer run`: the node. A homeserver on embedded SQLite with its
//! Client-Server API on loopback, and (unless a classic server name is
//! given) an overlay node whose key is also the homeserver's signing key.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use conifer_homeserver::{client, federation, Config, Homeserver};
use conifer_net::session::{serve_router, Sessions};
use std::sync::Arc;

use crate::overlay_transport::{OverlayTransport, MATRIX_ALPN};
use conifer_net::Node;
use conifer_overlay::router::{Event, RouterConfig};

/// The signing-key ID P2P nodes use, for compatibility with Dendrite's P2P demos.
const P2P_KEY_VERSION: &str = "dendrite-demo-yggdrasil";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML configuration file (see docs/conifer.example.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the database, keys and media live (overrides the config file).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the Client-Server API (default 127.0.0.1:8008).
    #[arg(long)]
    pub client_addr: Option<SocketAddr>,
    /// Run as a classic homeserver with this server name (e.g. a gateway or a
    /// test peer). Without it the node is a P2P node named by its key.
    #[arg(long)]
    pub server_name: Option<String>,
    /// TLS address of the Server-Server API for a classic server name, e.g.
    /// 0.0.0.0:8448 (the port the server name names). Without it a classic
    /// server does not accept federation.
    #[arg(long)]
    pub federation_addr: Option<SocketAddr>,
    /// TCP address for overlay peerings, e.g. 0.0.0.0:65432.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A static overlay peer: host:port (TCP) or ws://host:port/path. Repeatable.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Do not discover overlay peers on the LAN by multicast.
    #[arg(long)]
    pub no_multicast: bool,
}

impl RunArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        rt.block_on(self.serve())
    }

    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = self.client_addr {
            config.client.listen = a;
        }
        if let Some(n) = &self.server_name {
            config.server_name = Some(n.clone());
        }
        if let Some(a) = self.federation_addr {
            config.federation.listen = Some(a);
        }
        if let Some(a) = self.listen {
            config.overlay.listen = Some(a);
        }
        config.overlay.peers.extend(self.peers.iter().cloned());
        if self.no_multicast {
            config.overlay.multicast = false;
        }
        config.validate()?;
        Ok(config)
    }

    async fn serve(self) -> anyhow::Result<()> {
        let config = self.config()?;
        let identity = crate::key_file::load_or_create(&config.data_dir.join("node.key"))?;
        let p2p = config.server_name.is_none();
        let name = config
            .server_name
            .clone()
            .unwrap_or_else(|| identity.public_key().to_hex());
        let server_name = conifer_homeserver::OwnedServerName::try_from(name.as_str())
            .map_err(|e| anyhow::anyhow!("server name {name:?} is not valid: {e}"))?;
        // A classic server's key ID names its key, so a server that got a
        // new key under the same name is never judged by a cached old one.
        let key_version = if p2p {
            P2P_KEY_VERSION.to_owned()
        } else {
            format!("c_{}", &identity.public_key().to_hex()[..8])
        };
        let listen = config.client.listen;
        let federation = config.federation.clone();
        let overlay = config.overlay.clone();
        let hs = Homeserver::open(config, &server_name, &key_version, &identity.seed())
            .context("cannot start the homeserver")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen for clients on {listen}"))?;
        println!("server name  {name}");
        println!("user IDs     @<name>:{name}");
        let listen_addr = listener.local_addr()?;
        println!("client API   http://{listen_addr}");

        let node = if p2p {
            Some(start_overlay(&overlay, identity, &hs).await?)
        } else {
            start_https_federation(&hs, &federation, &name).await?;
            None
        };
        // The client port also takes WebSocket peerings at /ws (and serves
        // the overlay's JSON status at /manhole), as Dendrite's P2P demo does.
        let mut app = client::router(hs.clone());
        if let Some(n) = &node {
            app = app.merge(n.http_routes("/ws"));
            println!("overlay      ws://{}/ws", listen_addr);
        }
        let server = conifer_https::serve_http(listener, app, http_limits(&hs.config));
        let mut events = node.as_ref().map(|n| n.subscribe());
        let server = tokio::spawn(server);
        crate::idle_trim::spawn(hs.clone());
        loop {
            tokio::select! {
                r = async { match events.as_mut() { Some(e) => e.recv().await.ok(), None => std::future::pending().await } } => {
                    match r {
                        Some(Event::PeerAdded { key, .. }) => {
                            println!("peer joined  {key}");
                            // Whatever waited for this node can go now.
                            hs.wake_destination(&key.to_hex());
                        }
                        Some(Event::PeerRemoved { key, .. }) => println!("peer left    {key}"),
                        Some(Event::BroadcastReceived { source }) => hs.wake_destination(&source.to_hex()),
                        _ => {}
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
            }
            if server.is_finished() {
                break;
            }
        }
        if let Some(n) = node {
            n.shutdown();
        }
        Ok(())
    }
}

/// Starts the overlay node and federation over it: the homeserver's
/// federation routes are served on QUIC sessions (ALPN `matrix`) and its
/// outbound requests are dialled the same way.
async fn start_overlay(
    overlay: &conifer_homeserver::OverlayConfig,
    identity: conifer_overlay::Identity,
    hs: &Arc<Homeserver>,
) -> anyhow::Result<Node> {
    let (node, deliveries) = Node::start(identity.clone(), RouterConfig::default());
    let (sessions, _other) = Sessions::start(&node, &identity, deliveries, &[MATRIX_ALPN])
        .map_err(|e| anyhow::anyhow!("cannot start QUIC sessions: {e}"))?;
    serve_router(&sessions, MATRIX_ALPN, federation::router(hs.clone()));
    let _ = hs.transport.set(Arc::new(OverlayTransport { sessions }));
    hs.start_federation_sender();
    if let Some(addr) = overlay.listen {
        let bound = node
            .listen_tcp(addr)
            .await
            .with_context(|| format!("cannot listen for TCP on {addr}"))?;
        println!("overlay      tcp://{bound}");
    }
    if overlay.multicast {
        if let Err(e) = node.start_multicast().await {
            tracing::warn!(error = %e, "LAN discovery is off; use --peer to reach other nodes");
        }
    }
    for peer in &overlay.peers {
        node.add_static_peer(peer.clone());
    }
    Ok(node)
}

/// Federation for a classic server name: outbound requests over HTTPS with
/// Matrix server discovery, and (if configured) the TLS listener.
async fn start_https_federation(
    hs: &Arc<Homeserver>,
    config: &conifer_homeserver::FederationConfig,
    name: &str,
) -> anyhow::Result<()> {
    // A server that does not accept federation does not send any either
    // (and so never looks up the names that users put in requests).
    let Some(addr) = config.listen else {
        println!("federation   off (no --federation-addr)");
        return Ok(());
    };
    let transport = conifer_https::HttpsTransport::new(&conifer_https::ClientSettings {
        trust_ca: config.trust_ca.clone(),
        insecure_skip_verify: config.insecure_skip_verify.clone(),
        ip_range_allow: config.ip_range_allow.clone(),
        allowed_servers: config.allowed_servers.clone(),
    })
    .context("federation client")?;
    let _ = hs.transport.set(Arc::new(transport));
    hs.start_federation_sender();
    let certificate = match (&config.tls_certificate, &config.tls_private_key) {
        (Some(chain), Some(key)) => conifer_https::ServerCertificate::Files {
            chain: chain.clone(),
            key: key.clone(),
        },
        (None, None) => conifer_https::ServerCertificate::SelfSigned {
            dir: hs.config.data_dir.clone(),
            names: vec![host_of(name)],
        },
        _ => anyhow::bail!("federation.tls_certificate and tls_private_key go together"),
    };
    let tls = conifer_https::server_config(&certificate).context("federation TLS")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for federation on {addr}"))?;
    println!("federation   https://{}", listener.local_addr()?);
    tokio::spawn(conifer_https::serve_tls(
        listener,
        tls,
        federation::router(hs.clone()),
        http_limits(&hs.config),
    ));
    Ok(())
}

/// The client and federation listeners' limits, from `[client]`.
fn http_limits(config: &conifer_homeserver::Config) -> conifer_https::HttpLimits {
    conifer_https::HttpLimits {
        header_read_timeout: std::time::Duration::from_secs(config.client.header_read_timeout_secs),
        max_connections_per_ip: config.client.max_connections_per_ip,
        limit_loopback: config.client.limit_loopback_per_ip,
        max_connections: config.client.max_connections,
    }
}

/// The host part of a server name (what its certificate names).
fn host_of(server_name: &str) -> String {
    match conifer_https::discovery::ServerName::parse(server_name) {
        Ok(n) => match n.host {
            conifer_https::discovery::Host::Ip(ip) => ip.to_string(),
            conifer_https::discovery::Host::Domain(d) => d,
        },
        Err(_) => server_name.to_owned(),
    }
}
