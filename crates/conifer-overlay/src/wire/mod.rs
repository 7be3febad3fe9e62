//! The Pinecone wire format, byte-compatible with matrix-org's Go Pinecone.
//!
//! Every integer is big-endian, varints are most-significant-group first, and
//! every decoder returns [`DecodeError`] rather than panicking.

mod announcement;
mod coords;
mod cursor;
mod deframer;
mod error;
mod frame;
mod handshake;
mod payload;
pub mod varint;

pub(crate) use announcement::encode_hop as announcement_encode_hop;
pub use announcement::{announcement_frame, AnnouncementError, Hop, Root, SwitchAnnouncement};
pub use coords::{tree_distance, Coordinates, Port};
pub use deframer::Deframer;
pub use error::DecodeError;
pub use frame::{
    Bootstrap, Frame, FrameTooLarge, FrameType, Header, Traffic, WakeupBroadcast, Watermark,
    BROADCAST_HOP_LIMIT, HEADER_LEN, MAGIC, MAX_FRAME_LEN, TRAFFIC_HOP_LIMIT,
};
pub use handshake::{
    decode_handshake, encode_handshake, CAPABILITIES, HANDSHAKE_LEN, HANDSHAKE_VERSION,
};
pub use payload::SignedPayload;
