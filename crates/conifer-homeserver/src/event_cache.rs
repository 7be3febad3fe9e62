//! Decoded events kept in memory: a bounded LRU for events the store has,
//! and a held set for events being built or authorised that the store does
//! not have yet (a room's initial events during `createRoom`, a federation
//! transaction's run). Held events never leave before they are settled, so
//! checking a later event against an earlier unstored one cannot fail
//! because memory was trimmed or the cache filled up in between.

use conifer_rooms::Pdu;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct EventCache {
    lru: hashlink::LruCache<String, Arc<Pdu>>,
    held: HashMap<String, Arc<Pdu>>,
}

impl EventCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            lru: hashlink::LruCache::new(capacity.max(1)),
            held: HashMap::new(),
        }
    }

    pub fn get(&mut self, event_id: &str) -> Option<Arc<Pdu>> {
        if let Some(e) = self.held.get(event_id) {
            return Some(e.clone());
        }
        self.lru.get(event_id).cloned()
    }

    /// Keeps a stored event; the least recently used one leaves if full.
    pub fn remember(&mut self, pdu: Arc<Pdu>) {
        if self.held.contains_key(pdu.event_id.as_str()) {
            return;
        }
        self.lru.insert(pdu.event_id.to_string(), pdu);
    }

    /// Keeps an event that is not stored yet until it is settled.
    pub fn hold(&mut self, pdu: Arc<Pdu>) {
        self.lru.remove(pdu.event_id.as_str());
        self.held.insert(pdu.event_id.to_string(), pdu);
    }

    /// The event is stored now (or will never be): an ordinary entry again.
    pub fn settle(&mut self, event_id: &str) {
        if let Some(pdu) = self.held.remove(event_id) {
            self.lru.insert(event_id.to_owned(), pdu);
        }
    }

    pub fn forget(&mut self, event_id: &str) {
        self.held.remove(event_id);
        self.lru.remove(event_id);
    }

    /// Drops every stored event (they are read again when needed); held
    /// ones stay.
    pub fn release(&mut self) {
        self.lru.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lru.len() + self.held.len()
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conifer_rooms::ruma::OwnedEventId;

    fn pdu(n: usize) -> Arc<Pdu> {
        let json = serde_json::json!({
            "type": "m.room.message", "room_id": "!r:x", "sender": "@a:x",
            "content": {}, "depth": 1, "origin_server_ts": 1,
            "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"}, "signatures": {},
        });
        let id = OwnedEventId::try_from(format!("$e{n}")).unwrap();
        Arc::new(Pdu::from_json(id, json.to_string()).unwrap())
    }

    #[test]
    fn evicts_one_at_a_time_and_never_a_held_event() {
        let mut c = EventCache::new(3);
        c.hold(pdu(0));
        for n in 1..=10 {
            c.remember(pdu(n));
        }
        assert_eq!(c.len(), 4, "three stored plus the held one");
        assert!(c.get("$e0").is_some(), "held survives a full cache");
        assert!(c.get("$e10").is_some() && c.get("$e9").is_some() && c.get("$e8").is_some());
        assert!(c.get("$e7").is_none(), "only the oldest left");
        c.release();
        assert!(c.get("$e0").is_some(), "held survives a release");
        c.settle("$e0");
        assert_eq!(c.held(), 0);
        assert!(c.get("$e0").is_some());
    }
}
