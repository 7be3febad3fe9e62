//! Bounded fuzzing of the federation decoders: arbitrary input gets an
//! error, never a panic, and where there is an oracle the decoders agree
//! with it. Each property runs a fixed number of cases (proptest's default
//! deterministic seed per test); `PROPTEST_CASES=N` overrides every count
//! for a longer soak. The coverage-guided cargo-fuzz targets for the same
//! decoders are in fuzz/fuzz_targets/ (x_matrix, send_transaction,
//! canonical_json).
//!
//! * the X-Matrix header: junk never panics, a header the signer produced
//!   parses back to its fields and verifies, escaped quoted values round-trip;
//! * the `/send` body: refused exactly when over the limits or from another
//!   origin, and otherwise gives back its PDUs and EDUs in order;
//! * remote PDUs: any JSON through decoding, event ID, format, signature and
//!   hash checks never panics; signed events verify under their own ID, and
//!   changed content leaves the redacted event;
//! * canonical JSON: conversion never panics and is idempotent.

use conifer_federation::{
    decode_pdu, parse_transaction, parse_x_matrix, sign_request, verify_request,
    verify_server_key_response, TransactionError, MAX_EDUS, MAX_PDUS, MAX_X_MATRIX_LEN,
};
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::PublicKeyMap;
use conifer_rooms::ruma::{CanonicalJsonValue, OwnedEventId, OwnedServerName};
use conifer_rooms::{sign_template, Pdu, ServerKey, SUPPORTED_VERSIONS};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `cases` unless `PROPTEST_CASES` is set.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Shrinking a rare failure must not turn a CI run into a long one.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON values, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Like [`json`], with the numbers canonical JSON refuses (floats, integers
/// beyond ±(2^53 - 1)) and keys from all of Unicode.
fn wide_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-(1i64 << 53) - 2..(1i64 << 53) + 2).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn server_key(name: &str, seed: u8) -> ServerKey {
    let name = OwnedServerName::try_from(name).expect("a valid server name");
    ServerKey::from_seed(&name, "k1", &[seed; 32])
}

fn keys_of(key: &ServerKey) -> PublicKeyMap {
    let mut keys: PublicKeyMap = BTreeMap::new();
    keys.entry(key.server_name.to_string())
        .or_default()
        .insert(key.key_id(), Base64::new(key.public.to_vec()));
    keys
}

/// A message event by `@u:a.test` signed by `a.test`, as a remote server sends it.
fn signed_event(version: &str, body: &str, depth: i64, key: &ServerKey) -> Pdu {
    let template = json!({
        "room_id": "!r:a.test",
        "sender": "@u:a.test",
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": body },
        "depth": depth,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1_700_000_000_000u64,
    });
    sign_template(version, template, key).expect("a signable event")
}

/// Every stage of the remote PDU pipeline on one value: no panic, and the
/// event ID is the same whether it comes from decoding or is checked later.
fn exercise_pdu(version: &str, v: Value, keys: &PublicKeyMap) {
    if let Ok(decoded) = decode_pdu(version, v) {
        assert!(decoded.event_id.starts_with('$'));
        let _ = decoded.check_format();
        let _ = decoded.signing_key_ids();
        let id = decoded.event_id.clone();
        if let Ok(pdu) = decoded.verify(keys) {
            assert_eq!(pdu.event_id.as_str(), id);
        }
    }
}

/// The canonical JSON text of `v`, if it has one.
fn canonical(v: Value) -> Option<String> {
    CanonicalJsonValue::try_from(v)
        .ok()
        .map(|c| serde_json::to_string(&c).expect("canonical JSON serializes"))
}

