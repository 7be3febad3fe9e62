//! A bounds-checked reader over a byte slice: every read either succeeds or
//! returns [`DecodeError::Truncated`], so decoders cannot index out of range.

use super::varint::get_varint;
use super::{Coordinates, DecodeError};
use crate::key::{PublicKey, Signature, SIGNATURE_LEN};

pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Cursor { rest: input }
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn key(&mut self, what: &'static str) -> Result<PublicKey, DecodeError> {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.bytes(32, what)?);
        Ok(PublicKey(k))
    }

    pub fn signature(&mut self, what: &'static str) -> Result<Signature, DecodeError> {
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(self.bytes(SIGNATURE_LEN, what)?);
        Ok(s)
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, used) = get_varint(self.rest)?;
        self.rest = &self.rest[used..];
        Ok(v)
    }

    pub fn coordinates(&mut self) -> Result<Coordinates, DecodeError> {
        let (c, used) = Coordinates::decode(self.rest)?;
        self.rest = &self.rest[used..];
        Ok(c)
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                extra: self.rest.len(),
            })
        }
    }
}
