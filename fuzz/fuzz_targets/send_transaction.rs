//! Any bytes as the body of `PUT /_matrix/federation/v1/send/{txnId}`, read
//! the way the homeserver reads it: JSON, then the transaction (limits and
//! origin), then every PDU through decoding, event ID, format, signature and
//! content-hash checks (with the verify key of `a.test`, the seeds' signer)
//! for the room version picked by the first byte. No panic; an accepted
//! transaction is within the limits; a verified PDU keeps its event ID.
//! Seeds: fuzz/seeds/send_transaction/.
#![no_main]

use conifer_federation::{decode_pdu, parse_transaction, MAX_EDUS, MAX_PDUS};
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::PublicKeyMap;
use conifer_rooms::ruma::OwnedServerName;
use conifer_rooms::{ServerKey, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The key the seeds are signed with: `a.test`, `ed25519:k1`, seed [1; 32].
fn keys() -> &'static PublicKeyMap {
    static KEYS: OnceLock<PublicKeyMap> = OnceLock::new();
    KEYS.get_or_init(|| {
        let name = OwnedServerName::try_from("a.test").unwrap();
        let key = ServerKey::from_seed(&name, "k1", &[1; 32]);
        let mut keys: PublicKeyMap = BTreeMap::new();
        keys.entry("a.test".into())
            .or_default()
            .insert(key.key_id(), Base64::new(key.public.to_vec()));
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let version = SUPPORTED_VERSIONS[usize::from(pick) % SUPPORTED_VERSIONS.len()];
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok(txn) = parse_transaction(Some(&body), "a.test") else {
        return;
    };
    assert!(txn.pdus.len() <= MAX_PDUS && txn.edus.len() <= MAX_EDUS);
    for pdu in txn.pdus {
        let Ok(decoded) = decode_pdu(version, pdu) else {
            continue;
        };
        let id = decoded.event_id.clone();
        if decoded.check_format().is_err() || decoded.signing_key_ids().is_err() {
            continue;
        }
        if let Ok(pdu) = decoded.verify(keys()) {
            assert_eq!(pdu.event_id.as_str(), id);
        }
    }
});
