/// Why a byte string is not a valid Pinecone handshake or frame.
///
/// Every decoder in this crate returns one of these instead of panicking; the
/// driver closes the peering that sent the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ended early: needed {needed} more byte(s) for {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("{extra} unexpected trailing byte(s) after {what}")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("bad magic {found:02x?}: a Pinecone frame starts with \"pine\" (70 69 6e 65)")]
    BadMagic { found: [u8; 4] },
    #[error("frame length field is {0}, below the 10-byte header")]
    LengthBelowHeader(u16),
    #[error("frame length field says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("varint is longer than 10 bytes or overflows 64 bits")]
    VarintOverflow,
    #[error("varint is not minimally encoded (leading 0x80 byte)")]
    VarintNotMinimal,
    #[error("handshake version {0}, expected 1")]
    HandshakeVersion(u8),
    #[error("handshake capabilities {0:#010x}, expected exactly 0x0000003b")]
    HandshakeCapabilities(u32),
    #[error("handshake signature does not verify with the key it carries")]
    HandshakeSignature,
}
