//! One peering over any reliable byte stream: handshake, then a reader task
//! feeding frames to the router and a writer task draining its queue.
//!
//! Transports (TCP, WebSocket, a BLE channel, an in-process pipe) only have to
//! provide an `AsyncRead` and an `AsyncWrite` half.

use std::io::IoSlice;
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
/// Go puts a 3 s deadline on every write; a peer that cannot take a batch of
/// frames in that long is as good as gone.
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

/// Bytes the reader asks the socket for at once.
const READ_BUF: usize = 64 * 1024;
/// What the writer takes from the router per batch: at most this many frames
/// and (beyond the first frame) this many bytes, so one batch is one
/// vectored write of bounded size.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 256 * 1024;

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    port: Port,
    mut reader: R,
    mut close: watch::Receiver<Option<String>>,
) -> String {
    let mut deframer = Deframer::new();
    let mut buf = vec![0u8; READ_BUF];
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
        // Every frame of the read goes to the router as it is decoded, under
        // one hold of the lock; each is queued on its own (per flow, in the
        // router's fair queues), and the writers woken once at the end.
        let malformed = shared.with_router(|r, now| loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => r.receive_frame(now, port, frame),
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        });
        if let Some(e) = malformed {
            return format!("malformed stream: {e}");
        }
    }
}

/// Takes the next batch of frames queued for `port` (protocol first, then
/// fair traffic) under one hold of the lock. Returns whether the queue may
/// hold more (the batch was cut by its bounds).
fn next_batch(shared: &Shared, port: Port, batch: &mut Vec<Vec<u8>>) -> bool {
    shared.with_router(|r, now| {
        let mut bytes = 0;
        while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            match r.poll_transmit(now, port) {
                Some(frame) => {
                    bytes += frame.len();
                    batch.push(frame);
                }
                None => return false,
            }
        }
        true
    })
}

/// Writes a batch: one vectored write (repeated for what a short write left)
/// where the writer supports them, else frame by frame (a WebSocket writer
/// sends each write as one message, one frame per message as Go does) with
/// one flush at the end.
async fn write_batch<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &[Vec<u8>],
) -> std::io::Result<()> {
    if writer.is_write_vectored() {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|f| IoSlice::new(f)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = writer.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
    } else {
        for frame in batch {
            writer.write_all(frame).await?;
        }
    }
    writer.flush().await
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Shared,
    port: Port,
    mut writer: W,
    wake: std::sync::Arc<Notify>,
    mut close: watch::Receiver<Option<String>>,
) {
    let mut batch = Vec::with_capacity(BATCH_FRAMES);
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = close.changed() => break,
        }
        // Everything queued since the last wake-up leaves in as few writes
        // as the batch bounds allow.
        loop {
            let more = next_batch(&shared, port, &mut batch);
            if batch.is_empty() {
                break;
            }
            let write = write_batch(&mut writer, &batch);
            let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())));
            batch.clear();
            if !ok {
                // A peer that cannot take a frame is gone: close the
                // whole peering, which also stops the reader.
                shared.with_state(|s, _| {
                    if let Some(h) = s.ports.get(&port) {
                        let _ = h.close.send(Some("write failed or timed out".into()));
                    }
                });
                return;
            }
            if !more {
                break;
            }
        }
    }
    let _ = writer.shutdown().await;
}
