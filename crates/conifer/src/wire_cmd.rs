//! `conifer wire`: the Pinecone dissector.
//!
//! `conifer wire decode <HEX>` turns one handshake or one frame into pretty JSON
//! with every wire field, plus whether its signatures verify. Malformed input is
//! an error naming what is wrong (the codec's [`DecodeError`] message); a
//! well-formed message with a bad signature is *not* an error, it is reported
//! as `"signature_valid": false`.

use std::io::{Read, Write};

use anyhow::{bail, Context};
use clap::Subcommand;
use conifer_overlay::wire::{
    decode_handshake, Bootstrap, Coordinates, DecodeError, Frame, FrameType, Header, Hop,
    SignedPayload, SwitchAnnouncement, Traffic, WakeupBroadcast, Watermark, HANDSHAKE_LEN,
    HANDSHAKE_VERSION, HEADER_LEN, MAGIC,
};
use conifer_overlay::PublicKey;
use serde::Serialize;

const DECODE_EXAMPLES: &str = "\
Input:
  The hex may be split over several arguments and may contain whitespace,
  ':' separators and a leading 0x; '-' reads it from standard input.
  104 bytes starting with 01 are a handshake; bytes starting with \"pine\"
  (70 69 6e 65) are one frame, whose length field must match the input.

Output (pretty JSON on stdout, keys and signatures in lowercase hex):
  handshake  version, zero, capabilities, public_key, signature,
             signature_valid, accepted, rejection
  frame      header {magic, version, frame_type {number, name}, extra,
             hop_limit, length}, then a body ({} for 0 Keepalive) that
             starts with payload_len, the u16 at offset 10:
             1 TreeAnnouncement: root_key, root_seq, hops [{port, key,
               signature, signature_valid}], signatures_valid, sanity_error,
               sender_coords, receiver_coords
             2 Bootstrap: destination_key, watermark {key, seq}, payload
               {sequence, root_key, root_seq, signature, signature_valid}
               (verified by destination_key)
             3 Traffic: routing tree|snek, destination/source coords and
               keys, watermark (SNEK only), payload_hex, payload_utf8 (when
               printable text)
             4 WakeupBroadcast: source_key, payload (verified by source_key)
             other types: the header and a note (receivers drop them)

Exit status: 0 when the bytes decode (even if a signature is bad), 1 with a
one-line reason on stderr when they are malformed, 2 on a usage error.

Examples:
  conifer wire decode 70696e6500000000000a
  conifer wire decode '70:69:6e:65 00 00 00 00 00 0a'
  xxd -p capture.bin | conifer wire decode -";

#[derive(Subcommand, Debug)]
pub enum WireCommand {
    /// Decode a hex handshake or frame and print it as JSON.
    ///
    /// Dissects one Pinecone peering handshake or one frame, byte-compatible with
    /// the Go reference, and prints every field with signature checks. Malformed
    /// bytes exit with status 1 and a message naming the first problem found.
    #[command(after_long_help = DECODE_EXAMPLES)]
    Decode {
        /// The bytes in hex (whitespace, ':' and a leading 0x are ignored; several
        /// arguments are joined; '-' reads standard input).
        #[arg(required = true, value_name = "HEX")]
        hex: Vec<String>,
    },
}

impl WireCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            WireCommand::Decode { hex } => {
                let text = if hex.len() == 1 && hex[0] == "-" {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading hex from standard input")?;
                    s
                } else {
                    hex.join(" ")
                };
                let bytes = parse_hex(&text)?;
                let value = decode(&bytes)?;
                print_json(&value)
            }
        }
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        // `conifer wire decode … | head` is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

