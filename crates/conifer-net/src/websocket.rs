//! WebSocket peerings: binary messages whose boundaries mean nothing.
//!
//! Go sends the handshake as one message and each frame as one message, but
//! reads the messages as one concatenated byte stream; we do the same, so a
//! peer may split or merge frames across messages as it likes.

use std::io;

use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use bytes::Bytes;
use conifer_overlay::router::PeerType;
use conifer_overlay::PublicKey;
use futures_util::{future, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::peering::PeeringInfo;
use crate::{Node, PeeringError};

impl Node {
    /// Dials `ws://host:port/path` (or `wss://`) and peers over binary messages.
    pub async fn connect_ws(&self, url: &str) -> Result<PublicKey, PeeringError> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| PeeringError::Io(io::Error::other(e)))?;
        let (sink, stream) = ws.split();
        let reader = StreamReader::new(Box::pin(stream.filter_map(|m| {
            future::ready(match m {
                Ok(WsMessage::Binary(b)) => Some(Ok(Bytes::from(b))),
                Ok(WsMessage::Close(_)) => Some(Err(io::Error::from(io::ErrorKind::UnexpectedEof))),
                Ok(_) => None,
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
}

/// axum handler: upgrade to a WebSocket peering.
pub async fn ws_handler(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        if let Err(e) = node.accept_ws(socket, remote.to_string()).await {
            tracing::warn!(%remote, error = %e, "incoming WebSocket peering failed");
        }
    })
}
