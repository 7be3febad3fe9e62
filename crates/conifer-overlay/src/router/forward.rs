//! Traffic: local sends, forwarding and delivery (reference §3.5–§3.8).

use super::queue::flow_hash;
use super::{Action, NextHop, Router, SendError, Time, COORDS_CACHE_LIFETIME};
use crate::key::PublicKey;
use crate::wire::{Coordinates, Frame, Traffic, Watermark, MAX_FRAME_LEN, TRAFFIC_HOP_LIMIT};

impl Router {
    /// Sends `payload` to the node with key `destination`.
    ///
    /// Tree-routed if we have fresh coordinates for the destination (learned
    /// from traffic it sent us), SNEK-routed otherwise. Delivery is best-effort,
    /// like a UDP datagram.
    pub fn send(
        &mut self,
        now: Time,
        destination: PublicKey,
        payload: Vec<u8>,
    ) -> Result<(), SendError> {
        let destination_coords = self
            .coords_cache
            .get(&destination)
            .filter(|(_, seen)| now.since(*seen) < COORDS_CACHE_LIFETIME)
            .map(|(c, _)| c.clone())
            .unwrap_or_default();
        let t = Traffic {
            hop_limit: TRAFFIC_HOP_LIMIT,
            destination_coords,
            source_coords: self.coords(),
            destination,
            source: self.key,
            watermark: Watermark::NONE,
            payload,
        };
        // Leave room for the watermark (at most 42 bytes) a switch to SNEK
        // adds in flight, so a frame that fits here fits everywhere.
        let frame = Frame::Traffic(t);
        let worst = frame.encoded_len() + 42;
        if worst > MAX_FRAME_LEN {
            return Err(SendError::TooLarge(worst));
        }
        let Frame::Traffic(t) = frame else {
            unreachable!("constructed above")
        };
        self.forward_traffic(now, NextHop::Local, t);
        Ok(())
    }

    /// Whether we hold fresh coordinates for `key`, so traffic to it leaves tree-routed.
    pub fn has_coords_for(&self, now: Time, key: &PublicKey) -> bool {
        self.coords_cache
            .get(key)
            .is_some_and(|(_, seen)| now.since(*seen) < COORDS_CACHE_LIFETIME)
    }

    /// Routes one traffic frame that arrived from `from` (or was sent locally).
    pub(super) fn forward_traffic(&mut self, now: Time, from: NextHop, mut t: Traffic) {
        // 1. Ours: remember where the sender sits so replies can use the tree.
        if t.destination == self.key {
            if !t.source_coords.is_empty() {
                self.coords_cache
                    .insert(t.source, (t.source_coords.clone(), now));
            }
            self.deliver(t.source, t.payload);
            return;
        }
        // 3. Tree first if the frame carries coordinates. No strictly closer
        // peer, or stale coordinates that point at us, turn it into SNEK
        // traffic for the rest of its journey (Go would deliver the latter to
        // its own application; a key that is not ours should not be).
        let mut hop = None;
        if !t.destination_coords.is_empty() {
            match self.tree_next_hop_for(&t.destination_coords.0, from) {
                Some(NextHop::Peer(port)) => hop = Some(port),
                _ => t.destination_coords = Coordinates::root(),
            }
        }
        let mut watermark = t.watermark;
        let port = match hop {
            Some(port) => port,
            None => {
                let (snek_hop, wm) = self.snek_next_hop_for(now, t.destination, false, t.watermark);
                watermark = wm;
                match snek_hop {
                    Some(NextHop::Peer(port)) => port,
                    Some(NextHop::Local) if from != NextHop::Local => {
                        // A dead end: the closest key we know is our own.
                        if self.config.deliver_misrouted {
                            self.deliver(t.source, t.payload);
                        } else {
                            self.stats.traffic_dropped_misrouted += 1;
                        }
                        return;
                    }
                    _ => {
                        self.stats.traffic_dropped_no_route += 1;
                        return;
                    }
                }
            }
        };
        // Hop limiting applies to every node handling traffic not for itself.
        if self.config.hop_limiting {
            if t.hop_limit > 1 {
                t.hop_limit -= 1;
            } else {
                self.stats.traffic_dropped_hop_limit += 1;
                return;
            }
        }
        // 5. Never straight back, and never to a worse watermark.
        if from == NextHop::Peer(port) {
            self.stats.traffic_dropped_no_route += 1;
            return;
        }
        if watermark.worse_than(&t.watermark) {
            self.stats.traffic_dropped_watermark += 1;
            return;
        }
        t.watermark = watermark;
        let flow = flow_hash(&[&t.destination.0, &t.source.0]);
        match Frame::Traffic(t).encode() {
            Ok(bytes) => {
                self.stats.traffic_forwarded += 1;
                self.enqueue_traffic(port, flow, bytes);
            }
            Err(_) => self.stats.traffic_dropped_no_route += 1,
        }
    }

    fn deliver(&mut self, source: PublicKey, payload: Vec<u8>) {
        self.stats.traffic_delivered += 1;
        self.actions.push_back(Action::Deliver { source, payload });
    }
}
