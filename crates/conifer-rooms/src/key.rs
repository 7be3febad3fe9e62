//! The server's Ed25519 signing key.

use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedServerName, ServerName};

/// PKCS#8 v1 prefix for a bare 32-byte Ed25519 seed (RFC 8410).
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A server name with the key that signs its events and requests.
pub struct ServerKey {
    pub server_name: OwnedServerName,
    /// The part after `ed25519:` in the key ID.
    pub version: String,
    pub pair: Ed25519KeyPair,
    pub public: [u8; 32],
}

impl ServerKey {
    pub fn from_seed(server_name: &ServerName, version: &str, seed: &[u8; 32]) -> Self {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(seed);
        let pair = Ed25519KeyPair::from_der(&der, version.to_owned())
            .expect("a 32-byte seed is a valid key");
        let public = pair.public_key();
        Self {
            server_name: server_name.to_owned(),
            version: version.to_owned(),
            pair,
            public,
        }
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }
}
