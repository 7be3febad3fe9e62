//! `persist_events`: a run of events in one commit, in order, a duplicate
//! answered with `Conflict` without stopping the others; and a store that
//! released its caches reads and writes on.

use conifer_store::sqlite::SqliteStore;
use conifer_store::{Housekeeping, NewEvent, RoomStore, StoreError};

fn message(room: &str, n: i64) -> NewEvent {
    NewEvent {
        room_id: room.into(),
        event_id: format!("$m{n}"),
        json: format!(r#"{{"type":"m.room.message","content":{{"body":"m{n}"}}}}"#),
        depth: n + 1,
        // The first is the room's create event: messages need a state.
        kind: if n == 0 {
            "m.room.create"
        } else {
            "m.room.message"
        }
        .into(),
        state_key: (n == 0).then(String::new),
        sender: "@a:here".into(),
        origin_server_ts: n as u64,
        prev_events: if n == 0 {
            vec![]
        } else {
            vec![format!("$m{}", n - 1)]
        },
        membership: None,
        txn: None,
        notify: Vec::new(),
        outbox: None,
        fork: None,
    }
}

const ROOM: &str = "!r:here";

/// A fresh store with `ROOM`, its create event stored.
fn store_with_room() -> (tempfile::TempDir, std::sync::Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    store.create_room(ROOM, "10").unwrap();
    store.persist_event(message(ROOM, 0)).unwrap();
    (dir, store)
}

#[test]
fn a_run_is_stored_in_order_and_a_duplicate_does_not_stop_it() {
    let (_dir, store) = store_with_room();

    let run = vec![message(ROOM, 1), message(ROOM, 0), message(ROOM, 2)];
    let results = store.persist_events(run).unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Conflict)));
    assert!(results[2].is_ok());

    let events = store
        .room_events(ROOM, 0, u64::MAX >> 1, false, 10)
        .unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["$m0", "$m1", "$m2"]);
    assert_eq!(store.forward_extremities(ROOM).unwrap(), ["$m2"]);
    // Stream positions follow the order of the run.
    assert!(events[1].stream_pos < events[2].stream_pos);
}

#[test]
fn the_store_works_on_after_releasing_its_memory() {
    let (_dir, store) = store_with_room();
    store.persist_event(message(ROOM, 1)).unwrap();
    store.release_memory();
    store.persist_event(message(ROOM, 2)).unwrap();
    let events = store
        .room_events(ROOM, 0, u64::MAX >> 1, false, 10)
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(store.forward_extremities(ROOM).unwrap(), ["$m2"]);
}
