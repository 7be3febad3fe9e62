//! Rooms, aliases, events and state groups.

use super::{
    cached_exec, cached_row, optional, placeholders, Positions, SqliteStore, SNAPSHOT_EVERY,
};
use crate::{
    AliasRecord, Audience, ForkState, MembershipRecord, NewEvent, OutlierEvent, PersistedEvent,
    RelationFilter, Result, RoomRecord, RoomStore, StateIds, StateList, StoreError, StoredEvent,
};
use rusqlite::{params, params_from_iter, Connection, Row};

const EVENT_COLS: &str = "e.event_id, r.room_id, e.json, e.stream_pos, e.depth, e.state_group";

fn event_row(r: &Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        event_id: r.get(0)?,
        room_id: r.get(1)?,
        json: r.get(2)?,
        stream_pos: r.get::<_, i64>(3)? as u64,
        depth: r.get(4)?,
        state_group: r.get(5)?,
    })
}

fn room_nid(c: &Connection, room_id: &str) -> Result<i64> {
    optional(cached_row(
        c,
        "SELECT nid FROM rooms WHERE room_id = ?1",
        [room_id],
        |r| r.get(0),
    ))?
    .ok_or(StoreError::NotFound)
}

fn state_key_nid(c: &Connection, kind: &str, state_key: &str) -> Result<i64> {
    cached_exec(
        c,
        "INSERT OR IGNORE INTO state_keys(type, state_key) VALUES (?1, ?2)",
        [kind, state_key],
    )?;
    Ok(cached_row(
        c,
        "SELECT nid FROM state_keys WHERE type = ?1 AND state_key = ?2",
        [kind, state_key],
        |r| r.get(0),
    )?)
}

/// Loads a state group as `key_nid → event_nid` by walking its delta chain.
fn load_group_nids(c: &Connection, group: i64) -> Result<std::collections::HashMap<i64, i64>> {
    let mut st = c.prepare_cached(
        "WITH RECURSIVE chain(id, parent, lvl) AS (
            SELECT id, parent, 0 FROM state_groups WHERE id = ?1
            UNION ALL SELECT g.id, g.parent, chain.lvl + 1 FROM state_groups g JOIN chain ON g.id = chain.parent)
         SELECT e.key_nid, e.event_nid FROM chain JOIN state_group_entries e ON e.group_id = chain.id
         ORDER BY chain.lvl DESC",
    )?;
    let mut map = std::collections::HashMap::new();
    let rows = st.query_map([group], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (k, e) = row?;
        map.insert(k, e);
    }
    Ok(map)
}

fn load_group(c: &Connection, group: i64) -> Result<StateIds> {
    let mut st = c.prepare_cached(
        "WITH RECURSIVE chain(id, parent, lvl) AS (
            SELECT id, parent, 0 FROM state_groups WHERE id = ?1
            UNION ALL SELECT g.id, g.parent, chain.lvl + 1 FROM state_groups g JOIN chain ON g.id = chain.parent)
         SELECT k.type, k.state_key, ev.event_id FROM chain
           JOIN state_group_entries e ON e.group_id = chain.id
           JOIN state_keys k ON k.nid = e.key_nid
           JOIN events ev ON ev.nid = e.event_nid
         ORDER BY chain.lvl DESC",
    )?;
    let mut map = StateIds::new();
    let rows = st.query_map([group], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (t, k, e) = row?;
        map.insert((t, k), e);
    }
    Ok(map)
}

