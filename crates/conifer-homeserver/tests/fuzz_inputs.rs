//! Bounded fuzzing of the inputs the homeserver parses from clients and other
//! servers, without a running server: the `/sync` filter (as an inline query
//! parameter, a stored definition, or a `/messages` room-event filter) and the
//! `/send` transaction body as the federation handler reads it. A fixed number
//! of cases each (proptest's deterministic seed); `PROPTEST_CASES=N` overrides
//! every count for a longer soak. The cargo-fuzz targets for the same inputs
//! are fuzz/fuzz_targets/sync_filter.rs and send_transaction.rs.

use conifer_federation::{parse_transaction, TransactionError, MAX_EDUS, MAX_PDUS};
use conifer_homeserver::{SyncFilter, SyncFilterParam};
use proptest::prelude::*;
use serde_json::{json, Value};

/// `cases` unless `PROPTEST_CASES` is set.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON values, a few levels deep, with keys that sometimes hit
/// the ones a filter reads.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "m\\.room\\.[a-z*]{0,8}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        "[a-z_]{1,10}",
        prop::sample::select(vec![
            "room",
            "timeline",
            "state",
            "limit",
            "types",
            "not_types",
            "rooms",
            "not_rooms",
            "include_leave",
            "lazy_load_members",
            "presence",
            "account_data",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Well-formed filter definitions with every field optional.
fn filter_definition() -> impl Strategy<Value = Value> {
    let types = || prop::option::of(prop::collection::vec("m\\.room\\.[a-z]{0,6}\\*?|\\*", 0..4));
    let rooms = || prop::option::of(prop::collection::vec("![a-c]:a\\.test", 0..3));
    (
        prop::option::of(any::<u64>()),
        types(),
        types(),
        types(),
        rooms(),
        rooms(),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec("m\\.[a-z]{1,6}", 0..2)),
    )
        .prop_map(
            |(limit, t, not_t, state_t, rooms, not_rooms, leave, presence)| {
                let mut timeline = json!({});
                let mut room = json!({ "timeline": {}, "state": {} });
                if let Some(l) = limit {
                    timeline["limit"] = json!(l);
                }
                if let Some(t) = t {
                    timeline["types"] = json!(t);
                }
                if let Some(t) = not_t {
                    timeline["not_types"] = json!(t);
                }
                room["timeline"] = timeline;
                if let Some(t) = state_t {
                    room["state"]["types"] = json!(t);
                }
                if let Some(r) = rooms {
                    room["rooms"] = json!(r);
                }
                if let Some(r) = not_rooms {
                    room["not_rooms"] = json!(r);
                }
                if let Some(l) = leave {
                    room["include_leave"] = json!(l);
                }
                let mut f = json!({ "room": room });
                if let Some(p) = presence {
                    f["presence"] = json!({ "types": p });
                }
                f
            },
        )
}

/// What a filter decides for a set of probes, to compare two filters.
fn decisions(f: &SyncFilter) -> Vec<bool> {
    let kinds = [
        "m.room.message",
        "m.room.member",
        "m.room.name",
        "m.reaction",
        "",
    ];
    let rooms = ["!a:a.test", "!b:a.test", "!c:a.test"];
    let mut out: Vec<bool> = kinds
        .iter()
        .flat_map(|k| [f.wants_timeline(k), f.wants_state(k)])
        .collect();
    out.extend(rooms.iter().map(|r| f.wants_room(r)));
    out.extend([
        f.lazy_load_members,
        f.include_leave,
        f.presence_enabled,
        f.account_data_enabled,
    ]);
    out
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn any_filter_json_is_read_without_panicking(v in json()) {
        let f = SyncFilter::from_json(&v);
        prop_assert!((1..=1000).contains(&f.timeline_limit));
        let _ = decisions(&f);
        // As `/messages` wraps its room-event filter.
        let _ = decisions(&SyncFilter::from_json(&json!({ "room": { "timeline": v } })));
    }

    #[test]
    fn any_filter_query_parameter_is_an_error_or_a_filter(s in ".{0,80}") {
        let _ = SyncFilterParam::parse(&s);
        let _ = SyncFilterParam::parse(&format!("{{{s}"));
    }

    #[test]
    fn inline_filters_are_read_like_stored_ones(v in json()) {
        // An object given inline in the query string or stored under an ID
        // is the same filter.
        let inline = match SyncFilterParam::parse(&v.to_string()) {
            Ok(SyncFilterParam::Inline(f, _)) => Some(f),
            Ok(SyncFilterParam::Id(_)) => None,
            Err(_) => {
                prop_assert!(!v.is_object());
                None
            }
        };
        if let Some(f) = inline {
            prop_assert!(v.is_object());
            prop_assert_eq!(decisions(&f), decisions(&SyncFilter::from_json(&v)));
            prop_assert_eq!(f.timeline_limit, SyncFilter::from_json(&v).timeline_limit);
        }
    }

    #[test]
    fn transaction_bodies_never_panic(v in json()) {
        let _ = parse_transaction(Some(&v), "a.test");
        let _ = parse_transaction(Some(&json!({ "pdus": v.clone(), "edus": v })), "a.test");
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn a_filter_that_parses_is_honoured_consistently(v in filter_definition()) {
        let f = SyncFilter::from_json(&v);
        let room = &v["room"];
        // The limit: clamped to 1..=1000, 10 when absent.
        let limit = room["timeline"]["limit"].as_u64().map_or(10, |l| l.clamp(1, 1000));
        prop_assert_eq!(f.timeline_limit as u64, limit);
        // Rooms: listed ones (all when no list), minus excluded ones.
        for r in ["!a:a.test", "!b:a.test", "!c:a.test", "!z:a.test"] {
            let listed = room["rooms"].as_array().is_none_or(|l| l.contains(&json!(r)));
            let excluded = room["not_rooms"].as_array().is_some_and(|l| l.contains(&json!(r)));
            prop_assert_eq!(f.wants_room(r), listed && !excluded);
        }
        // Types: a trailing `*` matches any suffix; `not_types` wins.
        let matches = |list: &Value, kind: &str| {
            list.as_array().map(|l| {
                l.iter().filter_map(Value::as_str).any(|p| match p.strip_suffix('*') {
                    Some(prefix) => kind.starts_with(prefix),
                    None => p == kind,
                })
            })
        };
        for kind in ["m.room.message", "m.room.member", "m.room.", "m.reaction"] {
            let t = &room["timeline"];
            let want = matches(&t["types"], kind).unwrap_or(true)
                && !matches(&t["not_types"], kind).unwrap_or(false);
            prop_assert_eq!(f.wants_timeline(kind), want);
            prop_assert_eq!(f.wants_state(kind), matches(&room["state"]["types"], kind).unwrap_or(true));
        }
        prop_assert_eq!(f.include_leave, room["include_leave"].as_bool().unwrap_or(false));
        prop_assert_eq!(
            f.presence_enabled,
            v["presence"]["types"].as_array().is_none_or(|t| !t.is_empty())
        );
        // The same definition through the query parameter: the same filter.
        let Ok(SyncFilterParam::Inline(again, _)) = SyncFilterParam::parse(&v.to_string()) else {
            panic!("a filter object parses inline");
        };
        prop_assert_eq!(decisions(&again), decisions(&f));
    }

    #[test]
    fn send_bodies_are_refused_exactly_when_they_should_be(
        pdus in 0..MAX_PDUS + 3,
        edus in 0..MAX_EDUS + 3,
        origin in prop::option::of(prop_oneof![Just(json!("a.test")), Just(json!("b.test")), json()]),
    ) {
        let mut body = json!({
            "pdus": (0..pdus).map(|i| json!({ "depth": i })).collect::<Vec<_>>(),
            "edus": (0..edus).map(|i| json!({ "edu_type": "m.typing", "i": i })).collect::<Vec<_>>(),
        });
        if let Some(o) = &origin {
            body["origin"] = o.clone();
        }
        let got = parse_transaction(Some(&body), "a.test");
        if pdus > MAX_PDUS || edus > MAX_EDUS {
            prop_assert_eq!(got, Err(TransactionError::TooLarge));
        } else if origin.as_ref().and_then(Value::as_str).is_some_and(|o| o != "a.test") {
            prop_assert_eq!(got, Err(TransactionError::WrongOrigin));
        } else {
            let t = got.unwrap();
            prop_assert_eq!((t.pdus.len(), t.edus.len()), (pdus, edus));
            prop_assert!(t.pdus.iter().enumerate().all(|(i, p)| p["depth"] == json!(i)));
        }
    }
}

#[test]
fn a_missing_send_body_is_refused() {
    assert_eq!(
        parse_transaction(None, "a.test"),
        Err(TransactionError::MissingBody)
    );
}

#[test]
fn filter_parameters_that_are_neither_json_nor_an_id_are_refused() {
    for bad in ["", "abc", "-1", "1.5", "{", "{\"room\":", " {]"] {
        assert!(SyncFilterParam::parse(bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        SyncFilterParam::parse("42"),
        Ok(SyncFilterParam::Id(42))
    ));
    assert!(matches!(
        SyncFilterParam::parse(" {}"),
        Ok(SyncFilterParam::Inline(..))
    ));
}
