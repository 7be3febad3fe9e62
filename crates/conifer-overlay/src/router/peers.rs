//! The switch-port table: one slot per peering, port 0 being ourselves.

use std::collections::VecDeque;

use super::queue::{FairQueue, SUBQUEUES, SUBQUEUES_BLUETOOTH};
use super::Time;
use crate::key::PublicKey;
use crate::wire::{Coordinates, Port, SwitchAnnouncement};

/// 254 slots: port 0 is the local router, 1..=253 are peers.
pub const PORT_COUNT: usize = 254;

/// How a peer is linked. Lower is preferred ("faster") when several links lead
/// to one key; Bluetooth links also get smaller traffic queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum PeerType {
    Pipe = 0,
    Multicast = 1,
    Bonjour = 2,
    Remote = 3,
    Bluetooth = 4,
}

/// A tree announcement as received from a peer, with when and in what order.
#[derive(Clone, Debug)]
pub(crate) struct StoredAnnouncement {
    pub ann: SwitchAnnouncement,
    pub receive_time: Time,
    /// Global arrival counter across all peers: lower arrived earlier.
    pub receive_order: u64,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PeerStats {
    pub tx_frames: u64,
    pub tx_bytes_protocol: u64,
    pub tx_bytes_traffic: u64,
    pub rx_frames: u64,
    pub rx_bytes_protocol: u64,
    pub rx_bytes_traffic: u64,
    pub traffic_dropped: u64,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub key: PublicKey,
    pub peer_type: PeerType,
    pub zone: String,
    pub announcement: Option<StoredAnnouncement>,
    pub proto: VecDeque<Vec<u8>>,
    pub traffic: FairQueue,
    /// We told the driver this port has frames and it has not yet drained them.
    pub wake_pending: bool,
    pub last_sent: Time,
    pub last_received: Time,
    /// We asked the driver to close this peering; the slot stays reserved (and
    /// is ignored by routing) until the driver reports the disconnection.
    pub closing: bool,
    pub stats: PeerStats,
}

impl Peer {
    pub fn new(key: PublicKey, peer_type: PeerType, zone: String, now: Time, offset: u64) -> Self {
        let subqueues = if peer_type == PeerType::Bluetooth {
            SUBQUEUES_BLUETOOTH
        } else {
            SUBQUEUES
        };
        Peer {
            key,
            peer_type,
            zone,
            announcement: None,
            proto: VecDeque::new(),
            traffic: FairQueue::new(subqueues, offset),
            wake_pending: false,
            last_sent: now,
            last_received: now,
            closing: false,
            stats: PeerStats::default(),
        }
    }

    /// Routing only considers peers that are up.
    pub fn started(&self) -> bool {
        !self.closing
    }

    /// The peer's own coordinates, from its last announcement.
    pub fn coords(&self) -> Option<Coordinates> {
        self.announcement.as_ref().map(|a| a.ann.peer_coords())
    }
}

/// Read-only view of one peer for the pure next-hop functions.
#[derive(Clone, Copy, Debug)]
pub struct PeerView<'a> {
    pub port: Port,
    pub key: PublicKey,
    pub peer_type: PeerType,
    pub announcement: Option<&'a SwitchAnnouncement>,
    pub receive_order: u64,
}
