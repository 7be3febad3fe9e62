//! Frames: the 10-byte header and the five frame types.
//!
//! Header: `magic "pine" ‖ version 0 ‖ type ‖ extra 0 ‖ hop limit ‖ u16 total length`.

use super::announcement::SwitchAnnouncement;
use super::cursor::Cursor;
use super::payload::SignedPayload;
use super::varint::{put_varint, varint_len};
use super::{Coordinates, DecodeError};
use crate::key::PublicKey;

pub const MAGIC: [u8; 4] = *b"pine";
pub const HEADER_LEN: usize = 10;
/// The length field is 16 bits: nothing longer can be framed.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// The hop limit an originator writes on traffic.
pub const TRAFFIC_HOP_LIMIT: u8 = 10;
/// The hop limit an originator writes on wake-up broadcasts.
pub const BROADCAST_HOP_LIMIT: u8 = 5;

/// Frame type numbers (the Go constants, which the Wireshark script has wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FrameType {
    Keepalive = 0,
    TreeAnnouncement = 1,
    Bootstrap = 2,
    Traffic = 3,
    WakeupBroadcast = 4,
}

impl FrameType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => FrameType::Keepalive,
            1 => FrameType::TreeAnnouncement,
            2 => FrameType::Bootstrap,
            3 => FrameType::Traffic,
            4 => FrameType::WakeupBroadcast,
            _ => return None,
        })
    }
}

/// SNEK loop prevention: `(key, seq)` that may only get "better" along a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Watermark {
    pub key: PublicKey,
    pub seq: u64,
}

impl Watermark {
    /// `{FF…FF, 0}`: nothing is worse than it. New traffic starts here.
    pub const NONE: Watermark = Watermark {
        key: PublicKey::MAX,
        seq: 0,
    };

    /// `self` is worse than `old` iff its key is higher, or the keys match and
    /// `self` has a non-zero, lower sequence.
    pub fn worse_than(&self, old: &Watermark) -> bool {
        self.key > old.key || (self.key == old.key && self.seq != 0 && self.seq < old.seq)
    }
}

/// A SNEK bootstrap: sent by a node towards its own key to find its successor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// The bootstrapping node's own key.
    pub destination: PublicKey,
    pub watermark: Watermark,
    pub payload: SignedPayload,
}

/// Application traffic, tree-routed when `destination_coords` is non-empty,
/// SNEK-routed (with a watermark on the wire) otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traffic {
    pub hop_limit: u8,
    pub destination_coords: Coordinates,
    pub source_coords: Coordinates,
    pub destination: PublicKey,
    pub source: PublicKey,
    /// On the wire only when `destination_coords` is empty; `NONE` otherwise.
    pub watermark: Watermark,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakeupBroadcast {
    pub hop_limit: u8,
    pub source: PublicKey,
    pub payload: SignedPayload,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Keepalive,
    TreeAnnouncement(SwitchAnnouncement),
    Bootstrap(Bootstrap),
    Traffic(Traffic),
    WakeupBroadcast(WakeupBroadcast),
    /// A type number this version does not know: dropped, peering kept (the
    /// protocol's only forward-compatibility mechanism).
    Unknown {
        frame_type: u8,
        length: usize,
    },
}

/// A frame would not fit the 16-bit length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {0} bytes exceeds the 65535-byte limit")]
pub struct FrameTooLarge(pub usize);

impl Frame {
    pub fn frame_type(&self) -> Option<FrameType> {
        Some(match self {
            Frame::Keepalive => FrameType::Keepalive,
            Frame::TreeAnnouncement(_) => FrameType::TreeAnnouncement,
            Frame::Bootstrap(_) => FrameType::Bootstrap,
            Frame::Traffic(_) => FrameType::Traffic,
            Frame::WakeupBroadcast(_) => FrameType::WakeupBroadcast,
            Frame::Unknown { .. } => return None,
        })
    }

    fn hop_limit(&self) -> u8 {
        match self {
            Frame::Traffic(t) => t.hop_limit,
            Frame::WakeupBroadcast(b) => b.hop_limit,
            _ => 0,
        }
    }

