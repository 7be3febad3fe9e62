//! The tree announcement payload ("SwitchAnnouncement") and its hop signatures.
//!
//! `rootKey ‖ varint(rootSeq) ‖ hop_0 ‖ … ‖ hop_n-1`, each hop
//! `varint(port) ‖ signerKey ‖ signature`. Signer *i* signs everything before its
//! own hop, so each hop's port and key are attested by the next signer.

use super::cursor::Cursor;
use super::varint::{put_varint, varint_len};
use super::{DecodeError, Port};
use crate::key::{Identity, PublicKey, Signature};

/// A hop needs at least a 1-byte port, a key and a signature.
const MIN_HOP_LEN: usize = 1 + 32 + 64;

/// A tree root and its sequence number: the "epoch" of the spanning tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Root {
    pub key: PublicKey,
    pub seq: u64,
}

/// One signed hop of an announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The port on the signer through which the announcement leaves.
    pub port: Port,
    pub key: PublicKey,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchAnnouncement {
    pub root: Root,
    pub hops: Vec<Hop>,
}

/// Why an announcement is not acceptable from a peer (any of these closes the peering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    #[error("announcement has no hops")]
    NoHops,
    #[error("the first hop is not signed by the root")]
    FirstHopNotRoot,
    #[error("a hop has port 0")]
    ZeroPort,
    #[error("the last hop is not the peer that sent it")]
    LastHopNotPeer,
    #[error("a key appears twice in the path (loop)")]
    Loop,
    #[error("hop {0} has a bad signature")]
    BadSignature(usize),
}

impl SwitchAnnouncement {
    /// A fresh announcement for a root with no hops yet.
    pub fn new(root: Root) -> Self {
        SwitchAnnouncement {
            root,
            hops: Vec::new(),
        }
    }

    pub fn encoded_len(&self) -> usize {
        32 + varint_len(self.root.seq)
            + self
                .hops
                .iter()
                .map(|h| varint_len(h.port) + 32 + 64)
                .sum::<usize>()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.root.key.0);
        put_varint(out, self.root.seq);
        for hop in &self.hops {
            encode_hop(hop, out);
        }
    }

    pub fn decode(input: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(input);
        let key = c.key("announcement root key")?;
        let seq = c.varint()?;
        let mut hops = Vec::new();
        // Go stops reading hops once fewer than 97 bytes remain and ignores the
        // rest; we reject such a remainder as inconsistent (Go never sends one).
        while c.remaining() >= MIN_HOP_LEN {
            let port = c.varint()?;
            let key = c.key("hop key")?;
            let signature = c.signature("hop signature")?;
            hops.push(Hop {
                port,
                key,
                signature,
            });
        }
        c.finish("announcement hops")?;
        Ok(SwitchAnnouncement {
            root: Root { key, seq },
            hops,
        })
    }

    /// A copy with our hop appended: the form sent to the peer on `port`.
    /// `sign = false` writes a zero signature (the signature-free test mode).
    pub fn with_hop(&self, port: Port, identity: &Identity, sign: bool) -> Self {
        let mut out = self.clone();
        out.push_hop(port, identity, sign);
        out
    }

    fn push_hop(&mut self, port: Port, identity: &Identity, sign: bool) {
        let signature = if sign {
            let mut buf = Vec::with_capacity(self.encoded_len());
            self.encode_into(&mut buf);
            identity.sign(&buf)
        } else {
            [0u8; 64]
        };
        self.hops.push(Hop {
            port,
            key: identity.public_key(),
            signature,
        });
    }

    /// Checks every hop's signature against the bytes before that hop.
    pub fn verify_signatures(&self) -> Result<(), AnnouncementError> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        buf.extend_from_slice(&self.root.key.0);
        put_varint(&mut buf, self.root.seq);
        for (i, hop) in self.hops.iter().enumerate() {
            if !hop.key.verify(&buf, &hop.signature) {
                return Err(AnnouncementError::BadSignature(i));
            }
            encode_hop(hop, &mut buf);
        }
        Ok(())
    }

    /// The structural checks a receiver applies (§1.6 checks 1–5), given the key
    /// learned from this link's handshake.
    pub fn sanity_check(&self, from: PublicKey) -> Result<(), AnnouncementError> {
        let first = self.hops.first().ok_or(AnnouncementError::NoHops)?;
        if first.key != self.root.key {
            return Err(AnnouncementError::FirstHopNotRoot);
        }
        if self.hops.iter().any(|h| h.port == 0) {
            return Err(AnnouncementError::ZeroPort);
        }
        if self.hops.last().map(|h| h.key) != Some(from) {
            return Err(AnnouncementError::LastHopNotPeer);
        }
        // Paths are short (tree depth); a quadratic scan beats hashing here.
        for (i, a) in self.hops.iter().enumerate() {
            if self.hops[i + 1..].iter().any(|b| b.key == a.key) {
                return Err(AnnouncementError::Loop);
            }
        }
        Ok(())
    }

    /// Whether `key` signed any hop, i.e. the path runs through that node.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.hops.iter().any(|h| &h.key == key)
    }

    /// The receiver's coordinates: every hop's port, root first.
    pub fn coords(&self) -> super::Coordinates {
        super::Coordinates(self.hops.iter().map(|h| h.port).collect())
    }

    /// The sending peer's own coordinates: every port but the last.
    pub fn peer_coords(&self) -> super::Coordinates {
        let n = self.hops.len().saturating_sub(1);
        super::Coordinates(self.hops[..n].iter().map(|h| h.port).collect())
    }
}

/// A whole tree-announcement frame: the already-encoded announcement `prefix`
/// followed by `hop`. Lets a node sign its hop once and frame it for every
/// peer (the signature does not cover the port, so it is the same for all).
pub fn announcement_frame(prefix: &[u8], hop: &Hop) -> Result<Vec<u8>, super::FrameTooLarge> {
    use super::frame::{HEADER_LEN, MAGIC, MAX_FRAME_LEN};
    let payload_len = prefix.len() + varint_len(hop.port) + 32 + 64;
    let len = HEADER_LEN + 2 + payload_len;
    if len > MAX_FRAME_LEN {
        return Err(super::FrameTooLarge(len));
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0, super::FrameType::TreeAnnouncement as u8, 0, 0]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend_from_slice(prefix);
    encode_hop(hop, &mut out);
    Ok(out)
}

pub(crate) fn encode_hop(hop: &Hop, out: &mut Vec<u8>) {
    put_varint(out, hop.port);
    out.extend_from_slice(&hop.key.0);
    out.extend_from_slice(&hop.signature);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Frame;

    #[test]
    fn framing_a_signed_prefix_matches_encoding_the_frame() {
        let a = Identity::from_seed([3; 32]);
        let b = Identity::from_seed([4; 32]);
        let base = SwitchAnnouncement::new(Root {
            key: a.public_key(),
            seq: 9,
        })
        .with_hop(7, &a, true);
        let mut prefix = Vec::new();
        base.encode_into(&mut prefix);
        let signed = base.with_hop(300, &b, true);
        let expected = Frame::TreeAnnouncement(signed.clone()).encode().unwrap();
        assert_eq!(
            announcement_frame(&prefix, signed.hops.last().unwrap()).unwrap(),
            expected
        );
    }
}
