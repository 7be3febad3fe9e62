//! The signed payload shared by bootstraps and wake-up broadcasts:
//! `varint(sequence) ‖ rootKey ‖ varint(rootSeq) ‖ signature`.

use super::announcement::Root;
use super::cursor::Cursor;
use super::varint::{put_varint, varint_len};
use super::DecodeError;
use crate::key::{Identity, PublicKey, Signature};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayload {
    /// The sender's wall clock in Unix milliseconds when it sent this.
    pub sequence: u64,
    /// The sender's tree root at that time.
    pub root: Root,
    /// Ed25519 over the fields above, by the bootstrapper / broadcaster.
    pub signature: Signature,
}

impl SignedPayload {
    /// Builds and signs (or, in signature-free mode, zero-signs) a payload.
    pub fn new(sequence: u64, root: Root, identity: &Identity, sign: bool) -> Self {
        let mut p = SignedPayload {
            sequence,
            root,
            signature: [0; 64],
        };
        if sign {
            p.signature = identity.sign(&p.signed_bytes());
        }
        p
    }

    pub fn encoded_len(&self) -> usize {
        varint_len(self.sequence) + 32 + varint_len(self.root.seq) + 64
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        put_varint(&mut out, self.sequence);
        out.extend_from_slice(&self.root.key.0);
        put_varint(&mut out, self.root.seq);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.sequence);
        out.extend_from_slice(&self.root.key.0);
        put_varint(out, self.root.seq);
        out.extend_from_slice(&self.signature);
    }

    pub fn decode(input: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(input);
        let sequence = c.varint()?;
        let key = c.key("payload root key")?;
        let seq = c.varint()?;
        let signature = c.signature("payload signature")?;
        c.finish("signed payload")?;
        Ok(SignedPayload {
            sequence,
            root: Root { key, seq },
            signature,
        })
    }

    pub fn verify(&self, signer: &PublicKey) -> bool {
        signer.verify(&self.signed_bytes(), &self.signature)
    }
}
