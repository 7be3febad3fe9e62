//! TCP peerings: the raw stream carries the handshake, then frames.

use std::net::SocketAddr;

use conifer_overlay::router::PeerType;
use conifer_overlay::PublicKey;
use tokio::net::{TcpListener, TcpStream};

use crate::peering::PeeringInfo;
use crate::{Node, PeeringError};

impl Node {
    /// Listens for TCP peerings on `addr`; returns the bound address.
    ///
    /// Connections are admitted within the node's pending-handshake limits
    /// ([`crate::PendingLimits`]) and must finish the handshake within
    /// [`crate::HANDSHAKE_TIMEOUT`].
    pub async fn listen_tcp(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let node = self.clone();
        self.spawn_until_stopped(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        // Unauthenticated until the handshake is done: admit
                        // only within the pending limits, else drop (close)
                        // the stream at once. Debug level, as a flood would
                        // otherwise flood the log too.
                        let slot = match node.pending.admit(remote.ip()) {
                            Ok(slot) => slot,
                            Err(why) => {
                                tracing::debug!(%remote, %why, "TCP connection refused");
                                continue;
                            }
                        };
                        let node = node.clone();
                        tokio::spawn(async move {
                            let info = PeeringInfo {
                                peer_type: PeerType::Remote,
                                zone: "tcp".into(),
                                remote: remote.to_string(),
                            };
                            let result = node.start_tcp(stream, info, None).await;
                            // Authenticated or failed: no longer pending.
                            drop(slot);
                            if let Err(e) = result {
                                tracing::warn!(%remote, error = %e, "incoming TCP peering failed");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(%local, "listening for TCP peerings");
        Ok(local)
    }

    /// Dials a TCP peer (`host:port`; a `tcp://` prefix is accepted) and
    /// returns its key once the handshake is done.
    pub async fn connect_tcp(&self, addr: &str, zone: &str) -> Result<PublicKey, PeeringError> {
        let addr = addr.strip_prefix("tcp://").unwrap_or(addr);
        let stream = TcpStream::connect(addr).await?;
        let info = PeeringInfo {
            peer_type: PeerType::Remote,
            zone: zone.into(),
            remote: addr.into(),
        };
        self.start_tcp(stream, info, None).await
    }

    pub(crate) async fn start_tcp(
        &self,
        stream: TcpStream,
        info: PeeringInfo,
        expected: Option<PublicKey>,
    ) -> Result<PublicKey, PeeringError> {
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        self.start_stream(r, w, info, expected).await
    }
}
