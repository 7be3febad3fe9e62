//! `conifer wire decode` run as a real process over every captured Pinecone
//! vector: each documented field must appear in the JSON with the documented
//! value, signatures must verify, a flipped signature bit must be reported, and
//! malformed input must fail with one helpful line and no panic.

use std::process::{Command, Output};

use conifer_overlay::wire::{varint, Coordinates};
use conifer_overlay::Identity;
use serde_json::Value;

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../conifer-overlay/tests/data/pinecone-vectors.json"
));

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors file is JSON")
}

/// Runs `conifer wire decode <args…>`.
fn decode_args(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["wire", "decode"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the conifer binary")
}

/// Decodes bytes that must be well-formed and returns the JSON.
fn decode_ok(bytes: &[u8]) -> Value {
    let out = decode_args(&[&hex::encode(bytes)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "decoding {} failed: {stderr}",
        hex::encode(bytes)
    );
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Decodes input that must be rejected; returns the single stderr line.
fn decode_err(arg: &str) -> String {
    let out = decode_args(&[arg]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{arg:?} should fail cleanly; stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "no JSON on failure");
    assert!(!stderr.contains("panicked"), "panic on {arg:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("conifer: "), "{stderr}");
    stderr.trim_end().to_owned()
}

fn node(v: &Value, name: &str) -> Identity {
    let seed = hex::decode(v["nodes"][name]["seed_hex"].as_str().unwrap()).unwrap();
    Identity::from_seed(seed.try_into().unwrap())
}

/// The full bytes of a vector frame; timestamped ones are signed here.
fn frame_bytes(v: &Value, f: &Value) -> Vec<u8> {
    if let Some(h) = f["hex"].as_str() {
        return hex::decode(h).unwrap();
    }
    let signer = node(v, f["sender"].as_str().unwrap());
    let mut raw = hex::decode(f["hex_without_signature"].as_str().unwrap()).unwrap();
    let input = hex::decode(f["signature_input_hex"].as_str().unwrap()).unwrap();
    raw.extend_from_slice(&signer.sign(&input));
    assert_eq!(raw.len() as u64, f["length"].as_u64().unwrap());
    raw
}

fn vector<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
}

/// How a documented field's bytes appear in the JSON.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// A lowercase hex string of the same bytes.
    Hex,
    /// A big-endian fixed-width integer, printed as a number.
    Int,
    /// A varint, printed as a number.
    Varint,
    /// Wire coordinates, printed as an array of ports.
    Coords,
}

/// Where the JSON shows a documented field of a frame of type `frame_type`
/// (None for a handshake).
fn locate(frame_type: Option<u64>, name: &str) -> (String, Shape) {
    use Shape::*;
    let header = |p: &str, s| (format!("/header/{p}"), s);
    let body = |p: &str, s| (format!("/body/{p}"), s);
    // hop0_port, hop1_signature, …
    let hop_field = name
        .strip_prefix("hop")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(n, _)| n.parse::<usize>().is_ok());
    if let Some((n, what)) = hop_field {
        let shape = if what == "port" { Varint } else { Hex };
        return (format!("/body/hops/{n}/{what}"), shape);
    }
    let signed_payload = matches!(frame_type, Some(2) | Some(4));
    match (frame_type, name) {
        (None, "version") => ("/version".into(), Int),
        (None, n @ ("zero" | "capabilities" | "public_key" | "signature")) => {
            (format!("/{n}"), Hex)
        }
        (Some(_), "magic") => header("magic", Hex),
        (Some(_), "frame_version") => header("version", Int),
        (Some(_), "frame_type") => header("frame_type/number", Int),
        (Some(_), "extra") => header("extra", Int),
        (Some(_), "hop_limit") => header("hop_limit", Int),
        (Some(_), "frame_length") => header("length", Int),
        (Some(_), "payload_length") => body("payload_len", Int),
        (Some(_), "sequence") if signed_payload => body("payload/sequence", Varint),
        (Some(_), "root_key") if signed_payload => body("payload/root_key", Hex),
        (Some(_), "root_seq") if signed_payload => body("payload/root_seq", Varint),
        (Some(_), "signature") if signed_payload => body("payload/signature", Hex),
        (Some(1), "root_key") => body("root_key", Hex),
        (Some(1), "root_seq") => body("root_seq", Varint),
        (Some(_), n @ ("destination_key" | "source_key")) => body(n, Hex),
        (Some(_), "watermark_key") => body("watermark/key", Hex),
        (Some(_), "watermark_seq") => body("watermark/seq", Varint),
        (Some(3), n @ ("destination_coords" | "source_coords")) => body(n, Coords),
        (Some(3), "payload") => body("payload_hex", Hex),
        other => panic!("no JSON location for documented field {other:?}"),
    }
}

/// The JSON value a documented field's bytes must appear as.
fn expected_json(bytes: &[u8], shape: Shape) -> Value {
    match shape {
        Shape::Hex => Value::from(hex::encode(bytes)),
        Shape::Int => Value::from(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))),
        Shape::Varint => {
            let (v, used) = varint::get_varint(bytes).unwrap();
            assert_eq!(used, bytes.len());
            Value::from(v)
        }
        Shape::Coords => {
            let (c, used) = Coordinates::decode(bytes).unwrap();
            assert_eq!(used, bytes.len());
            Value::from(c.0)
        }
    }
}

