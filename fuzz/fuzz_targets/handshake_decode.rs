//! Any bytes into the handshake decoder: no panic, and an accepted handshake
//! presents the key at bytes 8..40 with the fixed version and capabilities.
#![no_main]

use conifer_overlay::wire::{decode_handshake, CAPABILITIES, HANDSHAKE_LEN, HANDSHAKE_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = decode_handshake(data) {
        assert_eq!(data.len(), HANDSHAKE_LEN);
        assert_eq!(data[0], HANDSHAKE_VERSION);
        assert_eq!(data[4..8], CAPABILITIES.to_be_bytes());
        assert_eq!(data[8..40], key.0);
    }
});
