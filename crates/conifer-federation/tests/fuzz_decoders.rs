//! Bounded fuzzing of the federation decoders: arbitrary input gets an
//! error, never a panic.

use conifer_federation::{parse_x_matrix, verify_server_key_response};
use proptest::prelude::*;
use serde_json::Value;

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn x_matrix_headers_never_panic(s in ".{0,200}") {
        let _ = parse_x_matrix(&s);
        let _ = parse_x_matrix(&format!("X-Matrix {s}"));
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
}
