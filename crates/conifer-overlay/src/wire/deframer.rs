//! Splits a peering's byte stream into frames.
//!
//! Streams (TCP, WebSocket messages, BLE) carry frames back to back with no
//! regard for read boundaries, so bytes are buffered until a whole frame, as
//! declared by its header, has arrived. The header is checked as soon as it is
//! complete, so a hostile length never makes us wait for or buffer garbage.

use super::frame::{Header, HEADER_LEN};
use super::DecodeError;

#[derive(Default, Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        // Reclaim consumed space before growing, so the buffer stays about one
        // frame long however long the stream runs.
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's bytes, `None` if more input is needed, or an
    /// error after which the stream must be closed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let pending = &self.buf[self.start..];
        if pending.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = Header::decode(pending)?;
        if pending.len() < header.length {
            return Ok(None);
        }
        let begin = self.start;
        self.start += header.length;
        Ok(Some(&self.buf[begin..begin + header.length]))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}