/// Creates the state group after a state event: a delta on `parent`, or a
/// full snapshot once the chain is long.
fn new_state_group(
    c: &Connection,
    room: i64,
    parent: Option<i64>,
    key_nid: i64,
    event_nid: i64,
) -> Result<i64> {
    let chain_len: i64 = match parent {
        Some(p) => cached_row(
            c,
            "SELECT chain_len FROM state_groups WHERE id = ?1",
            [p],
            |r| r.get(0),
        )?,
        None => -1,
    };
    if let Some(parent) = parent.filter(|_| chain_len + 1 >= SNAPSHOT_EVERY) {
        let mut full = load_group_nids(c, parent)?;
        full.insert(key_nid, event_nid);
        cached_exec(
            c,
            "INSERT INTO state_groups(room_nid, parent, chain_len) VALUES (?1, NULL, 0)",
            [room],
        )?;
        let id = c.last_insert_rowid();
        let mut ins = c.prepare_cached(
            "INSERT INTO state_group_entries(group_id, key_nid, event_nid) VALUES (?1, ?2, ?3)",
        )?;
        for (k, e) in full {
            ins.execute([id, k, e])?;
        }
        return Ok(id);
    }
    cached_exec(
        c,
        "INSERT INTO state_groups(room_nid, parent, chain_len) VALUES (?1, ?2, ?3)",
        params![room, parent, chain_len + 1],
    )?;
    let id = c.last_insert_rowid();
    cached_exec(
        c,
        "INSERT INTO state_group_entries(group_id, key_nid, event_nid) VALUES (?1, ?2, ?3)",
        [id, key_nid, event_nid],
    )?;
    Ok(id)
}

/// A state group equal to `full`, stored as a delta on `base` (state never
/// loses keys, so changed and added entries are the whole delta).
fn group_from_full(c: &Connection, room: i64, base: i64, full: &StateList) -> Result<i64> {
    let base_map = load_group_nids(c, base)?;
    let mut delta = Vec::new();
    for (kind, key, event_id) in full {
        let key_nid = state_key_nid(c, kind, key)?;
        let event_nid: i64 = cached_row(
            c,
            "SELECT nid FROM events WHERE event_id = ?1",
            [event_id],
            |r| r.get(0),
        )?;
        if base_map.get(&key_nid) != Some(&event_nid) {
            delta.push((key_nid, event_nid));
        }
    }
    let mut group = base;
    for (key_nid, event_nid) in delta {
        group = new_state_group(c, room, Some(group), key_nid, event_nid)?;
    }
    Ok(group)
}

