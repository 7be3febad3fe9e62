//! Invites to rooms this server is not in.

use super::{cached_exec, cached_row, json_col, optional, SqliteStore};
use crate::{Audience, InviteStore, RemoteInvite, Result};
use rusqlite::{params, Row};

const COLUMNS: &str =
    "room_id, user_id, event_id, room_version, json, invite_state, stream_pos, membership";

type RawInvite = (String, String, String, String, String, String, i64, String);

fn raw(r: &Row) -> rusqlite::Result<RawInvite> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode(
    (room_id, user_id, event_id, room_version, json, state, pos, membership): RawInvite,
) -> Result<RemoteInvite> {
    let invite_state = match json_col(state)? {
        serde_json::Value::Array(a) => a,
        _ => Vec::new(),
    };
    Ok(RemoteInvite {
        room_id,
        user_id,
        event_id,
        room_version,
        membership,
        event: json_col(json)?,
        invite_state,
        stream_pos: pos as u64,
    })
}

/// Drops a user's remote invite inside an ongoing write (the user joined).
pub(crate) fn delete(c: &rusqlite::Connection, room_id: &str, user_id: &str) -> Result<()> {
    cached_exec(
        c,
        "DELETE FROM remote_invites WHERE room_id = ?1 AND user_id = ?2",
        [room_id, user_id],
    )?;
    Ok(())
}

impl InviteStore for SqliteStore {
    fn put_remote_invite(&self, invite: RemoteInvite) -> Result<u64> {
        self.write(move |c, pos| {
            let p = pos.next(Audience::User(invite.user_id.clone()));
            cached_exec(c,
                &format!("INSERT OR REPLACE INTO remote_invites({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'invite')"),
                params![
                    invite.room_id,
                    invite.user_id,
                    invite.event_id,
                    invite.room_version,
                    invite.event.to_string(),
                    serde_json::Value::Array(invite.invite_state).to_string(),
                    p as i64
                ],
            )?;
            Ok(p)
        })
    }

    fn reject_remote_invite(
        &self,
        room_id: &str,
        user_id: &str,
        leave_event_id: &str,
        leave: &serde_json::Value,
    ) -> Result<Option<u64>> {
        let (r, u, id, json) = (
            room_id.to_owned(),
            user_id.to_owned(),
            leave_event_id.to_owned(),
            leave.to_string(),
        );
        self.write(move |c, pos| {
            let pending: i64 = cached_row(c,
                "SELECT COUNT(*) FROM remote_invites WHERE room_id = ?1 AND user_id = ?2 AND membership = 'invite'",
                [&r, &u],
                |row| row.get(0),
            )?;
            if pending == 0 {
                return Ok(None);
            }
            let p = pos.next(Audience::User(u.clone()));
            cached_exec(c,
                "UPDATE remote_invites SET membership = 'leave', event_id = ?3, json = ?4, stream_pos = ?5
                 WHERE room_id = ?1 AND user_id = ?2",
                params![r, u, id, json, p as i64],
            )?;
            Ok(Some(p))
        })
    }

    fn remote_invites(&self, user_id: &str) -> Result<Vec<RemoteInvite>> {
        let rows: Vec<RawInvite> = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM remote_invites WHERE user_id = ?1 ORDER BY stream_pos"
            ))?;
            let rows = st.query_map([user_id], raw)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter().map(decode).collect()
    }

    fn remote_invite(&self, room_id: &str, user_id: &str) -> Result<Option<RemoteInvite>> {
        let row = self.read(|c| {
            optional(cached_row(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM remote_invites WHERE room_id = ?1 AND user_id = ?2"
                ),
                [room_id, user_id],
                raw,
            ))
        })?;
        row.map(decode).transpose()
    }

    fn delete_remote_invite(&self, room_id: &str, user_id: &str) -> Result<()> {
        let (r, u) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c, _| delete(c, &r, &u))
    }
}