/// Escapes a quoted X-Matrix parameter value.
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn x_matrix_headers_never_panic(s in ".{0,200}") {
        let _ = parse_x_matrix(&s);
        let _ = parse_x_matrix(&format!("X-Matrix {s}"));
    }

    #[test]
    fn x_matrix_headers_of_header_characters_reparse_the_same(
        a in r#"[a-z=,"\\ ]{0,12}"#,
        b in r#"[a-z=,"\\ ]{0,12}"#,
        c in r#"[a-z=,"\\ ]{0,12}"#,
        d in r#"[a-z=,"\\ ]{0,12}"#,
    ) {
        // Whatever parses, rebuilt with every value quoted and escaped,
        // parses to the same fields.
        if let Ok(x) = parse_x_matrix(&format!("X-Matrix origin={a},key={b},sig={c}{d}")) {
            let mut rebuilt = format!("X-Matrix origin={},key={},sig={}", quote(&x.origin), quote(&x.key), quote(&x.sig));
            if let Some(d) = &x.destination {
                rebuilt.push_str(&format!(",destination={}", quote(d)));
            }
            prop_assert_eq!(parse_x_matrix(&rebuilt), Ok(x), "{}", rebuilt);
        }
    }

    #[test]
    fn key_responses_never_panic(v in json(), server in "[a-z.]{1,20}") {
        prop_assert!(verify_server_key_response(&server, &v, 0).is_err());
    }

    #[test]
    fn key_responses_with_the_right_shape_but_junk_values_never_panic(keys in json(), sigs in json(), until in any::<u64>()) {
        let v = serde_json::json!({ "server_name": "a.test", "valid_until_ts": until, "verify_keys": keys, "signatures": sigs });
        let _ = verify_server_key_response("a.test", &v, 0);
    }

    #[test]
    fn quoted_escaped_values_round_trip(
        origin in r#"[ -~]{0,16}"#,
        key in r#"[ -~]{0,16}"#,
        sig in r#"[ -~]{0,16}"#,
        upper in any::<bool>(),
        space in any::<bool>(),
    ) {
        let sep = if space { ", " } else { "," };
        let o = if upper { "ORIGIN" } else { "origin" };
        let header = format!("X-Matrix {o}={}{sep}key={}{sep}sig={}", quote(&origin), quote(&key), quote(&sig));
        let x = parse_x_matrix(&header).expect("a well-formed header");
        prop_assert_eq!((x.origin, x.key, x.sig, x.destination), (origin, key, sig, None));
    }

    #[test]
    fn transaction_bodies_never_panic(v in json(), origin in "[a-z.]{1,12}") {
        let _ = parse_transaction(Some(&v), &origin);
    }

    #[test]
    fn canonical_json_never_panics_and_is_idempotent(v in wide_json()) {
        if let Some(text) = canonical(v) {
            let again: Value = serde_json::from_str(&text).expect("canonical JSON is JSON");
            prop_assert_eq!(canonical(again), Some(text));
        }
    }

    #[test]
    fn canonical_json_text_never_panics(s in r#"[\[\]{}":,0-9a-z.eE+\- \\]{0,80}"#) {
        if let Ok(v) = serde_json::from_str::<Value>(&s) {
            if let Some(text) = canonical(v) {
                let again: Value = serde_json::from_str(&text).expect("canonical JSON is JSON");
                prop_assert_eq!(canonical(again), Some(text));
            }
        }
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn signed_headers_parse_back_and_verify(
        origin in "[a-z]{1,10}\\.(test|example)(:[1-9][0-9]{0,3})?",
        destination in "[a-z]{1,10}\\.(test|example)",
        uri in "/_matrix/federation/v1/[a-z_/]{0,20}",
        seed in any::<u8>(),
        body in proptest::option::of(json()),
    ) {
        let key = server_key(&origin, seed);
        let Ok(header) = sign_request(&key, "PUT", &uri, &destination, body.as_ref()) else {
            // Only a body that is not canonical JSON (an integer beyond 2^53) cannot be signed.
            prop_assert!(canonical(body.unwrap()).is_none());
            return Ok(());
        };
        let x = parse_x_matrix(&header).unwrap();
        prop_assert_eq!(&x.origin, &origin);
        prop_assert_eq!(x.destination.as_deref(), Some(destination.as_str()));
        prop_assert_eq!(&x.key, &key.key_id());
        prop_assert!(verify_request(&x, "PUT", &uri, &destination, body.as_ref(), &key.public).is_ok());
        prop_assert!(verify_request(&x, "GET", &uri, &destination, body.as_ref(), &key.public).is_err());
    }

    #[test]
    fn transactions_are_refused_exactly_when_they_should_be(
        pdus in prop::collection::vec(json(), 0..MAX_PDUS + 3),
        edus in prop::collection::vec(Just(json!({ "edu_type": "m.typing" })), 0..MAX_EDUS + 3),
        origin in prop_oneof![Just(json!("a.test")), Just(json!("b.test")), Just(json!(7)), Just(Value::Null)],
        has_origin in any::<bool>(),
    ) {
        let mut body = json!({ "pdus": pdus, "edus": edus, "origin_server_ts": 1 });
        if has_origin {
            body["origin"] = origin.clone();
        }
        let got = parse_transaction(Some(&body), "a.test");
        if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
            prop_assert_eq!(got, Err(TransactionError::TooLarge));
        } else if has_origin && origin == json!("b.test") {
            prop_assert_eq!(got, Err(TransactionError::WrongOrigin));
        } else {
            let t = got.unwrap();
            prop_assert_eq!((t.pdus, t.edus), (pdus, edus));
        }
    }

    #[test]
    fn arbitrary_pdus_never_panic(v in json(), version in prop::sample::select(SUPPORTED_VERSIONS.to_vec())) {
        let keys = keys_of(&server_key("a.test", 1));
        exercise_pdu(version, v, &keys);
    }

    #[test]
    fn signed_pdus_verify_and_mutated_ones_never_panic(
        version in prop::sample::select(SUPPORTED_VERSIONS.to_vec()),
        body in ".{0,40}",
        depth in 0i64..1_000,
        field in prop::sample::select(vec![
            "content", "sender", "room_id", "type", "depth", "prev_events", "auth_events",
            "hashes", "signatures", "origin_server_ts", "state_key", "redacts", "unsigned",
        ]),
        junk in json(),
    ) {
        let key = server_key("a.test", 1);
        let keys = keys_of(&key);
        let pdu = signed_event(version, &body, depth, &key);
        let v: Value = serde_json::from_str(&pdu.json).unwrap();

        // As signed: the same event ID, and it verifies unchanged.
        let decoded = decode_pdu(version, v.clone()).unwrap();
        prop_assert_eq!(decoded.event_id.as_str(), pdu.event_id.as_str());
        prop_assert!(decoded.check_format().is_ok());
        prop_assert_eq!(decoded.signing_key_ids().unwrap(), vec![("a.test".to_owned(), key.key_id())]);
        let verified = decoded.verify(&keys).unwrap();
        prop_assert_eq!(&verified.event_id, &pdu.event_id);
        prop_assert_eq!(verified.content_value(), json!({ "msgtype": "m.text", "body": body }));

        // Changed content (not covered by the signature): the redacted event.
        let mut changed = v.clone();
        changed["content"]["body"] = json!(format!("{body}!"));
        let redacted = decode_pdu(version, changed).unwrap().verify(&keys).unwrap();
        prop_assert_eq!(redacted.content_value(), json!({}));

        // Any one field replaced with junk: never a panic.
        let mut mutated = v;
        mutated[field] = junk;
        exercise_pdu(version, mutated, &keys);
    }

    #[test]
    fn pdu_from_json_never_panics(v in json(), s in ".{0,60}") {
        let id = OwnedEventId::try_from("$abc").unwrap();
        let _ = Pdu::from_json(id.clone(), v.to_string());
        let _ = Pdu::from_json(id, s);
    }
}

