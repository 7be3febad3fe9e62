//! End-to-end encrypted sessions between any two keys: QUIC (quinn) whose
//! packets ride in overlay traffic frames, as Go Pinecone's QUIC layer does.
//!
//! One QUIC connection per (protocol, key), told apart by ALPN; each dial opens
//! a fresh bidirectional stream on it. Packets stay within 1200 bytes with
//! path-MTU discovery off, so they fit every link Pinecone runs on.

mod addr;
mod http;
mod socket;
mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conifer_overlay::{Identity, PublicKey};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::mpsc;

pub use http::{http_request, serve_router};

use crate::{Delivery, Node, PING_MAGIC, PONG_MAGIC};
use addr::AddrBook;
use socket::OverlaySocket;

/// Go Pinecone's QUIC idle timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest QUIC packet we send (quic-go's receive side takes up to 1452).
pub const MAX_PACKET: u16 = 1200;
/// The largest packet we accept from a peer.
pub const MAX_ACCEPTED: u16 = 1452;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot open a session to ourselves")]
    SelfDial,
    #[error("QUIC connect failed: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("QUIC connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// A stream a remote key opened to us.
pub struct IncomingStream {
    pub peer: PublicKey,
    pub send: SendStream,
    pub recv: RecvStream,
}

struct Inner {
    node: Node,
    endpoint: Endpoint,
    book: Arc<AddrBook>,
    identity_creds: tls::Credentials,
    /// One crypto provider for every dial, rather than a fresh one each time.
    provider: Arc<rustls::crypto::CryptoProvider>,
    conns: Mutex<HashMap<(Vec<u8>, PublicKey), Connection>>,
    listeners: Mutex<HashMap<Vec<u8>, mpsc::Sender<IncomingStream>>>,
}

/// The session layer of one node. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

impl Sessions {
    /// Takes over the node's deliveries: QUIC packets go to the sessions,
    /// overlay pings are answered, anything else (pongs, other payloads)
    /// comes out of the returned receiver.
    pub fn start(
        node: &Node,
        identity: &Identity,
        mut deliveries: mpsc::Receiver<Delivery>,
        protocols: &[&[u8]],
    ) -> Result<(Sessions, mpsc::Receiver<Delivery>), SessionError> {
        let book = Arc::new(AddrBook::default());
        let socket = Arc::new(OverlaySocket::new(node.clone(), book.clone()));
        let creds =
            tls::make_credentials(identity).map_err(|e| SessionError::Tls(e.to_string()))?;
        let provider = tls::provider();

        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SessionError::Tls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(tls::AnyEd25519Client {
                provider: provider.clone(),
            }))
            .with_single_cert(vec![creds.cert.clone()], creds.key_der())
            .map_err(|e| SessionError::Tls(e.to_string()))?;
        server_tls.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|e| SessionError::Tls(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport_config());

