//! Unread notification counts are counters (issue 18: "Unread counts kept as
//! counters, not recounted"), and they follow the spec's receipts module:
//! "`m.read.private` is intended to clear notifications", and "Between
//! `m.read` and `m.read.private`, the receipt which is more "ahead" or
//! "recent" is used when determining the highest read-up-to mark" — "If a
//! client sends an `m.read` receipt which is "behind" the `m.read.private`
//! receipt, ... the sending user will not have their notification counts
//! rewound to that point in time." An upgraded database gets the same counts
//! from what it already holds.

use conifer_store::sqlite::SqliteStore;
use conifer_store::{NewEvent, ReceiptRecord, RoomStore, StreamStore};

const ROOM: &str = "!r:here";
const BOB: &str = "@bob:here";

fn event(n: i64, notify: &[(&str, bool)]) -> NewEvent {
    NewEvent {
        room_id: ROOM.into(),
        event_id: format!("$m{n}"),
        json: format!(r#"{{"type":"m.room.message","content":{{"body":"m{n}"}}}}"#),
        depth: n + 1,
        kind: if n == 0 {
            "m.room.create"
        } else {
            "m.room.message"
        }
        .into(),
        state_key: (n == 0).then(String::new),
        sender: "@ann:here".into(),
        origin_server_ts: n as u64,
        prev_events: if n == 0 {
            vec![]
        } else {
            vec![format!("$m{}", n - 1)]
        },
        membership: None,
        txn: None,
        notify: notify.iter().map(|(u, h)| (u.to_string(), *h)).collect(),
        outbox: None,
        fork: None,
    }
}

fn receipt(user: &str, kind: &str, event: i64) -> ReceiptRecord {
    ReceiptRecord {
        room_id: ROOM.into(),
        user_id: user.into(),
        receipt_type: kind.into(),
        thread_id: String::new(),
        event_id: format!("$m{event}"),
        ts: 1,
        stream_pos: 0,
    }
}

/// Events 1..=6 notify bob; 2 and 5 highlight him. Event 3 notifies carol.
fn populate(store: &SqliteStore) {
    store.create_room(ROOM, "10").unwrap();
    store.persist_event(event(0, &[])).unwrap();
    for n in 1..=6 {
        let mut notify = vec![(BOB, n == 2 || n == 5)];
        if n == 3 {
            notify.push(("@carol:here", false));
        }
        store.persist_event(event(n, &notify)).unwrap();
    }
}

#[test]
fn counts_follow_notifications_and_read_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    populate(&store);
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (6, 2));
    assert_eq!(
        store.notification_counts(ROOM, "@carol:here").unwrap(),
        (1, 0)
    );
    assert_eq!(
        store.notification_counts(ROOM, "@dan:here").unwrap(),
        (0, 0)
    );

    // Read up to event 2: 3..=6 are left, one of them (5) a highlight.
    store.put_receipt(receipt(BOB, "m.read", 2)).unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (4, 1));
    // Someone else's receipt changes nothing for bob; not a read receipt either.
    store
        .put_receipt(receipt("@carol:here", "m.read", 6))
        .unwrap();
    store.put_receipt(receipt(BOB, "m.fully_read", 6)).unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (4, 1));
    assert_eq!(
        store.notification_counts(ROOM, "@carol:here").unwrap(),
        (0, 0)
    );

    // A private read receipt further on counts as read.
    store
        .put_receipt(receipt(BOB, "m.read.private", 5))
        .unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (1, 0));
    // The public one moving (even backwards) keeps the more recent of the two.
    store.put_receipt(receipt(BOB, "m.read", 1)).unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (1, 0));

    // New notifications after the read position count; the counter is not
    // recounted from scratch.
    store.persist_event(event(7, &[(BOB, true)])).unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (2, 1));
    store.put_receipt(receipt(BOB, "m.read", 7)).unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (0, 0));
}

#[test]
fn an_upgraded_database_counts_what_it_already_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        populate(&store);
        store.put_receipt(receipt(BOB, "m.read", 3)).unwrap();
    }
    // Turn it back into a version 5 database (before the counters).
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch("DROP TABLE unread_counts; PRAGMA user_version = 5;")
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    // 4..=6 unread, 5 a highlight.
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (3, 1));
    // Carol never read anything: her one notification is unread.
    assert_eq!(
        store.notification_counts(ROOM, "@carol:here").unwrap(),
        (1, 0)
    );
    store
        .persist_event(event(7, &[(BOB, false), ("@carol:here", false)]))
        .unwrap();
    assert_eq!(store.notification_counts(ROOM, BOB).unwrap(), (4, 1));
    assert_eq!(
        store.notification_counts(ROOM, "@carol:here").unwrap(),
        (2, 0)
    );
}
