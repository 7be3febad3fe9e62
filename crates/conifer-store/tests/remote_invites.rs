//! Invites to rooms the server is not in: a version-2 database gains the
//! table on open and keeps its data; invites are stored, replaced, listed
//! per user, take stream positions, and go when the user joins the room.

use conifer_store::sqlite::SqliteStore;
use conifer_store::RoomStore;
use conifer_store::{AccountStore, InviteStore, NewEvent, RemoteInvite, StreamStore};
use serde_json::json;

fn invite(room: &str, user: &str, event_id: &str) -> RemoteInvite {
    RemoteInvite {
        room_id: room.into(),
        user_id: user.into(),
        event_id: event_id.into(),
        room_version: "10".into(),
        membership: "invite".into(),
        event: json!({ "type": "m.room.member", "state_key": user, "content": { "membership": "invite" } }),
        invite_state: vec![
            json!({ "type": "m.room.name", "state_key": "", "content": { "name": "Far away" } }),
        ],
        stream_pos: 0,
    }
}

#[test]
fn a_version_2_database_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("../src/sqlite/schema.sql"))
            .unwrap();
        c.execute_batch(include_str!("../src/sqlite/schema_v2.sql"))
            .unwrap();
        c.execute_batch("PRAGMA user_version = 2").unwrap();
        c.execute(
            "INSERT INTO users(user_id, created_ts) VALUES ('@old:here', 0)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.user("@old:here").unwrap().is_some());
    assert!(store.remote_invites("@old:here").unwrap().is_empty());
    store
        .put_remote_invite(invite("!r:far", "@old:here", "$i"))
        .unwrap();
    assert_eq!(store.remote_invites("@old:here").unwrap().len(), 1);
}

#[test]
fn invites_are_kept_per_user_until_joined() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    let before = store.stream_position();
    let p1 = store
        .put_remote_invite(invite("!a:far", "@me:here", "$1"))
        .unwrap();
    assert!(p1 > before);
    assert_eq!(store.stream_position(), p1, "the position is published");
    store
        .put_remote_invite(invite("!b:far", "@me:here", "$2"))
        .unwrap();
    store
        .put_remote_invite(invite("!a:far", "@you:here", "$3"))
        .unwrap();
    // A second invite to the same room replaces the first.
    let p4 = store
        .put_remote_invite(invite("!a:far", "@me:here", "$4"))
        .unwrap();
    let mine = store.remote_invites("@me:here").unwrap();
    assert_eq!(mine.len(), 2);
    let a = store.remote_invite("!a:far", "@me:here").unwrap().unwrap();
    assert_eq!((a.event_id.as_str(), a.stream_pos), ("$4", p4));
    assert_eq!(a.invite_state[0]["content"]["name"], "Far away");
    assert_eq!(a.event["content"]["membership"], "invite");

    // Joining the room (as a remote join stores it) answers the invite.
    let join = NewEvent {
        room_id: "!a:far".into(),
        event_id: "$join".into(),
        json: json!({ "type": "m.room.member", "state_key": "@me:here", "sender": "@me:here", "content": { "membership": "join" } }).to_string(),
        depth: 1,
        kind: "m.room.member".into(),
        state_key: Some("@me:here".into()),
        sender: "@me:here".into(),
        origin_server_ts: 0,
        prev_events: vec![],
        membership: Some("join".into()),
        txn: None,
        notify: vec![],
        outbox: None,
        fork: None,
    };
    store
        .create_joined_room("!a:far", "10", vec![], vec![], join)
        .unwrap();
    assert!(store.remote_invite("!a:far", "@me:here").unwrap().is_none());
    assert!(store
        .remote_invite("!a:far", "@you:here")
        .unwrap()
        .is_some());

    // A rejection keeps the leave, at a new position; only once.
    let leave = json!({ "type": "m.room.member", "content": { "membership": "leave" } });
    let p5 = store
        .reject_remote_invite("!b:far", "@me:here", "$leave", &leave)
        .unwrap()
        .expect("there was an invite");
    assert!(p5 > p4);
    let b = store.remote_invite("!b:far", "@me:here").unwrap().unwrap();
    assert_eq!(
        (b.membership.as_str(), b.event_id.as_str(), b.stream_pos),
        ("leave", "$leave", p5)
    );
    assert_eq!(b.event, leave);
    assert_eq!(
        store
            .reject_remote_invite("!b:far", "@me:here", "$again", &leave)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .reject_remote_invite("!c:far", "@me:here", "$x", &leave)
            .unwrap(),
        None
    );

    store.delete_remote_invite("!b:far", "@me:here").unwrap();
    assert!(store.remote_invites("@me:here").unwrap().is_empty());
}
