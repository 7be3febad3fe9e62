//! Tree coordinates: the switch ports on the path from the root to a node.

use std::fmt;

use super::varint::{get_varint, put_varint, varint_len};
use super::DecodeError;

/// A switch port number. Port 0 is the local router; peers use 1..=253.
pub type Port = u64;

/// A node's position in the spanning tree; the root's coordinates are empty.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Coordinates(pub Vec<Port>);

impl Coordinates {
    pub fn root() -> Self {
        Coordinates(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Tree distance: `len(a) + len(b) − 2·commonPrefixLen(a, b)`.
    pub fn distance_to(&self, other: &Coordinates) -> usize {
        tree_distance(&self.0, &other.0)
    }

    /// Bytes this takes on the wire: a u16 byte length, then the varints.
    pub fn encoded_len(&self) -> usize {
        2 + self.body_len()
    }

    fn body_len(&self) -> usize {
        self.0.iter().map(|&p| varint_len(p)).sum()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let body = self.body_len();
        debug_assert!(body <= u16::MAX as usize);
        out.extend_from_slice(&(body as u16).to_be_bytes());
        for &port in &self.0 {
            put_varint(out, port);
        }
    }

    /// Decodes from the front of `input`, returning the coordinates and bytes used.
    pub fn decode(input: &[u8]) -> Result<(Self, usize), DecodeError> {
        let Some(len_bytes) = input.get(..2) else {
            return Err(DecodeError::Truncated {
                what: "coordinates length",
                needed: 2 - input.len(),
            });
        };
        let body_len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
        let Some(mut body) = input.get(2..2 + body_len) else {
            return Err(DecodeError::Truncated {
                what: "coordinates",
                needed: 2 + body_len - input.len(),
            });
        };
        let mut ports = Vec::with_capacity(body_len);
        while !body.is_empty() {
            // A varint cut short by the declared length is malformed, not merely short.
            let (port, used) = get_varint(body)?;
            ports.push(port);
            body = &body[used..];
        }
        Ok((Coordinates(ports), 2 + body_len))
    }
}

/// Tree distance between two coordinate lists.
pub fn tree_distance(a: &[Port], b: &[Port]) -> usize {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    a.len() + b.len() - 2 * common
}

impl fmt::Debug for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl serde::Serialize for Coordinates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_cases() {
        assert_eq!(tree_distance(&[], &[]), 0);
        assert_eq!(tree_distance(&[1], &[]), 1);
        assert_eq!(tree_distance(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(tree_distance(&[1, 2], &[3, 4]), 4);
        assert_eq!(tree_distance(&[1, 2, 3, 4], &[1, 2]), 2);
    }

    #[test]
    fn truncated_body_is_an_error() {
        assert!(Coordinates::decode(&[0x00]).is_err());
        assert!(Coordinates::decode(&[0x00, 0x02, 0x01]).is_err());
        // Declared body ends in the middle of a varint.
        assert!(Coordinates::decode(&[0x00, 0x01, 0x81]).is_err());
    }
}
