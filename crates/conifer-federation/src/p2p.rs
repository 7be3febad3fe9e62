//! P2P server names are the hex form of the node's Ed25519 key, so the verify
//! key comes from the name itself: no key server, no network fetch
//! (the convention of Dendrite's P2P demos).

/// The key ID P2P nodes sign with.
pub const P2P_KEY_ID: &str = "ed25519:dendrite-demo-yggdrasil";

/// The verify key a P2P server name stands for, if it is one
/// (64 lowercase hex characters).
pub fn p2p_verify_key(server_name: &str) -> Option<[u8; 32]> {
    if server_name.len() != 64
        || !server_name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(server_name, &mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_hex_of_32_bytes_is_a_p2p_name() {
        let name = "ab".repeat(32);
        assert_eq!(p2p_verify_key(&name), Some([0xab; 32]));
        assert_eq!(p2p_verify_key(&"AB".repeat(32)), None);
        assert_eq!(p2p_verify_key(&"ab".repeat(31)), None);
        assert_eq!(p2p_verify_key("example.org"), None);
        assert_eq!(p2p_verify_key(&format!("{}:8448", "ab".repeat(32))), None);
    }
}
