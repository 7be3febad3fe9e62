//! Remote servers' verify keys, cached with their validity. P2P server names
//! need no cache: their key is their name.

use crate::p2p::{p2p_verify_key, P2P_KEY_ID};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    pub server: String,
    pub key_id: String,
    pub key: [u8; 32],
    /// Milliseconds since the epoch.
    pub valid_until_ts: u64,
}

#[derive(Debug, Default)]
pub struct KeyRing {
    keys: HashMap<(String, String), VerifyKey>,
}

impl KeyRing {
    /// Remembers keys fetched from a server (replacing older ones).
    pub fn insert(&mut self, keys: impl IntoIterator<Item = VerifyKey>) {
        for k in keys {
            self.keys.insert((k.server.clone(), k.key_id.clone()), k);
        }
    }

    /// The key `key_id` of `server` if it is valid at `at_ms` (for events: their
    /// `origin_server_ts`; for requests: now). `None` means "fetch it".
    pub fn get(&self, server: &str, key_id: &str, at_ms: u64) -> Option<[u8; 32]> {
        if key_id == P2P_KEY_ID {
            if let Some(k) = p2p_verify_key(server) {
                return Some(k);
            }
        }
        self.keys
            .get(&(server.to_owned(), key_id.to_owned()))
            .filter(|k| k.valid_until_ts > at_ms)
            .map(|k| k.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_and_p2p_names_need_no_fetch() {
        let mut ring = KeyRing::default();
        assert_eq!(ring.get("a.example", "ed25519:x", 0), None);
        ring.insert([VerifyKey {
            server: "a.example".into(),
            key_id: "ed25519:x".into(),
            key: [1; 32],
            valid_until_ts: 100,
        }]);
        assert_eq!(ring.get("a.example", "ed25519:x", 99), Some([1; 32]));
        assert_eq!(ring.get("a.example", "ed25519:x", 100), None);
        let p2p = "cd".repeat(32);
        assert_eq!(ring.get(&p2p, P2P_KEY_ID, u64::MAX - 1), Some([0xcd; 32]));
        assert_eq!(ring.get(&p2p, "ed25519:other", 0), None);
    }
}
