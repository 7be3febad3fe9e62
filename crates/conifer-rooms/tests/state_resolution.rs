//! State resolution v2 through Ruma on forks built with our own event
//! builder: conflicting power levels and a ban racing a join.

use conifer_rooms::ruma::{OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId};
use conifer_rooms::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// A room graph held in memory: events by ID, and the state after each.
struct Graph {
    version: String,
    room: OwnedRoomId,
    key: ServerKey,
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    state_after: HashMap<OwnedEventId, StateIdMap>,
}

impl Graph {
    fn new(version: &str) -> Self {
        let name = OwnedServerName::try_from("example.org").unwrap();
        Self {
            version: version.into(),
            room: OwnedRoomId::try_from("!room:example.org").unwrap(),
            key: ServerKey::from_seed(&name, "k", &[1; 32]),
            events: HashMap::new(),
            state_after: HashMap::new(),
        }
    }

    /// Builds an event on top of `prev` (state after `prev`), checks it and records it.
    fn add(
        &mut self,
        prev: Option<&OwnedEventId>,
        sender: &str,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        ts: u64,
    ) -> OwnedEventId {
        let state = prev
            .map(|p| self.state_after[p].clone())
            .unwrap_or_default();
        let prevs: Vec<(OwnedEventId, i64)> = prev
            .map(|p| vec![(p.clone(), self.events[p].depth)])
            .unwrap_or_default();
        let t = EventTemplate {
            kind: kind.into(),
            state_key: state_key.map(str::to_owned),
            content,
            redacts: None,
        };
        let lookup = |ty: &str, k: &str| state.get(&(ty.to_owned(), k.to_owned())).cloned();
        let sender = OwnedUserId::try_from(sender).unwrap();
        let pdu = build_event(
            &self.version,
            &self.room,
            &sender,
            &t,
            &prevs,
            &lookup,
            ts,
            &self.key,
        )
        .unwrap();
        let events = &self.events;
        check_auth(
            &self.version,
            &pdu,
            |id| events.get(id).cloned(),
            |ty, k| {
                state
                    .get(&(ty.to_string(), k.to_owned()))
                    .and_then(|id| events.get(id).cloned())
            },
        )
        .unwrap_or_else(|e| panic!("{kind} by {sender} rejected: {e}"));
        let id = pdu.event_id.clone();
        let mut after = state.clone();
        if let Some(k) = state_key {
            after.insert((kind.to_owned(), k.to_owned()), id.clone());
        }
        self.events.insert(id.clone(), Arc::new(pdu));
        self.state_after.insert(id.clone(), after);
        id
    }

    fn resolve(&self, tips: &[&OwnedEventId]) -> StateIdMap {
        let forks: Vec<StateIdMap> = tips.iter().map(|t| self.state_after[*t].clone()).collect();
        resolve_state(&self.version, &forks, |id| self.events.get(id).cloned()).unwrap()
    }

    fn content(&self, state: &StateIdMap, kind: &str, key: &str) -> Value {
        self.events[&state[&(kind.to_owned(), key.to_owned())]].content_value()
    }
}

const A: &str = "@a:example.org";
const B: &str = "@b:example.org";
const C: &str = "@c:example.org";

/// A room where A and B are both admins and C may join freely.
fn base(version: &str) -> (Graph, OwnedEventId) {
    let mut g = Graph::new(version);
    let create = if version == "10" {
        json!({ "creator": A, "room_version": version })
    } else {
        json!({ "room_version": version })
    };
    let e = g.add(None, A, "m.room.create", Some(""), create, 1);
    let e = g.add(
        Some(&e),
        A,
        "m.room.member",
        Some(A),
        json!({ "membership": "join" }),
        2,
    );
    let e = g.add(
        Some(&e),
        A,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { A: 100 } }),
        3,
    );
    let e = g.add(
        Some(&e),
        A,
        "m.room.join_rules",
        Some(""),
        json!({ "join_rule": "public" }),
        4,
    );
    let e = g.add(
        Some(&e),
        B,
        "m.room.member",
        Some(B),
        json!({ "membership": "join" }),
        5,
    );
    (g, e)
}