    /// Total encoded length, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Keepalive => 0,
                Frame::TreeAnnouncement(a) => 2 + a.encoded_len(),
                Frame::Bootstrap(b) => {
                    2 + 32 + 32 + varint_len(b.watermark.seq) + b.payload.encoded_len()
                }
                Frame::Traffic(t) => {
                    let wm = if t.destination_coords.is_empty() {
                        32 + varint_len(t.watermark.seq)
                    } else {
                        0
                    };
                    2 + t.destination_coords.encoded_len()
                        + t.source_coords.encoded_len()
                        + 64
                        + wm
                        + t.payload.len()
                }
                Frame::WakeupBroadcast(b) => 2 + 32 + b.payload.encoded_len(),
                Frame::Unknown { length, .. } => length.saturating_sub(HEADER_LEN),
            }
    }

    pub fn encode(&self) -> Result<Vec<u8>, FrameTooLarge> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the frame to `out`. Unknown frames cannot be encoded (we only
    /// ever drop them) and encode as nothing.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let Some(frame_type) = self.frame_type() else {
            return Ok(());
        };
        let len = self.encoded_len();
        if len > MAX_FRAME_LEN {
            return Err(FrameTooLarge(len));
        }
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[0, frame_type as u8, 0, self.hop_limit()]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        match self {
            Frame::Keepalive | Frame::Unknown { .. } => {}
            Frame::TreeAnnouncement(a) => {
                put_u16(out, a.encoded_len());
                a.encode_into(out);
            }
            Frame::Bootstrap(b) => {
                put_u16(out, b.payload.encoded_len());
                out.extend_from_slice(&b.destination.0);
                out.extend_from_slice(&b.watermark.key.0);
                put_varint(out, b.watermark.seq);
                b.payload.encode_into(out);
            }
            Frame::Traffic(t) => {
                put_u16(out, t.payload.len());
                t.destination_coords.encode_into(out);
                t.source_coords.encode_into(out);
                out.extend_from_slice(&t.destination.0);
                out.extend_from_slice(&t.source.0);
                if t.destination_coords.is_empty() {
                    out.extend_from_slice(&t.watermark.key.0);
                    put_varint(out, t.watermark.seq);
                }
                out.extend_from_slice(&t.payload);
            }
            Frame::WakeupBroadcast(b) => {
                put_u16(out, b.payload.encoded_len());
                out.extend_from_slice(&b.source.0);
                b.payload.encode_into(out);
            }
        }
        debug_assert_eq!(out.len() - start, len);
        Ok(())
    }

    /// Decodes exactly one frame occupying all of `input`.
    pub fn decode(input: &[u8]) -> Result<Frame, DecodeError> {
        let header = Header::decode(input)?;
        if header.length != input.len() {
            return Err(DecodeError::LengthMismatch {
                declared: header.length,
                actual: input.len(),
            });
        }
        let mut c = Cursor::new(&input[HEADER_LEN..]);
        let frame = match FrameType::from_u8(header.frame_type) {
            None => {
                return Ok(Frame::Unknown {
                    frame_type: header.frame_type,
                    length: header.length,
                })
            }
            Some(FrameType::Keepalive) => Frame::Keepalive,
            Some(FrameType::TreeAnnouncement) => {
                let len = c.u16("announcement length")? as usize;
                let body = c.bytes(len, "announcement")?;
                Frame::TreeAnnouncement(SwitchAnnouncement::decode(body)?)
            }
            Some(FrameType::Bootstrap) => {
                let len = c.u16("bootstrap payload length")? as usize;
                let destination = c.key("bootstrap destination key")?;
                let key = c.key("watermark key")?;
                let seq = c.varint()?;
                let payload = SignedPayload::decode(c.bytes(len, "bootstrap payload")?)?;
                Frame::Bootstrap(Bootstrap {
                    destination,
                    watermark: Watermark { key, seq },
                    payload,
                })
            }
            Some(FrameType::Traffic) => {
                let len = c.u16("traffic payload length")? as usize;
                let destination_coords = c.coordinates()?;
                let source_coords = c.coordinates()?;
                let destination = c.key("destination key")?;
                let source = c.key("source key")?;
                let watermark = if destination_coords.is_empty() {
                    let key = c.key("watermark key")?;
                    Watermark {
                        key,
                        seq: c.varint()?,
                    }
                } else {
                    Watermark::NONE
                };
                let payload = c.bytes(len, "traffic payload")?.to_vec();
                Frame::Traffic(Traffic {
                    hop_limit: header.hop_limit,
                    destination_coords,
                    source_coords,
                    destination,
                    source,
                    watermark,
                    payload,
                })
            }
            Some(FrameType::WakeupBroadcast) => {
                let len = c.u16("broadcast payload length")? as usize;
                let source = c.key("broadcast source key")?;
                let payload = SignedPayload::decode(c.bytes(len, "broadcast payload")?)?;
                Frame::WakeupBroadcast(WakeupBroadcast {
                    hop_limit: header.hop_limit,
                    source,
                    payload,
                })
            }
        };
        c.finish("frame")?;
        Ok(frame)
    }
}

fn put_u16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u16).to_be_bytes());
}

/// The fixed 10-byte frame header, as read off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub frame_type: u8,
    pub extra: u8,
    pub hop_limit: u8,
    /// Total frame length including the header; always ≥ 10.
    pub length: usize,
}

impl Header {
    /// Reads and validates the header at the front of `input`.
    pub fn decode(input: &[u8]) -> Result<Header, DecodeError> {
        let Some(h) = input.get(..HEADER_LEN) else {
            return Err(DecodeError::Truncated {
                what: "frame header",
                needed: HEADER_LEN - input.len(),
            });
        };
        if h[..4] != MAGIC {
            return Err(DecodeError::BadMagic {
                found: [h[0], h[1], h[2], h[3]],
            });
        }
        let length = u16::from_be_bytes([h[8], h[9]]);
        // The Go reader panics on this; we refuse it.
        if (length as usize) < HEADER_LEN {
            return Err(DecodeError::LengthBelowHeader(length));
        }
        Ok(Header {
            version: h[4],
            frame_type: h[5],
            extra: h[6],
            hop_limit: h[7],
            length: length as usize,
        })
    }
}
