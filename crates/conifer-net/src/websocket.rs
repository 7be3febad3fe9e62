//! WebSocket peerings: binary messages whose boundaries mean nothing.
//!
//! Go sends the handshake as one message and each frame as one message, but
//! reads the messages as one concatenated byte stream; we do the same, so a
//! peer may split or merge frames across messages as it likes.
//!
//! **Memory.** A WebSocket library holds a whole message before handing it
//! over, and by default accepts messages of 64 MiB: a few connections that
//! each start a message and never finish it made a listener hold a gigabyte
//! before any authentication. Both directions here cap messages and frames at
//! [`MAX_WS_MESSAGE`] (one Pinecone frame and a little), and incoming
//! connections are admitted only within the node's pending-handshake limits
//! (see [`crate::PendingLimits`]), so what an anonymous peer can make us hold
//! is bounded per connection and in number.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use conifer_overlay::router::PeerType;
use conifer_overlay::wire::MAX_FRAME_LEN;
use conifer_overlay::PublicKey;
use futures_util::{future, SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::peering::{PeeringInfo, HANDSHAKE_TIMEOUT};
use crate::pending::PendingSlot;
use crate::{Node, PeeringError};

/// What a message may carry beyond one Pinecone frame: room for a peer that
/// coalesces the handshake (104 bytes) or the head of the next frame into the
/// same message, which the stream semantics allow.
const MESSAGE_SLACK: usize = 4096;

/// The largest WebSocket message, and the largest WebSocket frame, we read:
/// one Pinecone frame plus [`MESSAGE_SLACK`]. Go (and our writer) sends one
/// Pinecone frame per message, so no honest message is larger, whereas the
/// library defaults (64 MiB messages, 16 MiB frames) let each connection make
/// us buffer 64 MiB. A larger message is an error that closes its peering.
pub const MAX_WS_MESSAGE: usize = MAX_FRAME_LEN + MESSAGE_SLACK;

/// Bytes the library gathers before writing to the socket. Our writer flushes
/// after every frame anyway, so gathering only delays and holds memory.
const WRITE_BUFFER: usize = 0;

/// Most bytes the library may hold for a socket that is not taking them: our
/// writer waits for each frame to be flushed, so one message and a queued
/// pong is all that can build up; the margin is a second message.
const MAX_WRITE_BUFFER: usize = 2 * MAX_WS_MESSAGE;

/// hyper's read buffer for the HTTP request that precedes the upgrade
/// (hyper's minimum is 8 KiB). An upgrade request is a few hundred bytes; the
/// default (about 400 KiB) only serves headers nobody sends us honestly.
const MAX_HTTP_BUFFER: usize = 16 * 1024;

/// The library settings for both directions (see [`MAX_WS_MESSAGE`]).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig {
        max_message_size: Some(MAX_WS_MESSAGE),
        max_frame_size: Some(MAX_WS_MESSAGE),
        write_buffer_size: WRITE_BUFFER,
        max_write_buffer_size: MAX_WRITE_BUFFER,
        ..WebSocketConfig::default()
    }
}

impl Node {
    /// Dials `ws://host:port/path` (or `wss://`) and peers over binary messages.
    ///
    /// Connecting and the HTTP upgrade must finish within the handshake
    /// timeout too: a server that accepts and then stalls must not hold a
    /// static-peer dialer forever.
    pub async fn connect_ws(&self, url: &str) -> Result<PublicKey, PeeringError> {
        // Nagle off, as for TCP: the writer flushes whole frames, and
        // holding back small ones (keepalives, bootstraps) only adds latency.
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true);
        let (ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
            .await
            .map_err(|_| PeeringError::HandshakeTimeout)?
            .map_err(|e| PeeringError::WebSocket(Box::new(e)))?;
        let (sink, stream) = ws.split();
        let reader = StreamReader::new(Box::pin(stream.filter_map(|m| {
            future::ready(match m {
                Ok(WsMessage::Binary(b)) => Some(Ok(Bytes::from(b))),
                Ok(WsMessage::Close(_)) => Some(Err(io::Error::from(io::ErrorKind::UnexpectedEof))),
                Ok(_) => None,
                // Includes a message or frame over MAX_WS_MESSAGE: the read
                // fails and the peering (or its handshake) ends.
                Err(e) => Some(Err(io::Error::other(e))),
            })
        })));
        let sink = Box::pin(
            sink.sink_map_err(io::Error::other)
                .with(|b: Bytes| future::ready(Ok::<_, io::Error>(WsMessage::Binary(b.to_vec())))),
        );
        let writer = SinkWriter::new(CopyToBytes::new(sink));
        let info = PeeringInfo {
            peer_type: PeerType::Remote,
            zone: "websocket".into(),
            remote: url.into(),
        };
        self.start_stream(reader, writer, info, None).await
    }

