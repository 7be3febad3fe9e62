//! The 104-byte peering handshake both sides write as soon as a stream opens:
//! `version 1 ‖ 3 zero bytes ‖ u32 capabilities ‖ key ‖ signature over bytes 0..40`.
//!
//! It carries no nonce, so it proves nothing about freshness; the first tree
//! announcement (whose last hop must be signed by this key) does the real work.

use super::DecodeError;
use crate::key::{Identity, PublicKey, Signature};

pub const HANDSHAKE_LEN: usize = 104;
pub const HANDSHAKE_VERSION: u8 = 1;
/// Lengthened root interval, signed bootstraps, de-duplicated coordinates, soft
/// state and hybrid routing. Peers must match exactly.
pub const CAPABILITIES: u32 = 0x0000_003B;

pub fn encode_handshake(identity: &Identity) -> [u8; HANDSHAKE_LEN] {
    let mut out = [0u8; HANDSHAKE_LEN];
    out[0] = HANDSHAKE_VERSION;
    out[4..8].copy_from_slice(&CAPABILITIES.to_be_bytes());
    out[8..40].copy_from_slice(&identity.public_key().0);
    let sig = identity.sign(&out[..40]);
    out[40..].copy_from_slice(&sig);
    out
}

/// Checks a peer's handshake and returns the key it presents.
pub fn decode_handshake(input: &[u8]) -> Result<PublicKey, DecodeError> {
    if input.len() < HANDSHAKE_LEN {
        return Err(DecodeError::Truncated {
            what: "handshake",
            needed: HANDSHAKE_LEN - input.len(),
        });
    }
    if input.len() > HANDSHAKE_LEN {
        return Err(DecodeError::TrailingBytes {
            what: "handshake",
            extra: input.len() - HANDSHAKE_LEN,
        });
    }
    if input[0] != HANDSHAKE_VERSION {
        return Err(DecodeError::HandshakeVersion(input[0]));
    }
    let caps = u32::from_be_bytes([input[4], input[5], input[6], input[7]]);
    if caps != CAPABILITIES {
        return Err(DecodeError::HandshakeCapabilities(caps));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&input[8..40]);
    let key = PublicKey(key);
    let mut sig: Signature = [0u8; 64];
    sig.copy_from_slice(&input[40..]);
    if !key.verify(&input[..40], &sig) {
        return Err(DecodeError::HandshakeSignature);
    }
    Ok(key)
}