/// Every `signature_valid` / `signatures_valid` anywhere in the JSON.
fn validity_flags(v: &Value, path: &str, out: &mut Vec<(String, bool)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                if k.ends_with("_valid") {
                    out.push((p, x.as_bool().expect("validity is a bool")));
                } else {
                    validity_flags(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                validity_flags(x, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_vector_decodes_to_its_documented_fields() {
    let v = vectors();
    for f in v["frames"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        let raw = frame_bytes(&v, f);
        let json = decode_ok(&raw);
        let frame_type = if json["kind"] == "handshake" {
            None
        } else {
            assert_eq!(json["kind"], "frame", "{id}");
            Some(json["header"]["frame_type"]["number"].as_u64().unwrap())
        };

        for field in f["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            let offset = field["offset"].as_u64().unwrap() as usize;
            let len = field["length"].as_u64().unwrap() as usize;
            let bytes = &raw[offset..offset + len];
            // Uncaptured signatures have hex null: the bytes we signed stand in.
            if let Some(h) = field["hex"].as_str() {
                assert_eq!(hex::encode(bytes), h, "{id}.{name} offset/length");
            }
            let (pointer, shape) = locate(frame_type, name);
            let shown = json
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("{id}: {pointer} missing for {name}\n{json:#}"));
            assert_eq!(
                shown,
                &expected_json(bytes, shape),
                "{id}.{name} at {pointer}"
            );
        }

        let mut flags = Vec::new();
        validity_flags(&json, "", &mut flags);
        let expected_flags = match frame_type {
            None | Some(2) | Some(4) => 1,
            Some(1) => 1 + json["body"]["hops"].as_array().unwrap().len(),
            _ => 0,
        };
        assert_eq!(flags.len(), expected_flags, "{id}: {flags:?}");
        for (path, ok) in flags {
            assert!(ok, "{id}: {path} should be true");
        }
        if frame_type.is_none() {
            assert_eq!(json["accepted"], true, "{id}");
            assert_eq!(json["rejection"], Value::Null, "{id}");
        }
    }
}

#[test]
fn typed_details() {
    let v = vectors();
    let a = node(&v, "A").public_key().to_hex();
    let b = node(&v, "B").public_key().to_hex();

    let json = decode_ok(&frame_bytes(&v, vector(&v, "keepalive")));
    assert_eq!(json["header"]["frame_type"]["name"], "Keepalive");
    assert_eq!(json["body"], serde_json::json!({}));

    let json = decode_ok(&frame_bytes(
        &v,
        vector(&v, "tree_announcement_a_after_reparent"),
    ));
    let body = &json["body"];
    assert_eq!(json["header"]["frame_type"]["name"], "TreeAnnouncement");
    assert_eq!(body["receiver_coords"], serde_json::json!([1, 1]));
    assert_eq!(body["sender_coords"], serde_json::json!([1]));
    assert_eq!(body["sanity_error"], Value::Null);
    assert_eq!(body["hops"][0]["key"], b.as_str());
    assert_eq!(body["hops"][1]["key"], a.as_str());

    let json = decode_ok(&frame_bytes(&v, vector(&v, "traffic_snek_ping")));
    let body = &json["body"];
    assert_eq!(body["routing"], "snek");
    assert_eq!(body["payload_utf8"], "ping");
    assert_eq!(body["watermark"]["key"], b.as_str());
    assert_eq!(body["watermark"]["seq"], 0);

    let json = decode_ok(&frame_bytes(&v, vector(&v, "traffic_tree_pong")));
    let body = &json["body"];
    assert_eq!(body["routing"], "tree");
    assert_eq!(body["payload_utf8"], "pong");
    assert!(
        body.get("watermark").is_none(),
        "tree traffic has no watermark"
    );

    let json = decode_ok(&frame_bytes(&v, vector(&v, "bootstrap_a")));
    assert_eq!(json["header"]["frame_type"]["name"], "Bootstrap");
    assert_eq!(json["body"]["payload"]["sequence"], 1_795_614_823_842u64);

    let json = decode_ok(&frame_bytes(&v, vector(&v, "wakeup_broadcast_b")));
    assert_eq!(json["header"]["frame_type"]["name"], "WakeupBroadcast");
    assert_eq!(json["header"]["hop_limit"], 5);
    assert_eq!(json["body"]["payload"]["sequence"], 1_795_614_822_843u64);
}

#[test]
fn binary_payload_has_no_utf8_rendering() {
    // The tree pong with its payload replaced by bytes that are not text.
    let v = vectors();
    let mut raw = frame_bytes(&v, vector(&v, "traffic_tree_pong"));
    let n = raw.len();
    raw[n - 4..].copy_from_slice(&[0x00, 0xff, 0x01, 0x80]);
    let json = decode_ok(&raw);
    assert_eq!(json["body"]["payload_hex"], "00ff0180");
    assert!(json["body"].get("payload_utf8").is_none());
}

/// Flips one bit of the byte at `offset` and returns the decoded JSON.
fn decode_flipped(raw: &[u8], offset: usize) -> Value {
    let mut bad = raw.to_vec();
    bad[offset] ^= 0x01;
    decode_ok(&bad)
}

#[test]
fn flipped_signature_bits_are_reported_not_fatal() {
    let v = vectors();

    let raw = frame_bytes(&v, vector(&v, "handshake_a"));
    let json = decode_flipped(&raw, 40);
    assert_eq!(json["signature_valid"], false);
    assert_eq!(json["accepted"], false);
    assert!(json["rejection"].as_str().unwrap().contains("signature"));

    for id in ["bootstrap_a", "wakeup_broadcast_b"] {
        let raw = frame_bytes(&v, vector(&v, id));
        let json = decode_flipped(&raw, raw.len() - 1);
        assert_eq!(json["body"]["payload"]["signature_valid"], false, "{id}");
    }

    // Two hops: each signature covers every earlier hop, signature included.
    let raw = frame_bytes(&v, vector(&v, "tree_announcement_a_after_reparent"));
    let json = decode_flipped(&raw, raw.len() - 1); // hop 1's signature
    let hops = &json["body"]["hops"];
    assert_eq!(json["body"]["signatures_valid"], false);
    assert_eq!(
        (&hops[0]["signature_valid"], &hops[1]["signature_valid"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    let json = decode_flipped(&raw, 78); // hop 0's signature
    let hops = &json["body"]["hops"];
    assert_eq!(json["body"]["signatures_valid"], false);
    assert_eq!(
        (&hops[0]["signature_valid"], &hops[1]["signature_valid"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
}

#[test]
fn handshake_with_wrong_capabilities_is_shown_but_not_accepted() {
    let v = vectors();
    let mut raw = frame_bytes(&v, vector(&v, "handshake_b"));
    raw[7] = 0x3f;
    let json = decode_ok(&raw);
    assert_eq!(json["capabilities"], "0000003f");
    // The signature covers the capabilities, so it breaks too.
    assert_eq!(json["signature_valid"], false);
    assert_eq!(json["accepted"], false);
    assert!(json["rejection"]
        .as_str()
        .unwrap()
        .contains("capabilities 0x0000003f"));
}

#[test]
fn input_forms_are_equivalent() {
    let v = vectors();
    let raw = hex::encode(frame_bytes(&v, vector(&v, "traffic_snek_ping")));
    let plain = decode_args(&[&raw]);
    assert!(plain.status.success());
    let spaced: Vec<String> = raw
        .as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let colons: Vec<&str> = (0..raw.len()).step_by(2).map(|i| &raw[i..i + 2]).collect();
    for form in [
        vec![format!("0x{raw}")],
        vec![raw.to_uppercase()],
        vec![format!("  {}\n", spaced.join(" \t"))],
        spaced.clone(),
        vec![colons.join(":")],
    ] {
        let args: Vec<&str> = form.iter().map(String::as_str).collect();
        let out = decode_args(&args);
        assert!(out.status.success(), "{form:?}");
        assert_eq!(out.stdout, plain.stdout, "{form:?}");
    }
}

#[test]
fn unknown_frame_type_is_dropped_with_a_note() {
    let json = decode_ok(&hex::decode("70696e65000700000010aabbccddeeff").unwrap());
    assert_eq!(json["header"]["frame_type"]["number"], 7);
    assert_eq!(json["header"]["frame_type"]["name"], "Unknown");
    assert!(json.get("body").is_none());
    assert!(json["note"].as_str().unwrap().contains("unknown"));
}

#[test]
fn negative_vector_is_rejected() {
    for case in vectors()["negative"].as_array().unwrap() {
        let err = decode_err(case["hex"].as_str().unwrap());
        assert_eq!(
            err,
            "conifer: frame length field is 5, below the 10-byte header"
        );
    }
}

/// A traffic frame with the given destination coordinates (wire form, length
/// prefix included), empty source coordinates, zero keys and no payload.
fn traffic_with_raw_dest_coords(coords: &[u8]) -> String {
    let mut body = vec![0x00, 0x00]; // payload length 0
    body.extend_from_slice(coords);
    body.extend_from_slice(&[0x00, 0x00]); // source coordinates []
    body.extend_from_slice(&[0u8; 64]); // destination and source keys
    let len = (10 + body.len()) as u16;
    let mut raw = b"pine".to_vec();
    raw.extend_from_slice(&[0, 3, 0, 10]);
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(&body);
    hex::encode(raw)
}

#[test]
fn malformed_input_fails_with_a_helpful_line() {
    let v = vectors();
    let ping = frame_bytes(&v, vector(&v, "traffic_snek_ping"));

    // Bad magic.
    let err = decode_err("70696e6600000000000a");
    assert!(err.contains("bad magic [70, 69, 6e, 66]"), "{err}");
    let err = decode_err("deadbeef");
    assert!(
        err.contains("bad magic") && err.contains("handshake"),
        "{err}"
    );

    // Truncated: the length field no longer matches.
    let err = decode_err(&hex::encode(&ping[..ping.len() - 1]));
    assert!(
        err.contains("frame length field says 118 bytes but 117 were given"),
        "{err}"
    );
    // Truncated with a consistent header: the payload runs short.
    let mut short = ping[..ping.len() - 2].to_vec();
    short[8..10].copy_from_slice(&116u16.to_be_bytes());
    let err = decode_err(&hex::encode(&short));
    assert!(
        err.contains("needed 2 more byte(s) for traffic payload"),
        "{err}"
    );
    // Too short for a header at all.
    let err = decode_err("70696e");
    assert!(err.contains("frame header"), "{err}");
    // A handshake one byte short.
    let hs = frame_bytes(&v, vector(&v, "handshake_a"));
    let err = decode_err(&hex::encode(&hs[..103]));
    assert!(err.contains("needed 1 more byte(s) for handshake"), "{err}");
    // Trailing bytes after the frame's declared length.
    let err = decode_err("70696e6500000000000a00");
    assert!(err.contains("says 10 bytes but 11"), "{err}");

    // Bad hex.
    let err = decode_err("70696e65zz");
    assert!(err.contains("invalid hex") && err.contains("'z'"), "{err}");
    let err = decode_err("70696e650");
    assert!(err.contains("odd number of hex digits"), "{err}");
    let err = decode_err("0x");
    assert!(err.contains("no hex digits"), "{err}");

    // A coordinate varint longer than 64 bits.
    let mut coords = vec![0x00, 0x0b];
    coords.extend_from_slice(&[0xff; 10]);
    coords.push(0x01);
    let err = decode_err(&traffic_with_raw_dest_coords(&coords));
    assert!(err.contains("varint is longer than 10 bytes"), "{err}");
    // A non-minimal one, and one cut off by the coordinates' length.
    let err = decode_err(&traffic_with_raw_dest_coords(&[0x00, 0x02, 0x80, 0x01]));
    assert!(err.contains("not minimally encoded"), "{err}");
    let err = decode_err(&traffic_with_raw_dest_coords(&[0x00, 0x01, 0x81]));
    assert!(err.contains("varint"), "{err}");
    // The same builder with sane coordinates decodes, so the errors above are
    // about the coordinates alone.
    let ok = decode_args(&[&traffic_with_raw_dest_coords(&[0x00, 0x02, 0x01, 0x02])]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn help_explains_the_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["wire", "decode", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["handshake", "pine", "signature_valid", "Exit status"] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    assert!(text.lines().count() < 60, "--help fits on one screen");
}