        let mut endpoint_config = quinn::EndpointConfig::default();
        // We send at most MAX_PACKET, but accept up to MAX_ACCEPTED: quic-go
        // (Go Pinecone, Dendrite) sends packets of up to 1 452 bytes, and
        // truncating them breaks every response longer than one packet.
        endpoint_config
            .max_udp_payload_size(MAX_ACCEPTED)
            .expect("valid size");
        let endpoint = Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config),
            socket.clone(),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| SessionError::Tls(e.to_string()))?;

        let sessions = Sessions {
            inner: Arc::new(Inner {
                node: node.clone(),
                endpoint,
                book,
                identity_creds: creds,
                provider: provider.clone(),
                conns: Mutex::default(),
                listeners: Mutex::default(),
            }),
        };

        // Demultiplex what the overlay delivers.
        let (app_tx, app_rx) = mpsc::channel(1024);
        let demux_node = node.clone();
        node.spawn_until_stopped(async move {
            while let Some(d) = deliveries.recv().await {
                if d.payload.starts_with(PING_MAGIC) {
                    demux_node.answer_ping(&d);
                } else if d.payload.starts_with(PONG_MAGIC) {
                    let _ = app_tx.try_send(d);
                } else {
                    socket.push(d.source, d.payload);
                }
            }
        });
        let acceptor = sessions.clone();
        node.spawn_until_stopped(async move { acceptor.accept_loop().await });
        Ok((sessions, app_rx))
    }

    /// Incoming streams for protocol `alpn` (which must be one given to `start`).
    pub fn listen(&self, alpn: &[u8]) -> mpsc::Receiver<IncomingStream> {
        let (tx, rx) = mpsc::channel(64);
        self.lock_listeners().insert(alpn.to_vec(), tx);
        rx
    }

    /// Opens a new bidirectional stream to `key` speaking `alpn`, reusing the
    /// cached connection when there is one.
    pub async fn dial(
        &self,
        key: PublicKey,
        alpn: &[u8],
    ) -> Result<(SendStream, RecvStream), SessionError> {
        if key == self.inner.node.public_key() {
            return Err(SessionError::SelfDial);
        }
        let cache_key = (alpn.to_vec(), key);
        let cached = self.lock_conns().get(&cache_key).cloned();
        if let Some(conn) = cached {
            match conn.open_bi().await {
                Ok(s) => return Ok(s),
                Err(_) => {
                    self.lock_conns().remove(&cache_key);
                }
            }
        }
        let conn = self.connect(key, alpn).await?;
        self.install(cache_key, conn.clone());
        Ok(conn.open_bi().await?)
    }

    async fn connect(&self, key: PublicKey, alpn: &[u8]) -> Result<Connection, SessionError> {
        let provider = self.inner.provider.clone();
        let creds = &self.inner.identity_creds;
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| SessionError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::ExpectKey {
                expected: key,
                provider,
            }))
            .with_client_auth_cert(vec![creds.cert.clone()], creds.key_der())
            .map_err(|e| SessionError::Tls(e.to_string()))?;
        client_tls.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|e| SessionError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config());
        let addr = self.inner.book.addr_for(key);
        let name = tls::server_name_for(&key).to_str().into_owned();
        let conn = self
            .inner
            .endpoint
            .connect_with(config, addr, &name)?
            .await?;
        Ok(conn)
    }

    /// Caches `conn` (replacing and closing an older one) and routes the
    /// streams the remote opens on it.
    fn install(&self, cache_key: (Vec<u8>, PublicKey), conn: Connection) {
        if let Some(old) = self.lock_conns().insert(cache_key.clone(), conn.clone()) {
            if old.stable_id() != conn.stable_id() {
                old.close(0u32.into(), b"connection replaced");
            }
        }
        let me = self.clone();
        let (alpn, peer) = cache_key;
        self.inner.node.spawn_until_stopped(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let tx = me.lock_listeners().get(&alpn).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(IncomingStream { peer, send, recv }).await;
                }
            }
            let mut conns = me.lock_conns();
            if conns
                .get(&(alpn.clone(), peer))
                .is_some_and(|c| c.stable_id() == conn.stable_id())
            {
                conns.remove(&(alpn, peer));
            }
        });
    }

    async fn accept_loop(&self) {
        while let Some(incoming) = self.inner.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Some(source) = me.inner.book.key_for(&conn.remote_address()) else {
                    conn.close(1u32.into(), b"unknown source");
                    return;
                };
                // The certificate must be for the key the packets came from.
                let presented = conn
                    .peer_identity()
                    .and_then(|id| {
                        id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                            .ok()
                    })
                    .and_then(|certs| certs.first().and_then(tls::cert_key));
                if presented != Some(source) {
                    tracing::warn!(%source, "session certificate does not match the overlay source");
                    conn.close(2u32.into(), b"certificate key mismatch");
                    return;
                }
                let alpn = conn
                    .handshake_data()
                    .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                    .and_then(|h| h.protocol)
                    .unwrap_or_default();
                me.install((alpn, source), conn);
            });
        }
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<(Vec<u8>, PublicKey), Connection>> {
        self.inner.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_listeners(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, mpsc::Sender<IncomingStream>>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The DER certificate this node presents in sessions (for inspection and tests).
pub fn certificate_der(identity: &Identity) -> Result<Vec<u8>, SessionError> {
    tls::make_credentials(identity)
        .map(|c| c.cert.to_vec())
        .map_err(|e| SessionError::Tls(e.to_string()))
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("fits")));
    t.initial_mtu(MAX_PACKET);
    t.min_mtu(MAX_PACKET);
    t.mtu_discovery_config(None);
    Arc::new(t)
}