#[test]
fn higher_power_wins_a_power_level_conflict_whatever_the_time() {
    for version in ["10", "11"] {
        for a_first in [true, false] {
            let (mut g, base) = base(version);
            let pl =
                |users: Value| json!({ "users": users, "events": { "m.room.power_levels": 50 } });
            let base = g.add(
                Some(&base),
                A,
                "m.room.power_levels",
                Some(""),
                pl(json!({ A: 100, B: 50 })),
                7,
            );
            let (ta, tb) = if a_first { (10, 20) } else { (20, 10) };
            // Concurrently: A demotes B, and B (still at 50 on its fork) promotes C.
            let demote = g.add(
                Some(&base),
                A,
                "m.room.power_levels",
                Some(""),
                pl(json!({ A: 100, B: 0 })),
                ta,
            );
            let promote = g.add(
                Some(&base),
                B,
                "m.room.power_levels",
                Some(""),
                pl(json!({ A: 100, B: 50, C: 50 })),
                tb,
            );
            let resolved = g.resolve(&[&demote, &promote]);
            assert_eq!(
                resolved[&("m.room.power_levels".into(), String::new())],
                demote,
                "version {version}, a_first {a_first}"
            );
            // Resolution does not depend on the order of the forks.
            assert_eq!(resolved, g.resolve(&[&promote, &demote]));
        }
    }
}

#[test]
fn equal_power_conflicts_resolve_by_time() {
    for later_b in [true, false] {
        let (mut g, base) = base("11");
        let base = g.add(
            Some(&base),
            A,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { A: 100, B: 100 } }),
            6,
        );
        // B's membership must be in both forks' auth chains, or B's event would
        // sort after it (auth order comes before power and time).
        let base = g.add(
            Some(&base),
            B,
            "m.room.topic",
            Some(""),
            json!({ "topic": "t" }),
            7,
        );
        let (ta, tb) = if later_b { (10, 20) } else { (20, 10) };
        let by_a = g.add(
            Some(&base),
            A,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { A: 100, B: 100, C: 10 } }),
            ta,
        );
        let by_b = g.add(
            Some(&base),
            B,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { A: 100, B: 100, C: 20 } }),
            tb,
        );
        let resolved = g.resolve(&[&by_a, &by_b]);
        // Both pass auth in either order, so the one sorted last (the later) holds.
        let expected = if later_b { 20 } else { 10 };
        assert_eq!(
            g.content(&resolved, "m.room.power_levels", "")["users"][C],
            expected
        );
    }
}

#[test]
fn a_ban_beats_a_concurrent_join() {
    for version in ["10", "11"] {
        for ban_first in [true, false] {
            let (mut g, base) = base(version);
            let (t_ban, t_join) = if ban_first { (10, 20) } else { (20, 10) };
            let ban = g.add(
                Some(&base),
                A,
                "m.room.member",
                Some(C),
                json!({ "membership": "ban" }),
                t_ban,
            );
            let join = g.add(
                Some(&base),
                C,
                "m.room.member",
                Some(C),
                json!({ "membership": "join" }),
                t_join,
            );
            let after_join = g.add(
                Some(&join),
                C,
                "m.room.message",
                None,
                json!({ "body": "hi" }),
                t_join + 1,
            );
            let resolved = g.resolve(&[&ban, &after_join]);
            assert_eq!(
                g.content(&resolved, "m.room.member", C)["membership"],
                "ban",
                "version {version}, ban_first {ban_first}"
            );
        }
    }
}

#[test]
fn unconflicted_state_is_kept_as_is() {
    let (mut g, base) = base("11");
    let base = g.add(
        Some(&base),
        A,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { A: 100, B: 100 } }),
        6,
    );
    let name = g.add(
        Some(&base),
        A,
        "m.room.name",
        Some(""),
        json!({ "name": "one" }),
        10,
    );
    let topic = g.add(
        Some(&base),
        B,
        "m.room.topic",
        Some(""),
        json!({ "topic": "two" }),
        11,
    );
    let resolved = g.resolve(&[&name, &topic]);
    assert_eq!(g.content(&resolved, "m.room.name", "")["name"], "one");
    assert_eq!(g.content(&resolved, "m.room.topic", "")["topic"], "two");
}

#[test]
fn auth_rules_reject_what_they_should() {
    let (mut g, base) = base("11");
    let base = g.add(
        Some(&base),
        A,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { A: 100, B: 100 } }),
        6,
    );
    let state = g.state_after[&base].clone();
    let t = EventTemplate {
        kind: "m.room.name".into(),
        state_key: Some(String::new()),
        content: json!({ "name": "x" }),
        redacts: None,
    };
    let lookup = |ty: &str, k: &str| state.get(&(ty.to_owned(), k.to_owned())).cloned();
    // C never joined: not allowed to send.
    let pdu = build_event(
        "11",
        &g.room,
        &OwnedUserId::try_from(C).unwrap(),
        &t,
        &[(base.clone(), 6)],
        &lookup,
        99,
        &g.key,
    )
    .unwrap();
    let verdict = check_auth(
        "11",
        &pdu,
        |id| g.events.get(id).cloned(),
        |ty, k| {
            state
                .get(&(ty.to_string(), k.to_owned()))
                .and_then(|id| g.events.get(id).cloned())
        },
    );
    assert!(
        matches!(verdict, Err(BuildError::Forbidden(_))),
        "{verdict:?}"
    );
}