/// Parses hex, ignoring whitespace, ':' separators and a leading `0x`.
pub fn parse_hex(input: &str) -> anyhow::Result<Vec<u8>> {
    let trimmed = input.trim_start();
    let body = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let offset = input.len() - body.len();
    let mut nibbles = Vec::with_capacity(body.len());
    for (i, ch) in body.char_indices() {
        if ch.is_whitespace() || ch == ':' {
            continue;
        }
        let Some(n) = ch.to_digit(16) else {
            bail!(
                "invalid hex: {ch:?} at character {} is not a hexadecimal digit",
                input[..offset + i].chars().count() + 1
            );
        };
        nibbles.push(n as u8);
    }
    if nibbles.is_empty() {
        bail!("no hex digits given: pass the bytes of a handshake or frame");
    }
    if nibbles.len() % 2 != 0 {
        bail!(
            "invalid hex: odd number of hex digits ({}); every byte needs two",
            nibbles.len()
        );
    }
    Ok(nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Classifies the bytes as a handshake or a frame and renders them as JSON.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Decoded> {
    if bytes.starts_with(&MAGIC) {
        return Ok(Decoded::Frame(frame_json(bytes)?));
    }
    if bytes.first() == Some(&HANDSHAKE_VERSION) {
        return match <&[u8; HANDSHAKE_LEN]>::try_from(bytes) {
            Ok(hs) => Ok(Decoded::Handshake(handshake_json(hs))),
            // Wrong length: the codec names how many bytes are missing or extra.
            Err(_) => Err(decode_handshake(bytes)
                .err()
                .unwrap_or(DecodeError::Truncated {
                    what: "handshake",
                    needed: HANDSHAKE_LEN.saturating_sub(bytes.len()),
                })
                .into()),
        };
    }
    match bytes.get(..MAGIC.len()) {
        Some(found) => {
            let err = DecodeError::BadMagic {
                found: found.try_into().expect("4 bytes"),
            };
            bail!("{err}; nor is it a handshake (104 bytes starting with version byte 01)")
        }
        None => Err(DecodeError::Truncated {
            what: "frame header",
            needed: HEADER_LEN - bytes.len(),
        }
        .into()),
    }
}

// The JSON shapes. Structs rather than `json!` so fields print in wire order.

/// What `decode` found.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Decoded {
    Handshake(HandshakeJson),
    Frame(FrameJson),
}

#[derive(Serialize)]
pub struct HandshakeJson {
    kind: &'static str,
    length: usize,
    version: u8,
    zero: String,
    capabilities: String,
    public_key: String,
    signature: String,
    signature_valid: bool,
    /// Whether a Pinecone node would accept it (version, capabilities, signature).
    accepted: bool,
    rejection: Option<String>,
}

#[derive(Serialize)]
pub struct FrameJson {
    kind: &'static str,
    header: HeaderJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Body>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct HeaderJson {
    magic: String,
    version: u8,
    frame_type: FrameTypeJson,
    extra: u8,
    hop_limit: u8,
    length: usize,
}

#[derive(Serialize)]
struct FrameTypeJson {
    number: u8,
    name: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Body {
    Keepalive {},
    TreeAnnouncement(AnnouncementJson),
    Bootstrap(BootstrapJson),
    Traffic(TrafficJson),
    WakeupBroadcast(BroadcastJson),
}

#[derive(Serialize)]
struct AnnouncementJson {
    payload_len: u16,
    root_key: String,
    root_seq: u64,
    hops: Vec<HopJson>,
    signatures_valid: bool,
    /// Receiver checks 1–3 and 5 of §1.6 (check 4 needs the handshake key).
    sanity_error: Option<String>,
    sender_coords: Coordinates,
    receiver_coords: Coordinates,
}

#[derive(Serialize)]
struct HopJson {
    port: u64,
    key: String,
    signature: String,
    signature_valid: bool,
}

#[derive(Serialize)]
struct WatermarkJson {
    key: String,
    seq: u64,
}

#[derive(Serialize)]
struct SignedPayloadJson {
    sequence: u64,
    root_key: String,
    root_seq: u64,
    signature: String,
    signature_valid: bool,
}

#[derive(Serialize)]
struct BootstrapJson {
    payload_len: u16,
    destination_key: String,
    watermark: WatermarkJson,
    /// Signed by the destination key (the bootstrapping node).
    payload: SignedPayloadJson,
}

#[derive(Serialize)]
struct TrafficJson {
    payload_len: u16,
    routing: &'static str,
    destination_coords: Coordinates,
    source_coords: Coordinates,
    destination_key: String,
    source_key: String,
    /// On the wire only for SNEK routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    watermark: Option<WatermarkJson>,
    payload_hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_utf8: Option<String>,
}

#[derive(Serialize)]
struct BroadcastJson {
    payload_len: u16,
    source_key: String,
    /// Signed by the source key.
    payload: SignedPayloadJson,
}

fn handshake_json(hs: &[u8; HANDSHAKE_LEN]) -> HandshakeJson {
    let key = PublicKey(hs[8..40].try_into().expect("32 bytes"));
    let signature: [u8; 64] = hs[40..].try_into().expect("64 bytes");
    let verdict = decode_handshake(hs);
    HandshakeJson {
        kind: "handshake",
        length: HANDSHAKE_LEN,
        version: hs[0],
        zero: hex::encode(&hs[1..4]),
        capabilities: hex::encode(&hs[4..8]),
        public_key: key.to_hex(),
        signature: hex::encode(signature),
        signature_valid: key.verify(&hs[..40], &signature),
        accepted: verdict.is_ok(),
        rejection: verdict.err().map(|e| e.to_string()),
    }
}

fn frame_json(bytes: &[u8]) -> Result<FrameJson, DecodeError> {
    let header = Header::decode(bytes)?;
    let frame = Frame::decode(bytes)?;
    // Every typed body starts with the u16 payload length at offset 10; the
    // decoder has already checked it against the bytes that follow.
    let payload_len = || u16::from_be_bytes([bytes[10], bytes[11]]);
    let (body, note) = match &frame {
        Frame::Keepalive => (Some(Body::Keepalive {}), None),
        Frame::TreeAnnouncement(ann) => (
            Some(Body::TreeAnnouncement(announcement_json(
                ann,
                payload_len(),
            ))),
            None,
        ),
        Frame::Bootstrap(b) => (
            Some(Body::Bootstrap(bootstrap_json(b, payload_len()))),
            None,
        ),
        Frame::Traffic(t) => (Some(Body::Traffic(traffic_json(t, payload_len()))), None),
        Frame::WakeupBroadcast(b) => (
            Some(Body::WakeupBroadcast(broadcast_json(b, payload_len()))),
            None,
        ),
        Frame::Unknown { frame_type, length } => (
            None,
            Some(format!(
                "frame type {frame_type} is unknown to this version: its {} body byte(s) are \
                 not decoded, and a receiver drops the frame but keeps the peering",
                length - HEADER_LEN
            )),
        ),
    };
    Ok(FrameJson {
        kind: "frame",
        header: header_json(&header),
        body,
        note,
    })
}

fn frame_type_name(t: u8) -> &'static str {
    match FrameType::from_u8(t) {
        Some(FrameType::Keepalive) => "Keepalive",
        Some(FrameType::TreeAnnouncement) => "TreeAnnouncement",
        Some(FrameType::Bootstrap) => "Bootstrap",
        Some(FrameType::Traffic) => "Traffic",
        Some(FrameType::WakeupBroadcast) => "WakeupBroadcast",
        None => "Unknown",
    }
}

fn header_json(h: &Header) -> HeaderJson {
    HeaderJson {
        magic: hex::encode(MAGIC),
        version: h.version,
        frame_type: FrameTypeJson {
            number: h.frame_type,
            name: frame_type_name(h.frame_type),
        },
        extra: h.extra,
        hop_limit: h.hop_limit,
        length: h.length,
    }
}

fn announcement_json(ann: &SwitchAnnouncement, payload_len: u16) -> AnnouncementJson {
    let hops = ann
        .hops
        .iter()
        .enumerate()
        .map(|(i, hop)| hop_json(hop, hop_signature_valid(ann, i)))
        .collect();
    // The peer's handshake key is unknown here, so the last hop's own key stands
    // in for it: that skips check 4 (last hop is the sending peer).
    let last = ann.hops.last().map_or(ann.root.key, |h| h.key);
    AnnouncementJson {
        payload_len,
        root_key: ann.root.key.to_hex(),
        root_seq: ann.root.seq,
        hops,
        signatures_valid: ann.verify_signatures().is_ok(),
        sanity_error: ann.sanity_check(last).err().map(|e| e.to_string()),
        sender_coords: ann.peer_coords(),
        receiver_coords: ann.coords(),
    }
}

/// Whether hop `i` is signed by its key over everything before it.
fn hop_signature_valid(ann: &SwitchAnnouncement, i: usize) -> bool {
    let prefix = SwitchAnnouncement {
        root: ann.root,
        hops: ann.hops[..i].to_vec(),
    };
    let mut signed = Vec::with_capacity(prefix.encoded_len());
    prefix.encode_into(&mut signed);
    let hop = &ann.hops[i];
    hop.key.verify(&signed, &hop.signature)
}

fn hop_json(hop: &Hop, signature_valid: bool) -> HopJson {
    HopJson {
        port: hop.port,
        key: hop.key.to_hex(),
        signature: hex::encode(hop.signature),
        signature_valid,
    }
}

fn watermark_json(w: &Watermark) -> WatermarkJson {
    WatermarkJson {
        key: w.key.to_hex(),
        seq: w.seq,
    }
}

/// A bootstrap or broadcast payload, verified against `signer`.
fn signed_payload_json(p: &SignedPayload, signer: &PublicKey) -> SignedPayloadJson {
    SignedPayloadJson {
        sequence: p.sequence,
        root_key: p.root.key.to_hex(),
        root_seq: p.root.seq,
        signature: hex::encode(p.signature),
        signature_valid: p.verify(signer),
    }
}

fn bootstrap_json(b: &Bootstrap, payload_len: u16) -> BootstrapJson {
    BootstrapJson {
        payload_len,
        destination_key: b.destination.to_hex(),
        watermark: watermark_json(&b.watermark),
        payload: signed_payload_json(&b.payload, &b.destination),
    }
}

fn traffic_json(t: &Traffic, payload_len: u16) -> TrafficJson {
    let snek = t.destination_coords.is_empty();
    TrafficJson {
        payload_len,
        routing: if snek { "snek" } else { "tree" },
        destination_coords: t.destination_coords.clone(),
        source_coords: t.source_coords.clone(),
        destination_key: t.destination.to_hex(),
        source_key: t.source.to_hex(),
        watermark: snek.then(|| watermark_json(&t.watermark)),
        payload_hex: hex::encode(&t.payload),
        payload_utf8: printable_utf8(&t.payload).map(str::to_owned),
    }
}

fn broadcast_json(b: &WakeupBroadcast, payload_len: u16) -> BroadcastJson {
    BroadcastJson {
        payload_len,
        source_key: b.source.to_hex(),
        payload: signed_payload_json(&b.payload, &b.source),
    }
}

/// The payload as text if it is valid UTF-8 with no control characters other
/// than tab, CR and LF.
fn printable_utf8(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_input_forms() {
        assert_eq!(parse_hex("0x0aff").unwrap(), [0x0a, 0xff]);
        assert_eq!(parse_hex(" 0A:FF\n").unwrap(), [0x0a, 0xff]);
        assert_eq!(parse_hex("0a ff").unwrap(), [0x0a, 0xff]);
        let err = parse_hex("0a zz").unwrap_err().to_string();
        assert!(err.contains("'z' at character 4"), "{err}");
        assert!(parse_hex("abc").unwrap_err().to_string().contains("odd"));
        assert!(parse_hex(" 0x ")
            .unwrap_err()
            .to_string()
            .contains("no hex"));
    }

    #[test]
    fn printable_payloads() {
        assert_eq!(printable_utf8(b"ping"), Some("ping"));
        assert_eq!(printable_utf8(b"a\nb"), Some("a\nb"));
        assert_eq!(printable_utf8(b"\x00"), None);
        assert_eq!(printable_utf8(b"\xff"), None);
    }
}
