//! Public keys as socket addresses, for a QUIC stack that only knows IPs.
//!
//! quinn addresses peers by `SocketAddr`; a key is 256 bits and does not fit,
//! so each key met gets a synthetic address from a private IPv6 range
//! (fd63:6f6e:6966::/48, "conif") and the book maps both ways. Addresses never
//! leave the process.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Mutex;

use conifer_overlay::PublicKey;

const PREFIX: [u16; 3] = [0xfd63, 0x6f6e, 0x6966];
const PORT: u16 = 9;

#[derive(Default, Debug)]
pub(crate) struct AddrBook {
    inner: Mutex<Book>,
}

#[derive(Default, Debug)]
struct Book {
    by_key: HashMap<PublicKey, SocketAddr>,
    by_addr: HashMap<SocketAddr, PublicKey>,
    next: u64,
}

impl AddrBook {
    pub fn addr_for(&self, key: PublicKey) -> SocketAddr {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = b.by_key.get(&key) {
            return *a;
        }
        b.next += 1;
        let n = b.next;
        let ip = Ipv6Addr::new(
            PREFIX[0],
            PREFIX[1],
            PREFIX[2],
            0,
            (n >> 48) as u16,
            (n >> 32) as u16,
            (n >> 16) as u16,
            n as u16,
        );
        let addr = SocketAddr::V6(SocketAddrV6::new(ip, PORT, 0, 0));
        b.by_key.insert(key, addr);
        b.by_addr.insert(addr, key);
        addr
    }

    pub fn key_for(&self, addr: &SocketAddr) -> Option<PublicKey> {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.by_addr.get(addr).copied()
    }
}

/// Our own synthetic address (never used on a wire).
pub(crate) fn local_addr() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(PREFIX[0], PREFIX[1], PREFIX[2], 0, 0, 0, 0, 0),
        PORT,
        0,
        0,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_reversible() {
        let book = AddrBook::default();
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let x = book.addr_for(a);
        assert_eq!(book.addr_for(a), x);
        assert_ne!(book.addr_for(b), x);
        assert_eq!(book.key_for(&x), Some(a));
        assert_eq!(book.key_for(&local_addr()), None);
    }
}