    /// Runs a peering over a WebSocket that an HTTP server accepted.
    ///
    /// The socket should have been upgraded with [`MAX_WS_MESSAGE`] as its
    /// message and frame limit, as [`ws_handler`] does.
    pub async fn accept_ws(
        &self,
        socket: WebSocket,
        remote: String,
    ) -> Result<PublicKey, PeeringError> {
        let (sink, stream) = socket.split();
        let reader = StreamReader::new(Box::pin(stream.filter_map(|m| {
            future::ready(match m {
                Ok(AxumMessage::Binary(b)) => Some(Ok(Bytes::from(b))),
                Ok(AxumMessage::Close(_)) => {
                    Some(Err(io::Error::from(io::ErrorKind::UnexpectedEof)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(io::Error::other(e))),
            })
        })));
        let sink =
            Box::pin(sink.sink_map_err(io::Error::other).with(|b: Bytes| {
                future::ready(Ok::<_, io::Error>(AxumMessage::Binary(b.to_vec())))
            }));
        let writer = SinkWriter::new(CopyToBytes::new(sink));
        let info = PeeringInfo {
            peer_type: PeerType::Remote,
            zone: "websocket".into(),
            remote,
        };
        self.start_stream(reader, writer, info, None).await
    }

    /// Serves [`Node::http_routes`] on `addr`; returns the bound address.
    ///
    /// Each TCP connection takes a pending-handshake slot as it is accepted
    /// (over the limit it is closed at once) and keeps it until it upgrades
    /// and finishes the Pinecone handshake, or closes. The HTTP request must
    /// arrive within the handshake timeout, so a connection that never sends
    /// one does not hold its slot forever. HTTP/1.1 only, as WebSocket needs.
    pub async fn listen_ws(&self, addr: SocketAddr, ws_path: &str) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.http_routes(ws_path);
        let node = self.clone();
        self.spawn_until_stopped(async move {
            loop {
                let (stream, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "WebSocket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match node.pending.admit(remote.ip()) {
                    Ok(slot) => {
                        tokio::spawn(serve_http_connection(stream, remote, app.clone(), slot));
                    }
                    // Dropping the stream closes it: an excess connection
                    // costs us nothing beyond the accept. Debug level, as a
                    // flood would otherwise flood the log too.
                    Err(why) => tracing::debug!(%remote, %why, "WebSocket connection refused"),
                }
            }
        });
        tracing::info!(%local, path = ws_path, "listening for WebSocket peerings");
        Ok(local)
    }
}

/// The pending-handshake slot that [`Node::listen_ws`] took for a connection,
/// passed to [`ws_handler`] in the request's extensions so that the upgrade
/// carries it on instead of counting the connection twice. Opaque: public
/// only because [`ws_handler`] extracts it.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<Mutex<Option<PendingSlot>>>);

impl ConnectionSlot {
    fn take(&self) -> Option<PendingSlot> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serves HTTP/1.1 on one accepted connection of [`Node::listen_ws`].
async fn serve_http_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: axum::Router,
    slot: PendingSlot,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%remote, error = %e, "could not disable Nagle");
    }
    let slot = ConnectionSlot(Arc::new(Mutex::new(Some(slot))));
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(slot.clone());
        hyper::service::Service::call(&app, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(MAX_HTTP_BUFFER)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}

/// axum handler: upgrade to a WebSocket peering.
///
/// The upgrade is refused (503, connection closed) when the source or the
/// node is at its pending-handshake limit, unless [`Node::listen_ws`] already
/// admitted the connection. The slot is held until the Pinecone handshake
/// ends, which its timeout bounds even if the peer never sends a byte after
/// the upgrade.
pub async fn ws_handler(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    admitted: Option<Extension<ConnectionSlot>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let slot = match admitted.and_then(|Extension(s)| s.take()) {
        Some(slot) => slot,
        None => match node.pending.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%remote, %why, "WebSocket upgrade refused");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONNECTION, "close")],
                    why.to_string(),
                )
                    .into_response();
            }
        },
    };
    upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let result = node.accept_ws(socket, remote.to_string()).await;
            // Authenticated or failed: either way no longer pending.
            drop(slot);
            if let Err(e) = result {
                tracing::warn!(%remote, error = %e, "incoming WebSocket peering failed");
            }
        })
}
