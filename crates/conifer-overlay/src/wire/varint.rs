//! Pinecone's "Varu64": base-128, most significant 7-bit group first.
//!
//! This is *not* LEB128: `1234` is `89 52`. The Go decoder accepts any length
//! and wraps silently; ours caps at 10 bytes, rejects overflow past 64 bits and
//! rejects non-minimal encodings (Go never emits them).

use super::DecodeError;

/// Longest valid encoding of a u64.
pub const MAX_VARINT_LEN: usize = 10;

/// Appends the minimal encoding of `value`.
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    let mut buf = [0u8; MAX_VARINT_LEN];
    let mut i = MAX_VARINT_LEN - 1;
    let mut v = value;
    buf[i] = (v & 0x7f) as u8;
    v >>= 7;
    while v != 0 {
        i -= 1;
        buf[i] = 0x80 | (v & 0x7f) as u8;
        v >>= 7;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Number of bytes `put_varint` writes for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Decodes one varint from the front of `input`, returning it and its length.
pub fn get_varint(input: &[u8]) -> Result<(u64, usize), DecodeError> {
    if input.first() == Some(&0x80) {
        return Err(DecodeError::VarintNotMinimal);
    }
    let mut value: u64 = 0;
    for (i, &b) in input.iter().enumerate().take(MAX_VARINT_LEN) {
        if value > (u64::MAX >> 7) {
            return Err(DecodeError::VarintOverflow);
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_VARINT_LEN {
        Err(DecodeError::VarintOverflow)
    } else {
        Err(DecodeError::Truncated {
            what: "varint",
            needed: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_values_round_trip() {
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX >> 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "length of {v}");
            assert_eq!(get_varint(&buf), Ok((v, buf.len())));
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            get_varint(&[]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            get_varint(&[0x81]),
            Err(DecodeError::Truncated { .. })
        ));
        assert_eq!(
            get_varint(&[0x80, 0x01]),
            Err(DecodeError::VarintNotMinimal)
        );
        // u64::MAX is 81 ff ff ff ff ff ff ff ff 7f; one more bit overflows.
        let mut too_big = vec![0x82];
        too_big.extend([0xff; 8]);
        too_big.push(0x7f);
        assert_eq!(get_varint(&too_big), Err(DecodeError::VarintOverflow));
        assert_eq!(get_varint(&[0xff; 11]), Err(DecodeError::VarintOverflow));
    }
}