/// The state groups of an event off the current state: its state before
/// (with the event on top if it is a state event) becomes its group, and
/// the resolved state the room's; memberships follow the room's new state.
/// A membership that changes this way concerns its user (as any membership
/// event does): it takes the event's position too.
fn persist_fork_state(
    c: &Connection,
    room: i64,
    current: Option<i64>,
    event_nid: i64,
    ev: &NewEvent,
    fork: &ForkState,
    (pos, stream_pos): (&Positions, u64),
) -> Result<i64> {
    let current =
        current.ok_or_else(|| StoreError::Corrupt(format!("room {} has no state", ev.room_id)))?;
    let before = group_from_full(c, room, current, &fork.before)?;
    let after = match &ev.state_key {
        Some(sk) => {
            let key = state_key_nid(c, &ev.kind, sk)?;
            new_state_group(c, room, Some(before), key, event_nid)?
        }
        None => before,
    };
    let old_room = load_group_nids(c, current)?;
    let room_group = group_from_full(c, room, current, &fork.room)?;
    cached_exec(
        c,
        "UPDATE rooms SET state_group = ?2 WHERE nid = ?1",
        [room, room_group],
    )?;
    for (kind, key, event_id) in fork.room.iter().filter(|(k, _, _)| k == "m.room.member") {
        let key_nid = state_key_nid(c, kind, key)?;
        let (member_nid, json): (i64, String) = cached_row(
            c,
            "SELECT nid, json FROM events WHERE event_id = ?1",
            [event_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if old_room.get(&key_nid) == Some(&member_nid) || member_nid == event_nid {
            continue;
        }
        let membership = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["content"]["membership"].as_str().map(str::to_owned))
            .unwrap_or_default();
        cached_exec(c,
            "INSERT INTO memberships(room_nid, user_id, membership, event_nid, stream_pos) VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT(room_nid, user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid",
            params![room, key, membership, member_nid],
        )?;
        pos.also(stream_pos, Audience::User(key.clone()));
    }
    Ok(after)
}

fn persist(c: &Connection, pos: &Positions, ev: NewEvent) -> Result<PersistedEvent> {
    let room = room_nid(c, &ev.room_id)?;
    let current: Option<i64> = cached_row(
        c,
        "SELECT state_group FROM rooms WHERE nid = ?1",
        [room],
        |r| r.get(0),
    )?;
    let stream_pos = pos.next(Audience::Room(ev.room_id.clone()));
    // A membership event also concerns its target, who may not be in the
    // room (an invite, a knock answered, a ban).
    if let (Some(_), Some(target)) = (&ev.membership, &ev.state_key) {
        pos.also(stream_pos, Audience::User(target.clone()));
    }
    // A message on the current state has its state group already: one write.
    let inserted_group = match (&ev.fork, &ev.state_key) {
        (None, None) => current.unwrap_or(0),
        _ => 0,
    };
    cached_exec(c,
        "INSERT INTO events(event_id, room_nid, stream_pos, depth, type, state_key, sender, json, state_group)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![ev.event_id, room, stream_pos as i64, ev.depth, ev.kind, ev.state_key, ev.sender, ev.json, inserted_group],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => StoreError::Conflict,
        e => e.into(),
    })?;
    let event_nid = c.last_insert_rowid();
    let state_group = if let Some(fork) = &ev.fork {
        persist_fork_state(c, room, current, event_nid, &ev, fork, (pos, stream_pos))?
    } else {
        match &ev.state_key {
            Some(sk) => {
                let key = state_key_nid(c, &ev.kind, sk)?;
                let group = new_state_group(c, room, current, key, event_nid)?;
                cached_exec(
                    c,
                    "UPDATE rooms SET state_group = ?2 WHERE nid = ?1",
                    [room, group],
                )?;
                group
            }
            None => current
                .ok_or_else(|| StoreError::Corrupt(format!("room {} has no state", ev.room_id)))?,
        }
    };
    if state_group != inserted_group {
        cached_exec(
            c,
            "UPDATE events SET state_group = ?2 WHERE nid = ?1",
            [event_nid, state_group],
        )?;
    }

    let mut del = c.prepare_cached(
        "DELETE FROM forward_extremities WHERE room_nid = ?1 AND event_nid = (SELECT nid FROM events WHERE event_id = ?2)",
    )?;
    for prev in &ev.prev_events {
        del.execute(params![room, prev])?;
    }
    cached_exec(
        c,
        "INSERT OR IGNORE INTO forward_extremities(room_nid, event_nid) VALUES (?1, ?2)",
        [room, event_nid],
    )?;

    if let (Some(membership), Some(target)) = (&ev.membership, &ev.state_key) {
        cached_exec(c,
            "INSERT INTO memberships(room_nid, user_id, membership, event_nid, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(room_nid, user_id) DO UPDATE SET membership = excluded.membership,
               event_nid = excluded.event_nid, stream_pos = excluded.stream_pos, forgotten = 0",
            params![room, target, membership, event_nid, stream_pos as i64],
        )?;
    }
    if !ev.notify.is_empty() {
        let mut ins = c.prepare_cached(
            "INSERT OR IGNORE INTO notifications(user_id, room_nid, stream_pos, highlight) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut count = c.prepare_cached(
            "INSERT INTO unread_counts(user_id, room_nid, read_pos, notifs, highlights) VALUES (?1, ?2, 0, 1, ?4)
             ON CONFLICT(user_id, room_nid) DO UPDATE SET
               notifs = notifs + (?3 > read_pos),
               highlights = highlights + (CASE WHEN ?3 > read_pos THEN ?4 ELSE 0 END)",
        )?;
        for (user, highlight) in &ev.notify {
            if ins.execute(params![user, room, stream_pos as i64, highlight])? == 1 {
                count.execute(params![user, room, stream_pos as i64, highlight])?;
            }
        }
    }
    if let Some((destinations, pdu)) = &ev.outbox {
        super::outbox::push(c, destinations, true, pdu)?;
    }
    if let Some((user, device, txn)) = &ev.txn {
        cached_exec(c,
            "INSERT OR IGNORE INTO client_txns(user_id, device_id, txn_id, event_id) VALUES (?1, ?2, ?3, ?4)",
            params![user, device, txn, ev.event_id],
        )?;
    }
    Ok(PersistedEvent {
        stream_pos,
        state_group,
    })
}

