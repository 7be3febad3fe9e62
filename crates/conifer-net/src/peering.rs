//! One peering over any reliable byte stream: handshake, then a reader task
//! feeding frames to the router and a writer task draining its queue.
//!
//! Transports (TCP, WebSocket, a BLE channel, an in-process pipe) only have to
//! provide an `AsyncRead` and an `AsyncWrite` half.

use std::time::Duration;

use conifer_overlay::router::PeerType;
use conifer_overlay::wire::{decode_handshake, encode_handshake, Deframer, Port, HANDSHAKE_LEN};
use conifer_overlay::{Identity, PublicKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::shared::{PortHandle, Shared};
use crate::PeeringError;

/// Both sides write their handshake at once and read the other's within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Go puts a 3 s deadline on every write; a peer that cannot take a frame in
/// that long is as good as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// How a peering came about, for logs and the manhole.
#[derive(Debug, Clone)]
pub struct PeeringInfo {
    pub peer_type: PeerType,
    pub zone: String,
    /// Where we dialled, or where it came from.
    pub remote: String,
}

/// Runs the handshake; on success the peering runs in the background and its
/// key and port are returned.
pub(crate) async fn start<R, W>(
    shared: Shared,
    identity: &Identity,
    mut reader: R,
    mut writer: W,
    info: PeeringInfo,
    expected_key: Option<PublicKey>,
) -> Result<(PublicKey, Port), PeeringError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ours = encode_handshake(identity);
    let mut theirs = [0u8; HANDSHAKE_LEN];
    let exchange = async {
        writer.write_all(&ours).await?;
        writer.flush().await?;
        reader.read_exact(&mut theirs).await?;
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| PeeringError::HandshakeTimeout)??;
    let key = decode_handshake(&theirs)?;
    if let Some(expected) = expected_key.filter(|k| *k != key) {
        return Err(PeeringError::WrongKey { expected, got: key });
    }

    let wake = std::sync::Arc::new(Notify::new());
    let (close_tx, close_rx) = watch::channel(None);
    let port = shared.with_state(|s, now| {
        let port = s
            .router
            .peer_connected(now, key, info.peer_type, info.zone.clone())?;
        s.ports.insert(
            port,
            PortHandle {
                key,
                wake: wake.clone(),
                close: close_tx,
            },
        );
        // The router queued our announcement before the handle existed.
        wake.notify_one();
        Ok::<_, PeeringError>(port)
    })?;
    tracing::info!(peer = %key, %port, zone = %info.zone, remote = %info.remote, "peer connected");

    let writer_task = tokio::spawn(write_loop(
        shared.clone(),
        port,
        writer,
        wake,
        close_rx.clone(),
    ));
    tokio::spawn(async move {
        let why = read_loop(&shared, port, reader, close_rx).await;
        writer_task.abort();
        shared.with_state(|s, now| {
            s.ports.remove(&port);
            s.router.peer_disconnected(now, port);
        });
        tracing::info!(peer = %key, %port, reason = %why, "peer disconnected");
    });
    Ok((key, port))
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    port: Port,
    mut reader: R,
    mut close: watch::Receiver<Option<String>>,
) -> String {
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) => return "stream closed by peer".into(),
                Ok(n) => n,
                Err(e) => return format!("read error: {e}"),
            },
            _ = close.changed() => {
                return close.borrow().clone().unwrap_or_else(|| "closed".into());
            }
        };
        deframer.push(&buf[..n]);
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => shared.with_router(|r, now| r.receive_frame(now, port, frame)),
                Ok(None) => break,
                Err(e) => return format!("malformed stream: {e}"),
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Shared,
    port: Port,
    mut writer: W,
    wake: std::sync::Arc<Notify>,
    mut close: watch::Receiver<Option<String>>,
) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = close.changed() => break,
        }
        while let Some(frame) = shared.with_router(|r, now| r.poll_transmit(now, port)) {
            let write = async {
                writer.write_all(&frame).await?;
                writer.flush().await
            };
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                _ => {
                    // A peer that cannot take a frame is gone: close the
                    // whole peering, which also stops the reader.
                    shared.with_state(|s, _| {
                        if let Some(h) = s.ports.get(&port) {
                            let _ = h.close.send(Some("write failed or timed out".into()));
                        }
                    });
                    return;
                }
            }
        }
    }
    let _ = writer.shutdown().await;
}
