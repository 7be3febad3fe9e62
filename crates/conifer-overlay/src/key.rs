//! Node identity: Ed25519 keys as Pinecone uses them.
//!
//! Keys are compared as 32-byte unsigned big-endian strings (`memcmp` order): the
//! spanning tree's root is the highest key, and SNEK orders nodes by key.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

/// Length of an Ed25519 signature on the wire.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signature as carried on the wire.
pub type Signature = [u8; SIGNATURE_LEN];

/// A node's raw 32-byte Ed25519 public key; `Ord` is unsigned big-endian.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PublicKey(pub [u8; 32]);

impl Ord for PublicKey {
    /// Lexicographic byte order, compared as four big-endian u64 words: the
    /// same order as `memcmp`, without a library call on every comparison
    /// (keys are compared constantly in route tables and SNEK decisions).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        for i in 0..4 {
            let a = u64::from_be_bytes(self.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let b = u64::from_be_bytes(other.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            match a.cmp(&b) {
                std::cmp::Ordering::Equal => continue,
                o => return o,
            }
        }
        std::cmp::Ordering::Equal
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PublicKey {
    /// The all-`FF` key: no real key is higher, so it is the "nothing yet" watermark.
    pub const MAX: PublicKey = PublicKey([0xff; 32]);

    /// Lowercase hex, the form Pinecone and Dendrite print and use as a server name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, KeyParseError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| KeyParseError)?;
        Ok(PublicKey(out))
    }

    /// Checks an Ed25519 signature by this key. A key that is not a valid curve
    /// point simply fails verification.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Some(key) = decompressed(self) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        key.verify(message, &sig).is_ok()
    }
}

/// Decompressing a key (a square root in the field) is about a fifth of an
/// Ed25519 verification, and a router verifies the same few keys over and
/// over (its neighbours, their ancestors, bootstrappers nearby). Keep the most
/// recent ones per thread; a pure memo, so results never change.
fn decompressed(key: &PublicKey) -> Option<VerifyingKey> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    const CAP: usize = 4096;
    thread_local! {
        static CACHE: RefCell<HashMap<[u8; 32], VerifyingKey>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        if let Some(k) = c.borrow().get(&key.0) {
            return Some(*k);
        }
        let k = VerifyingKey::from_bytes(&key.0).ok()?;
        let mut c = c.borrow_mut();
        if c.len() >= CAP {
            c.clear();
        }
        c.insert(key.0, k);
        Some(k)
    })
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits tell keys apart in logs without drowning them.
        write!(f, "{}…", &self.to_hex()[..8])
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A public key string was not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a public key is 64 hexadecimal characters (32 bytes)")]
pub struct KeyParseError;

/// A node's signing identity: the secret key and its public half.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// The identity whose Ed25519 seed (RFC 8032 secret key) is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Identity { signing, public }
    }

    /// A fresh identity from a cryptographically secure RNG.
    pub fn generate<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte seed, for saving the identity to a key file.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_tuple("Identity").field(&self.public).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_reference_keys() {
        let a = Identity::from_seed([0; 32]);
        assert_eq!(
            a.public_key().to_hex(),
            "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
        );
        let b = Identity::from_seed([0xff; 32]);
        assert_eq!(
            b.public_key().to_hex(),
            "76a1592044a6e4f511265bca73a604d90b0529d1df602be30a19a9257660d1f5"
        );
        assert!(b.public_key() > a.public_key());
    }

    #[test]
    fn ordering_is_unsigned_big_endian() {
        let mut lo = [0u8; 32];
        let mut hi = [0u8; 32];
        lo[31] = 0xff;
        hi[0] = 0x01;
        assert!(PublicKey(hi) > PublicKey(lo));
        assert!(PublicKey::MAX > PublicKey(hi));
    }

    #[test]
    fn word_order_equals_byte_order() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut a = [0u8; 32];
            let mut b = [0u8; 32];
            for i in 0..32 {
                a[i] = (next() % 4) as u8;
                b[i] = (next() % 4) as u8;
            }
            // Share a random-length prefix so later words decide too.
            let common = (next() % 33) as usize;
            b[..common].copy_from_slice(&a[..common]);
            assert_eq!(PublicKey(a).cmp(&PublicKey(b)), a.cmp(&b));
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = Identity::from_seed([7; 32]).public_key();
        assert_eq!(PublicKey::from_hex(&k.to_hex().to_uppercase()), Ok(k));
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn sign_and_verify() {
        let id = Identity::from_seed([1; 32]);
        let sig = id.sign(b"hello");
        assert!(id.public_key().verify(b"hello", &sig));
        assert!(!id.public_key().verify(b"hellp", &sig));
        // An invalid point never verifies rather than panicking.
        assert!(!PublicKey([0xff; 32]).verify(b"hello", &sig));
    }
}