impl RoomStore for SqliteStore {
    fn create_room(&self, room_id: &str, version: &str) -> Result<RoomRecord> {
        let (room_id, version) = (room_id.to_owned(), version.to_owned());
        self.write(move |c, _| {
            let n = cached_exec(
                c,
                "INSERT OR IGNORE INTO rooms(room_id, version) VALUES (?1, ?2)",
                [&room_id, &version],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(RoomRecord {
                room_id,
                version,
                published: false,
            })
        })
    }

    fn create_room_with_events(
        &self,
        room_id: &str,
        version: &str,
        events: Vec<NewEvent>,
    ) -> Result<RoomRecord> {
        let (room_id, version) = (room_id.to_owned(), version.to_owned());
        self.write(move |c, pos| {
            if cached_exec(
                c,
                "INSERT OR IGNORE INTO rooms(room_id, version) VALUES (?1, ?2)",
                [&room_id, &version],
            )? == 0
            {
                return Err(StoreError::Conflict);
            }
            for ev in events {
                persist(c, pos, ev)?;
            }
            Ok(RoomRecord {
                room_id,
                version,
                published: false,
            })
        })
    }

    fn create_joined_room(
        &self,
        room_id: &str,
        version: &str,
        outliers: Vec<OutlierEvent>,
        state: Vec<(String, String, String)>,
        join: NewEvent,
    ) -> Result<PersistedEvent> {
        let (room_id, version) = (room_id.to_owned(), version.to_owned());
        self.write(move |c, pos| {
            if cached_exec(c, "INSERT OR IGNORE INTO rooms(room_id, version) VALUES (?1, ?2)", [&room_id, &version])? == 0 {
                return Err(StoreError::Conflict);
            }
            let room = room_nid(c, &room_id)?;
            // Outliers sit outside the timeline: stream position 0 is never
            // inside a sync window or a page of history.
            let mut ins = c.prepare_cached(
                "INSERT OR IGNORE INTO events(event_id, room_nid, stream_pos, depth, type, state_key, sender, json, state_group)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, 0)",
            )?;
            for o in &outliers {
                ins.execute(params![o.event_id, room, o.depth, o.kind, o.state_key, o.sender, o.json])?;
            }
            cached_exec(c, "INSERT INTO state_groups(room_nid, parent, chain_len) VALUES (?1, NULL, 0)", [room])?;
            let group = c.last_insert_rowid();
            for (kind, key, event_id) in &state {
                let key_nid = state_key_nid(c, kind, key)?;
                let event_nid: i64 = cached_row(c, "SELECT nid FROM events WHERE event_id = ?1", [event_id], |r| r.get(0))?;
                cached_exec(c, "INSERT INTO state_group_entries(group_id, key_nid, event_nid) VALUES (?1, ?2, ?3)", [group, key_nid, event_nid])?;
                if kind == "m.room.member" {
                    let json: String = cached_row(c, "SELECT json FROM events WHERE nid = ?1", [event_nid], |r| r.get(0))?;
                    let membership = serde_json::from_str::<serde_json::Value>(&json)
                        .ok()
                        .and_then(|v| v["content"]["membership"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    cached_exec(c,
                        "INSERT OR REPLACE INTO memberships(room_nid, user_id, membership, event_nid, stream_pos) VALUES (?1, ?2, ?3, ?4, 0)",
                        params![room, key, membership, event_nid],
                    )?;
                }
            }
            cached_exec(c, "UPDATE rooms SET state_group = ?2 WHERE nid = ?1", [room, group])?;
            // An invite that brought the user here is answered.
            super::invites::delete(c, &room_id, &join.sender)?;
            let persisted = persist(c, pos, join)?;
            // Memberships adopted with the room's state concern their users.
            for (kind, key, _) in &state {
                if kind == "m.room.member" {
                    pos.also(persisted.stream_pos, Audience::User(key.clone()));
                }
            }
            Ok(persisted)
        })
    }

    fn state_before_event(&self, event_id: &str) -> Result<StateIds> {
        self.read(|c| {
            let (group, is_state): (i64, bool) = cached_row(
                c,
                "SELECT state_group, state_key IS NOT NULL FROM events WHERE event_id = ?1",
                [event_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let parent: Option<i64> = if is_state {
                cached_row(
                    c,
                    "SELECT parent FROM state_groups WHERE id = ?1",
                    [group],
                    |r| r.get(0),
                )?
            } else {
                None
            };
            load_group(c, parent.unwrap_or(group))
        })
    }

    fn room(&self, room_id: &str) -> Result<Option<RoomRecord>> {
        self.read(|c| {
            optional(cached_row(
                c,
                "SELECT room_id, version, published FROM rooms WHERE room_id = ?1",
                [room_id],
                |r| {
                    Ok(RoomRecord {
                        room_id: r.get(0)?,
                        version: r.get(1)?,
                        published: r.get(2)?,
                    })
                },
            ))
        })
    }

    fn set_room_published(&self, room_id: &str, published: bool) -> Result<()> {
        let room_id = room_id.to_owned();
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE rooms SET published = ?2 WHERE room_id = ?1",
                params![room_id, published],
            )?;
            Ok(())
        })
    }

    fn published_rooms(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT room_id FROM rooms WHERE published = 1 ORDER BY nid")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn put_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<()> {
        let (a, r, u) = (alias.to_owned(), room_id.to_owned(), creator.to_owned());
        self.write(move |c, _| {
            if cached_exec(
                c,
                "INSERT OR IGNORE INTO room_aliases(alias, room_id, creator) VALUES (?1, ?2, ?3)",
                [&a, &r, &u],
            )? == 0
            {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
    }

    fn alias(&self, alias: &str) -> Result<Option<AliasRecord>> {
        self.read(|c| {
            optional(cached_row(
                c,
                "SELECT room_id, creator FROM room_aliases WHERE alias = ?1",
                [alias],
                |r| {
                    Ok(AliasRecord {
                        room_id: r.get(0)?,
                        creator: r.get(1)?,
                    })
                },
            ))
        })
    }

    fn delete_alias(&self, alias: &str) -> Result<bool> {
        let a = alias.to_owned();
        self.write(move |c, _| {
            Ok(cached_exec(c, "DELETE FROM room_aliases WHERE alias = ?1", [&a])? > 0)
        })
    }

    fn aliases_for_room(&self, room_id: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias")?;
            let rows = st.query_map([room_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn persist_event(&self, event: NewEvent) -> Result<PersistedEvent> {
        self.write(move |c, pos| persist(c, pos, event))
    }

    fn persist_events(&self, events: Vec<NewEvent>) -> Result<Vec<Result<PersistedEvent>>> {
        // One write job: one commit for the whole batch. Each event has its
        // own savepoint so that a duplicate leaves no half-written rows;
        // any other failure fails the job, which rolls back every event.
        self.write(move |c, pos| {
            let mut out = Vec::with_capacity(events.len());
            for event in events {
                c.execute_batch("SAVEPOINT event")?;
                match persist(c, pos, event) {
                    Err(StoreError::Conflict) => {
                        c.execute_batch("ROLLBACK TO event; RELEASE event")?;
                        out.push(Err(StoreError::Conflict));
                    }
                    Err(e) => return Err(e),
                    Ok(p) => {
                        c.execute_batch("RELEASE event")?;
                        out.push(Ok(p));
                    }
                }
            }
            Ok(out)
        })
    }

    fn room_state_group(&self, room_id: &str) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(optional(cached_row(
                c,
                "SELECT state_group FROM rooms WHERE room_id = ?1",
                [room_id],
                |r| r.get::<_, Option<i64>>(0),
            ))?
            .flatten())
        })
    }

    fn store_outliers(&self, room_id: &str, events: Vec<OutlierEvent>) -> Result<()> {
        let room_id = room_id.to_owned();
        self.write(move |c, _| {
            let room = room_nid(c, &room_id)?;
            let mut ins = c.prepare_cached(
                "INSERT OR IGNORE INTO events(event_id, room_nid, stream_pos, depth, type, state_key, sender, json, state_group)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, 0)",
            )?;
            for o in &events {
                ins.execute(params![o.event_id, room, o.depth, o.kind, o.state_key, o.sender, o.json])?;
            }
            Ok(())
        })
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        self.read(|c| {
            optional(cached_row(c,
                &format!("SELECT {EVENT_COLS} FROM events e JOIN rooms r ON r.nid = e.room_nid WHERE e.event_id = ?1"),
                [event_id],
                event_row,
            ))
        })
    }

    fn event_for_txn(
        &self,
        user_id: &str,
        device_id: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        self.read(|c| {
            optional(cached_row(c,
                "SELECT event_id FROM client_txns WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3",
                [user_id, device_id, txn_id],
                |r| r.get(0),
            ))
        })
    }

    fn redact_event(&self, event_id: &str, redacted_json: &str) -> Result<()> {
        let (e, j) = (event_id.to_owned(), redacted_json.to_owned());
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE events SET json = ?2 WHERE event_id = ?1",
                [&e, &j],
            )?;
            Ok(())
        })
    }

    fn current_state(&self, room_id: &str) -> Result<StateIds> {
        self.read(|c| {
            let group: Option<i64> = optional(cached_row(
                c,
                "SELECT state_group FROM rooms WHERE room_id = ?1",
                [room_id],
                |r| r.get(0),
            ))?
            .ok_or(StoreError::NotFound)?;
            match group {
                Some(g) => load_group(c, g),
                None => Ok(StateIds::new()),
            }
        })
    }

    fn state_at_group(&self, group: i64) -> Result<StateIds> {
        self.read(|c| load_group(c, group))
    }

    fn forward_extremities(&self, room_id: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT e.event_id FROM forward_extremities f JOIN events e ON e.nid = f.event_nid
                 JOIN rooms r ON r.nid = f.room_nid WHERE r.room_id = ?1 ORDER BY e.depth DESC",
            )?;
            let rows = st.query_map([room_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn room_events(
        &self,
        room_id: &str,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let order = if backwards { "DESC" } else { "ASC" };
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events e JOIN rooms r ON r.nid = e.room_nid
                 WHERE r.room_id = ?1 AND e.stream_pos > ?2 AND e.stream_pos <= ?3
                 ORDER BY e.stream_pos {order} LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![room_id, from as i64, to as i64, limit as i64],
                event_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn user_memberships(&self, user_id: &str) -> Result<Vec<MembershipRecord>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT r.room_id, m.membership, e.event_id, m.stream_pos, m.forgotten FROM memberships m
                 JOIN rooms r ON r.nid = m.room_nid JOIN events e ON e.nid = m.event_nid WHERE m.user_id = ?1",
            )?;
            let rows = st.query_map([user_id], membership_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<MembershipRecord>> {
        self.read(|c| {
            optional(cached_row(c,
                "SELECT r.room_id, m.membership, e.event_id, m.stream_pos, m.forgotten FROM memberships m
                 JOIN rooms r ON r.nid = m.room_nid JOIN events e ON e.nid = m.event_nid
                 WHERE r.room_id = ?1 AND m.user_id = ?2",
                [room_id, user_id],
                membership_row,
            ))
        })
    }

    fn room_members(
        &self,
        room_id: &str,
        membership: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT m.user_id, m.membership FROM memberships m JOIN rooms r ON r.nid = m.room_nid
                 WHERE r.room_id = ?1 AND (?2 IS NULL OR m.membership = ?2) ORDER BY m.user_id",
            )?;
            let rows = st.query_map(params![room_id, membership], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn rooms_with_events(&self, room_ids: &[String], from: u64, to: u64) -> Result<Vec<String>> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let sql = format!(
                "SELECT DISTINCT r.room_id FROM events e JOIN rooms r ON r.nid = e.room_nid
                 WHERE e.stream_pos > ? AND e.stream_pos <= ? AND r.room_id IN ({})",
                placeholders(room_ids.len())
            );
            let mut st = c.prepare(&sql)?;
            let mut args: Vec<rusqlite::types::Value> =
                vec![(from as i64).into(), (to as i64).into()];
            args.extend(room_ids.iter().map(|r| r.clone().into()));
            let rows = st.query_map(params_from_iter(args), |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn forget_room(&self, room_id: &str, user_id: &str) -> Result<()> {
        let (r, u) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c, _| {
            cached_exec(c,
                "UPDATE memberships SET forgotten = 1 WHERE user_id = ?2 AND room_nid = (SELECT nid FROM rooms WHERE room_id = ?1)",
                [&r, &u],
            )?;
            Ok(())
        })
    }

    fn relations(
        &self,
        room_id: &str,
        event_id: &str,
        filter: RelationFilter<'_>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let RelationFilter {
            rel_type,
            event_type,
            backwards,
        } = filter;
        let order = if backwards { "DESC" } else { "ASC" };
        let cmp = if backwards { "<=" } else { ">" };
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                // The unary `+`s keep SQLite on the index of related event
                // IDs (`events_relates`) instead of scanning the room.
                "SELECT {EVENT_COLS} FROM events e JOIN rooms r ON r.nid = +e.room_nid
                 WHERE r.room_id = ?1 AND json_extract(e.json, '$.content.\"m.relates_to\".event_id') = ?2
                 AND (?3 IS NULL OR json_extract(e.json, '$.content.\"m.relates_to\".rel_type') = ?3)
                 AND (?4 IS NULL OR e.type = ?4) AND +e.stream_pos {cmp} ?5
                 ORDER BY e.stream_pos {order} LIMIT ?6"
            ))?;
            let rows = st.query_map(params![room_id, event_id, rel_type, event_type, before as i64, limit as i64], event_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn thread_roots(
        &self,
        room_id: &str,
        before: u64,
        participant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT json_extract(e.json, '$.content.\"m.relates_to\".event_id') AS root, MAX(e.stream_pos) AS latest,
                        SUM(e.sender = ?3) AS replied
                 FROM events e WHERE e.room_nid = (SELECT nid FROM rooms WHERE room_id = ?1)
                   AND e.stream_pos > 0
                   AND json_extract(e.json, '$.content.\"m.relates_to\".rel_type') = 'm.thread'
                 GROUP BY root
                 HAVING latest <= ?2 AND root IS NOT NULL
                   AND (?3 IS NULL OR replied > 0 OR (SELECT sender FROM events WHERE event_id = root) = ?3)
                 ORDER BY latest DESC LIMIT ?4",
            )?;
            let rows = st.query_map(
                params![room_id, before as i64, participant, limit as i64],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn search_messages(
        &self,
        room_ids: &[String],
        term: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        if room_ids.is_empty() || term.is_empty() {
            return Ok(Vec::new());
        }
        let pattern = format!("%{}%", like_escape(&term.to_lowercase()));
        self.read(|c| {
            let sql = format!(
                "SELECT {EVENT_COLS} FROM events e JOIN rooms r ON r.nid = e.room_nid
                 WHERE e.type = 'm.room.message' AND lower(json_extract(e.json, '$.content.body')) LIKE ? ESCAPE '\\'
                 AND r.room_id IN ({}) ORDER BY e.stream_pos DESC LIMIT ?",
                placeholders(room_ids.len())
            );
            let mut st = c.prepare(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![pattern.into()];
            args.extend(room_ids.iter().map(|r| r.clone().into()));
            args.push((limit as i64).into());
            let rows = st.query_map(params_from_iter(args), event_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn state_events_at_group(
        &self,
        group: i64,
        keys: &[(&str, &str)],
    ) -> Result<Vec<Option<StoredEvent>>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "WITH RECURSIVE chain(id, parent, lvl) AS (
                    SELECT id, parent, 0 FROM state_groups WHERE id = ?1
                    UNION ALL SELECT g.id, g.parent, chain.lvl + 1 FROM state_groups g JOIN chain ON g.id = chain.parent)
                 SELECT {EVENT_COLS} FROM chain
                   JOIN state_group_entries s ON s.group_id = chain.id
                     AND s.key_nid = (SELECT nid FROM state_keys WHERE type = ?2 AND state_key = ?3)
                   JOIN events e ON e.nid = s.event_nid JOIN rooms r ON r.nid = e.room_nid
                 ORDER BY chain.lvl LIMIT 1"
            ))?;
            let mut out = Vec::with_capacity(keys.len());
            for (kind, state_key) in keys {
                out.push(optional(st.query_row(
                    params![group, kind, state_key],
                    event_row,
                ))?);
            }
            Ok(out)
        })
    }

    fn joined_after(&self, room_id: &str, user_id: &str, after: u64) -> Result<bool> {
        self.read(|c| {
            Ok(optional(cached_row(
                c,
                "SELECT 1 FROM events e JOIN rooms r ON r.nid = e.room_nid
                 WHERE r.room_id = ?1 AND e.type = 'm.room.member' AND e.state_key = ?2
                   AND +e.stream_pos > ?3 AND json_extract(e.json, '$.content.membership') = 'join'
                 LIMIT 1",
                params![room_id, user_id, after as i64],
                |r| r.get::<_, i64>(0),
            ))?
            .is_some())
        })
    }

    fn state_event_by_depth(
        &self,
        room_id: &str,
        kind: &str,
        state_key: &str,
        max_depth: i64,
    ) -> Result<Option<StoredEvent>> {
        self.read(|c| {
            optional(cached_row(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM events e JOIN rooms r ON r.nid = e.room_nid
                     WHERE r.room_id = ?1 AND e.type = ?2 AND e.state_key = ?3 AND e.depth <= ?4
                     ORDER BY e.depth DESC, e.nid DESC LIMIT 1"
                ),
                params![room_id, kind, state_key, max_depth],
                event_row,
            ))
        })
    }

    fn rooms_with_state(&self) -> Result<Vec<(String, Option<i64>)>> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT room_id, state_group FROM rooms")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn membership_changes(
        &self,
        room_ids: &[String],
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, String, String)>> {
        if room_ids.is_empty() || from >= to {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut out = Vec::new();
            let mut st = c.prepare_cached(
                "SELECT e.state_key, json_extract(e.json, '$.content.membership') FROM events e
                 JOIN rooms r ON r.nid = e.room_nid
                 WHERE r.room_id = ?1 AND e.stream_pos > ?2 AND e.stream_pos <= ?3
                   AND e.type = 'm.room.member' ORDER BY e.stream_pos",
            )?;
            for room in room_ids {
                let rows = st.query_map(params![room, from as i64, to as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })?;
                for row in rows {
                    let (target, membership) = row?;
                    out.push((room.clone(), target, membership.unwrap_or_default()));
                }
            }
            Ok(out)
        })
    }

    fn first_join(&self, room_id: &str, user_id: &str) -> Result<Option<u64>> {
        self.read(|c| {
            Ok(cached_row(
                c,
                "SELECT MIN(e.stream_pos) FROM events e JOIN rooms r ON r.nid = e.room_nid
                 WHERE r.room_id = ?1 AND e.type = 'm.room.member' AND e.state_key = ?2
                   AND +e.stream_pos > 0 AND json_extract(e.json, '$.content.membership') = 'join'",
                params![room_id, user_id],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .map(|p| p as u64))
        })
    }

    fn users_sharing_rooms(&self, user_id: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT other.user_id FROM memberships mine JOIN memberships other ON other.room_nid = mine.room_nid
                 WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'",
            )?;
            let rows = st.query_map([user_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        self.read(|c| {
            Ok(cached_row(
                c,
                "SELECT EXISTS(SELECT 1 FROM memberships mine JOIN memberships other ON other.room_nid = mine.room_nid
                 WHERE mine.user_id = ?1 AND mine.membership = 'join'
                   AND other.user_id = ?2 AND other.membership = 'join')",
                [a, b],
                |r| r.get(0),
            )?)
        })
    }
}

/// Escapes `%`, `_` and the escape character itself for `LIKE … ESCAPE '\'`.
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn membership_row(r: &Row) -> rusqlite::Result<MembershipRecord> {
    Ok(MembershipRecord {
        room_id: r.get(0)?,
        membership: r.get(1)?,
        event_id: r.get(2)?,
        stream_pos: r.get::<_, i64>(3)? as u64,
        forgotten: r.get(4)?,
    })
}