// ---------------------------------------------------------------------------
// The seeds of fuzz/seeds/send_transaction/: a transaction with one signed
// message per room version (the fuzz target's first byte picks the version,
// so each seed is that byte and then the body). Checked here so they stay
// what the target expects; `cargo test -- --ignored write_send_transaction_seeds`
// regenerates them.

fn seed_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/send_transaction")
}

fn seed_transaction(version: &str) -> Vec<u8> {
    let key = server_key("a.test", 1);
    let pick = SUPPORTED_VERSIONS
        .iter()
        .position(|v| *v == version)
        .unwrap() as u8;
    let pdu: Value = serde_json::from_str(&signed_event(version, "hello", 3, &key).json).unwrap();
    let body = json!({
        "origin": "a.test",
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": [pdu],
        "edus": [{ "edu_type": "m.typing", "content": { "room_id": "!r:a.test", "user_id": "@u:a.test", "typing": true } }],
    });
    let mut out = vec![pick];
    out.extend(serde_json::to_vec(&body).unwrap());
    out
}

#[test]
#[ignore = "writes the fuzz seeds"]
fn write_send_transaction_seeds() {
    std::fs::create_dir_all(seed_dir()).unwrap();
    for version in SUPPORTED_VERSIONS {
        std::fs::write(
            seed_dir().join(format!("v{version}.bin")),
            seed_transaction(version),
        )
        .unwrap();
    }
}

#[test]
fn the_send_transaction_seeds_are_signed_transactions() {
    let keys = keys_of(&server_key("a.test", 1));
    for version in SUPPORTED_VERSIONS {
        let seed = std::fs::read(seed_dir().join(format!("v{version}.bin"))).unwrap();
        assert_eq!(seed, seed_transaction(version), "v{version}");
        let body: Value = serde_json::from_slice(&seed[1..]).unwrap();
        let txn = parse_transaction(Some(&body), "a.test").unwrap();
        let decoded = decode_pdu(version, txn.pdus[0].clone()).unwrap();
        decoded.check_format().unwrap();
        let pdu = decoded.verify(&keys).unwrap();
        assert_eq!(pdu.content_value()["body"], "hello");
    }
}

/// Regression (hardening, not a crash): a header of 360 KB of `a=b,` pairs,
/// within what the HTTP layer accepts, used to be split into 90 000 parts and
/// a map of them before it was found to be junk; anything over
/// `MAX_X_MATRIX_LEN` is now refused up front.
#[test]
fn an_oversized_x_matrix_header_is_refused_before_parsing() {
    let long = format!(
        "X-Matrix origin=a.test,key=ed25519:k1,sig=s,{}",
        "a=b,".repeat(90_000)
    );
    assert!(matches!(
        parse_x_matrix(&long),
        Err(conifer_federation::AuthError::MalformedHeader(m)) if m.contains("longer than")
    ));
    let padded = format!(
        "X-Matrix origin=a.test,key=ed25519:k1,sig=s{}",
        " ".repeat(MAX_X_MATRIX_LEN - 43)
    );
    assert_eq!(padded.len(), MAX_X_MATRIX_LEN);
    assert!(parse_x_matrix(&padded).is_ok());
}
