//! Wake-up broadcasts: "I am online" to every node within 5 hops (reference §3.9).

use super::{Event, Router, Time, BROADCAST_FILTER};
use crate::wire::{
    tree_distance, Frame, Port, SignedPayload, WakeupBroadcast, BROADCAST_HOP_LIMIT,
};

impl Router {
    /// Our own signed broadcast, ready to queue.
    pub(super) fn broadcast_frame(&self, now: Time) -> Option<Vec<u8>> {
        let payload = SignedPayload::new(
            now.as_unix_millis(),
            self.current_root(),
            &self.identity,
            self.config.signatures,
        );
        Frame::WakeupBroadcast(WakeupBroadcast {
            hop_limit: BROADCAST_HOP_LIMIT,
            source: self.key,
            payload,
        })
        .encode()
        .ok()
    }

    pub(super) fn send_broadcast_to_all(&mut self, now: Time) {
        let Some(frame) = self.broadcast_frame(now) else {
            return;
        };
        for port in self.one_link_per_key(|_| true) {
            self.enqueue_proto(port, frame.clone());
        }
    }

    /// The best link to each distinct peer key among peers passing `keep`:
    /// lowest peer type, then earliest announcement.
    fn one_link_per_key(&self, keep: impl Fn(Port) -> bool) -> Vec<Port> {
        let mut best: Vec<(Port, crate::PublicKey, (u8, u64))> = Vec::new();
        for (port, p) in self.started_peers() {
            if !keep(port) {
                continue;
            }
            let rank = (
                p.peer_type as u8,
                p.announcement
                    .as_ref()
                    .map_or(u64::MAX, |a| a.receive_order),
            );
            match best.iter_mut().find(|(_, k, _)| *k == p.key) {
                Some(entry) if rank < entry.2 => *entry = (port, p.key, rank),
                Some(_) => {}
                None => best.push((port, p.key, rank)),
            }
        }
        best.into_iter().map(|(port, _, _)| port).collect()
    }

    /// An `Err` closes the peering that relayed a forged broadcast (as Go does).
    pub(super) fn handle_broadcast(
        &mut self,
        now: Time,
        from: Port,
        mut b: WakeupBroadcast,
    ) -> Result<(), String> {
        // Cheap checks first: a broadcast we would ignore anyway is not worth
        // an Ed25519 verification (each source floods every minute). Only an
        // accepted one updates our state, so skipping cannot be abused.
        if b.source == self.key || b.payload.root.key != self.current_root().key {
            return Ok(());
        }
        if let Some(&(seq, seen)) = self.seen_broadcasts.get(&b.source) {
            if now.since(seen) < BROADCAST_FILTER || b.payload.sequence <= seq {
                return Ok(());
            }
        }
        if self.config.signatures && !b.payload.verify(&b.source) {
            return Err("wake-up broadcast with a bad signature".into());
        }
        self.seen_broadcasts
            .insert(b.source, (b.payload.sequence, now));
        self.stats.broadcasts_received += 1;
        self.event(Event::BroadcastReceived { source: b.source });

        if b.hop_limit <= 1 {
            return Ok(());
        }
        b.hop_limit -= 1;
        // Near the source flood to everyone; further out only along the tree.
        let classic = b.hop_limit >= 4;
        let sender = self.peer(from).map(|p| p.key);
        let ours = self.coords();
        let targets = self.one_link_per_key(|port| {
            let Some(p) = self.peer(port) else {
                return false;
            };
            if Some(p.key) == sender {
                return false;
            }
            classic
                || p.coords()
                    .is_some_and(|c| tree_distance(&c.0, &ours.0) == 1)
        });
        let Ok(frame) = Frame::WakeupBroadcast(b).encode() else {
            return Ok(());
        };
        for port in targets {
            self.enqueue_proto(port, frame.clone());
        }
        Ok(())
    }
}
