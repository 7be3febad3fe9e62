//! Bounded fuzzing of the PDU decoder: arbitrary JSON gets an error, never a
//! panic, and whatever decodes can go through the auth checks safely.

use conifer_rooms::ruma::OwnedEventId;
use conifer_rooms::{check_auth, Pdu};
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[@!$#a-z0-9:._]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let id = OwnedEventId::try_from("$fuzz").unwrap();
        let _ = Pdu::from_json(id, v.to_string());
    }

    #[test]
    fn plausible_pdus_with_junk_fields_never_panic(kind in "(m\\.room\\.(create|member|power_levels|join_rules|message|redaction))|[a-z.]{1,12}",
                                                   content in json_value(), state_key in proptest::option::of("[@a-z:.]{0,12}"),
                                                   depth in any::<i64>(), version in "(6|7|8|9|10|11|12|1|99)") {
        let mut v = json!({
            "room_id": "!r:x.test", "sender": "@a:x.test", "origin_server_ts": 1, "type": kind,
            "content": content, "prev_events": [], "auth_events": [], "depth": depth,
        });
        if let Some(sk) = state_key {
            v["state_key"] = json!(sk);
        }
        let id = OwnedEventId::try_from("$fuzz").unwrap();
        if let Ok(pdu) = Pdu::from_json(id, v.to_string()) {
            let _ = check_auth(&version, &pdu, |_| None, |_, _| None);
        }
    }
}
