//! The overlay as a UDP socket for quinn: each QUIC packet is the payload of
//! one Pinecone traffic frame.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use conifer_overlay::PublicKey;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use super::addr::{local_addr, AddrBook};
use crate::Node;

/// Packets waiting for quinn; beyond this the oldest are dropped, as a
/// congested UDP socket would.
const INBOX_CAP: usize = 1024;

pub(crate) struct OverlaySocket {
    node: Node,
    pub book: Arc<AddrBook>,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    packets: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
}

impl fmt::Debug for OverlaySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlaySocket")
            .field("key", &self.node.public_key())
            .finish()
    }
}

impl OverlaySocket {
    pub fn new(node: Node, book: Arc<AddrBook>) -> Self {
        OverlaySocket {
            node,
            book,
            inbox: Mutex::default(),
        }
    }

    /// A packet the overlay delivered from `source`.
    pub fn push(&self, source: PublicKey, packet: Vec<u8>) {
        let addr = self.book.addr_for(source);
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        if inbox.packets.len() >= INBOX_CAP {
            inbox.packets.pop_front();
        }
        inbox.packets.push_back((addr, packet));
        if let Some(w) = inbox.waker.take() {
            w.wake();
        }
    }
}

impl AsyncUdpSocket for OverlaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(key) = self.book.key_for(&transmit.destination) else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no overlay key for this address",
            ));
        };
        // One datagram per transmit: segmentation is off (max_transmit_segments = 1).
        self.node
            .send(key, transmit.contents.to_vec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while n < bufs.len() && n < meta.len() {
            let Some((addr, packet)) = inbox.packets.pop_front() else {
                break;
            };
            // A packet larger than quinn's buffer is truncated by a real UDP
            // socket too; report the length actually copied.
            let len = packet.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&packet[..len]);
            meta[n] = RecvMeta {
                addr,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            n += 1;
        }
        if n == 0 {
            inbox.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(local_addr())
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

/// The router queues (or head-drops) every frame at once; sending never blocks.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
