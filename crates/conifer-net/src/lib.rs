//! Conifer's overlay on real networks: the tokio driver around the sans-IO
//! [`conifer_overlay::router::Router`].
//!
//! A [`Node`] owns one router behind a mutex, a timer task that feeds it
//! `handle_timeout`, and one reader and one writer task per peering. Any
//! reliable byte stream can carry a peering ([`Node::start_stream`]); TCP and
//! WebSocket are built in, static peers are redialled with back-off, and
//! [`Node::http_routes`] serves WebSocket peerings and the JSON manhole.
//!
//! **Invariant:** this crate holds no routing logic; it moves bytes and time
//! between the operating system and the router.

#![forbid(unsafe_code)]

mod clock;
mod multicast;
mod peering;
mod pending;
mod ping;
pub mod session;
mod shared;
mod static_peers;
mod status;
mod tcp;
mod timer;
mod websocket;

use std::sync::Arc;

use conifer_overlay::router::{Event, NoFreePorts, Router, RouterConfig, SendError};
use conifer_overlay::wire::DecodeError;
use conifer_overlay::{Identity, PublicKey};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc};

pub use multicast::{MULTICAST_PORT, MULTICAST_V4, MULTICAST_V6};
pub use peering::{PeeringInfo, HANDSHAKE_TIMEOUT};
pub use pending::{PendingLimits, PendingRefused, MAX_PENDING_PER_IP, MAX_PENDING_TOTAL};
pub use ping::{PingOutcome, PING_MAGIC, PONG_MAGIC};
pub use shared::Delivery;
pub use static_peers::backoff;
pub use status::{PeerStatus, RouteStatus, Status};
pub use websocket::{ws_handler, MAX_WS_MESSAGE};

use pending::Pending;
use shared::Shared;

/// Why a peering could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer did not complete the handshake within 10 seconds")]
    HandshakeTimeout,
    #[error("peer's handshake is invalid: {0}")]
    Handshake(#[from] DecodeError),
    #[error("peer presented key {got}, expected {expected}")]
    WrongKey { expected: PublicKey, got: PublicKey },
    #[error(transparent)]
    NoFreePorts(#[from] NoFreePorts),
    /// The WebSocket connection or its HTTP upgrade failed (boxed: the
    /// library's error carries a whole HTTP response).
    #[error("WebSocket: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
}

/// A running overlay node. Cheap to clone; all clones drive the same router.
#[derive(Clone)]
pub struct Node {
    shared: Shared,
    /// Cancelled by [`Node::shutdown`]: stops listeners, dialers and the timer.
    stop: tokio_util::sync::CancellationToken,
    identity: Arc<Identity>,
    events: broadcast::Sender<Event>,
    /// Incoming connections that have not finished the handshake.
    pending: Pending,
}

/// Capacity of the channel of payloads delivered to the application.
const DELIVERY_QUEUE: usize = 1024;

impl Node {
    /// Starts a node (its timer task) on the current tokio runtime. Returns the
    /// node and the stream of payloads addressed to it.
    pub fn start(identity: Identity, config: RouterConfig) -> (Node, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        let (events, _) = broadcast::channel(256);
        let router = Router::new(identity.clone(), config, clock::now());
        let shared = Shared::new(router, tx, events.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let timer = timer::run(shared.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = timer => {}
                _ = stopped.cancelled() => {}
            }
        });
        let node = Node {
            shared,
            stop,
            identity: Arc::new(identity),
            events,
            pending: Pending::new(PendingLimits::default()),
        };
        (node, rx)
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// Runs a peering over any byte stream (a BLE channel, a pipe, …): the
    /// handshake happens here; the peering then runs in the background.
    pub async fn start_stream<R, W>(
        &self,
        reader: R,
        writer: W,
        info: PeeringInfo,
        expected_key: Option<PublicKey>,
    ) -> Result<PublicKey, PeeringError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (key, _port) = peering::start(
            self.shared.clone(),
            &self.identity,
            reader,
            writer,
            info,
            expected_key,
        )
        .await?;
        Ok(key)
    }

    /// Changes the caps on incoming connections that have not finished the
    /// handshake (defaults: [`MAX_PENDING_PER_IP`], [`MAX_PENDING_TOTAL`]).
    pub fn set_pending_limits(&self, limits: PendingLimits) {
        self.pending.set_limits(limits);
    }

    /// The caps now in force on connections that have not finished the handshake.
    pub fn pending_limits(&self) -> PendingLimits {
        self.pending.limits()
    }

    /// Incoming connections currently counted against the pending limits.
    pub fn pending_handshakes(&self) -> usize {
        self.pending.count()
    }

    /// Stops the node: closes every peering and stops listeners, static-peer
    /// dialers and timers. Other clones of this node stop too.
    pub fn shutdown(&self) {
        self.stop.cancel();
        self.shared.with_state(|s, _| {
            for h in s.ports.values() {
                let _ = h.close.send(Some("node shutting down".into()));
            }
        });
    }

    /// Resolves once [`Node::shutdown`] has been called.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Runs `fut` until the node shuts down.
    pub(crate) fn spawn_until_stopped<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Sends a datagram to `destination` through the overlay (best effort).
    pub fn send(&self, destination: PublicKey, payload: Vec<u8>) -> Result<(), SendError> {
        self.shared
            .with_router(|r, now| r.send(now, destination, payload))
    }

    /// Overlay events (peers, root and parent changes, wake-up broadcasts).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Turns wake-up broadcasts on (sending one now) or off.
    pub fn set_wakeup_broadcasts(&self, enabled: bool) {
        self.shared
            .with_router(|r, now| r.set_wakeup_broadcasts(now, enabled));
    }

    /// Whether we hold fresh tree coordinates for `key` (traffic to it is tree-routed).
    pub fn has_coords_for(&self, key: &PublicKey) -> bool {
        self.shared.with_router(|r, now| r.has_coords_for(now, key))
    }

    /// An axum router serving WebSocket peerings at `ws_path` and the manhole
    /// at `/manhole`. Serve it with `into_make_service_with_connect_info`.
    ///
    /// Upgrades are admitted within the pending-handshake limits and read
    /// with [`MAX_WS_MESSAGE`]; what happens before the request reaches the
    /// router (slow or never-sent request heads, their buffer) is the host
    /// server's to bound. [`Node::listen_ws`] bounds both.
    pub fn http_routes(&self, ws_path: &str) -> axum::Router {
        axum::Router::new()
            .route(ws_path, axum::routing::get(ws_handler))
            .route("/manhole", axum::routing::get(status::manhole))
            .with_state(self.clone())
    }
}
