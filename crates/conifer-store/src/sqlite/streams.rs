//! Account data, receipts, to-device messages, notification counts, presence.

use super::{cached_exec, cached_row, json_col, optional, placeholders, SqliteStore};
use crate::{Audience, PresenceRecord, ReceiptRecord, Result, StreamStore, ToDeviceRecord};
use rusqlite::{params, params_from_iter};
use serde_json::Value;

fn in_list_args(
    head: Vec<rusqlite::types::Value>,
    items: &[String],
) -> Vec<rusqlite::types::Value> {
    let mut args = head;
    args.extend(items.iter().map(|s| s.clone().into()));
    args
}

impl StreamStore for SqliteStore {
    fn stream_position(&self) -> u64 {
        *self.committed().borrow()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed().subscribe()
    }

    fn changes_since(&self, after: u64) -> Option<Vec<(u64, Audience)>> {
        self.changes_after(after)
    }

    fn set_commit_hook(&self, hook: crate::CommitHook) {
        self.install_commit_hook(hook)
    }

    fn put_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        kind: &str,
        content: &Value,
    ) -> Result<u64> {
        let (u, r, k, j) = (
            user_id.to_owned(),
            room_id.unwrap_or("").to_owned(),
            kind.to_owned(),
            content.to_string(),
        );
        self.write(move |c, pos| {
            let p = pos.next(Audience::User(u.clone()));
            cached_exec(c,
                "INSERT INTO account_data(user_id, room_id, type, content, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
                params![u, r, k, j, p as i64],
            )?;
            Ok(p)
        })
    }

    fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        kind: &str,
    ) -> Result<Option<Value>> {
        let json: Option<String> = self.read(|c| {
            optional(cached_row(c,
                "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
                [user_id, room_id.unwrap_or(""), kind],
                |r| r.get(0),
            ))
        })?;
        json.map(json_col).transpose()
    }

    fn account_data_since(
        &self,
        user_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, String, Value)>> {
        let rows: Vec<(String, String, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT room_id, type, content FROM account_data WHERE user_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3",
            )?;
            let rows = st.query_map(params![user_id, from as i64, to as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(r, t, j)| Ok((r, t, json_col(j)?)))
            .collect()
    }

    fn put_receipt(&self, receipt: ReceiptRecord) -> Result<u64> {
        self.write(move |c, pos| {
            let p = pos.next(Audience::Room(receipt.room_id.clone()));
            cached_exec(c,
                "INSERT INTO receipts(room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT stream_pos FROM events WHERE event_id = ?5), ?6, ?7)
                 ON CONFLICT(room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id,
                   event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos",
                params![
                    receipt.room_id,
                    receipt.user_id,
                    receipt.receipt_type,
                    receipt.thread_id,
                    receipt.event_id,
                    receipt.ts as i64,
                    p as i64
                ],
            )?;
            if matches!(receipt.receipt_type.as_str(), "m.read" | "m.read.private") {
                // The read position moved: count what is left after it.
                cached_exec(c,
                    "INSERT INTO unread_counts(user_id, room_nid, read_pos, notifs, highlights)
                     SELECT ?1, ro.nid, rp.p,
                       (SELECT COUNT(*) FROM notifications n
                        WHERE n.user_id = ?1 AND n.room_nid = ro.nid AND n.stream_pos > rp.p),
                       (SELECT COALESCE(SUM(n.highlight), 0) FROM notifications n
                        WHERE n.user_id = ?1 AND n.room_nid = ro.nid AND n.stream_pos > rp.p)
                     FROM rooms ro, (SELECT COALESCE(MAX(event_pos), 0) AS p FROM receipts
                        WHERE room_id = ?2 AND user_id = ?1 AND receipt_type IN ('m.read', 'm.read.private')) rp
                     WHERE ro.room_id = ?2
                     ON CONFLICT(user_id, room_nid) DO UPDATE SET read_pos = excluded.read_pos,
                       notifs = excluded.notifs, highlights = excluded.highlights",
                    params![receipt.user_id, receipt.room_id],
                )?;
            }
            Ok(p)
        })
    }

    fn receipts_since(
        &self,
        room_ids: &[String],
        from: u64,
        to: u64,
    ) -> Result<Vec<ReceiptRecord>> {
        if room_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let sql = format!(
                "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, stream_pos FROM receipts
                 WHERE stream_pos > ? AND stream_pos <= ? AND room_id IN ({})",
                placeholders(room_ids.len())
            );
            let mut st = c.prepare(&sql)?;
            let args = in_list_args(vec![(from as i64).into(), (to as i64).into()], room_ids);
            let rows = st.query_map(params_from_iter(args), |r| {
                Ok(ReceiptRecord {
                    room_id: r.get(0)?,
                    user_id: r.get(1)?,
                    receipt_type: r.get(2)?,
                    thread_id: r.get(3)?,
                    event_id: r.get(4)?,
                    ts: r.get::<_, i64>(5)? as u64,
                    stream_pos: r.get::<_, i64>(6)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn read_position(&self, room_id: &str, user_id: &str) -> Result<Option<u64>> {
        self.read(|c| {
            let p: Option<i64> = cached_row(
                c,
                "SELECT MAX(event_pos) FROM receipts WHERE room_id = ?1 AND user_id = ?2
                 AND receipt_type IN ('m.read', 'm.read.private')",
                [room_id, user_id],
                |r| r.get(0),
            )?;
            Ok(p.map(|p| p as u64))
        })
    }

    fn queue_to_device(&self, messages: Vec<ToDeviceRecord>) -> Result<u64> {
        self.write(move |c, pos| {
            let Some(first) = messages.first() else {
                return Ok(0);
            };
            let p = pos.next(Audience::Device(first.user_id.clone(), first.device_id.clone()));
            for m in &messages[1..] {
                pos.also(p, Audience::Device(m.user_id.clone(), m.device_id.clone()));
            }
            let mut st =
                c.prepare_cached("INSERT INTO to_device(user_id, device_id, stream_pos, json) VALUES (?1, ?2, ?3, ?4)")?;
            for m in &messages {
                st.execute(params![m.user_id, m.device_id, p as i64, m.message.to_string()])?;
            }
            Ok(p)
        })
    }

    fn to_device_since(
        &self,
        user_id: &str,
        device_id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Value)>> {
        if from > 0 {
            let (u, d) = (user_id.to_owned(), device_id.to_owned());
            let acknowledged: bool = self.read(|c| {
                Ok(cached_row(c,
                    "SELECT EXISTS(SELECT 1 FROM to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3)",
                    params![u, d, from as i64],
                    |r| r.get(0),
                )?)
            })?;
            if acknowledged {
                self.write(move |c, _| {
                    cached_exec(c,
                        "DELETE FROM to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3",
                        params![u, d, from as i64],
                    )?;
                    Ok(())
                })?;
            }
        }
        let rows: Vec<(i64, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT stream_pos, json FROM to_device WHERE user_id = ?1 AND device_id = ?2
                 AND stream_pos > ?3 AND stream_pos <= ?4 ORDER BY id LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![user_id, device_id, from as i64, to as i64, limit as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(p, j)| Ok((p as u64, json_col(j)?)))
            .collect()
    }

    fn notification_counts(&self, room_id: &str, user_id: &str) -> Result<(u64, u64)> {
        self.read(|c| {
            let counts: Option<(i64, i64)> = optional(cached_row(
                c,
                "SELECT notifs, highlights FROM unread_counts
                 WHERE user_id = ?1 AND room_nid = (SELECT nid FROM rooms WHERE room_id = ?2)",
                params![user_id, room_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            let (n, h) = counts.unwrap_or((0, 0));
            Ok((n.max(0) as u64, h.max(0) as u64))
        })
    }

    fn set_presence(
        &self,
        user_id: &str,
        presence: &str,
        status_msg: Option<&str>,
        now_ms: u64,
    ) -> Result<u64> {
        let (u, p, s) = (
            user_id.to_owned(),
            presence.to_owned(),
            status_msg.map(str::to_owned),
        );
        self.write(move |c, pos| {
            let sp = pos.next(Audience::SharingWith(u.clone()));
            cached_exec(c,
                "INSERT INTO presence(user_id, presence, status_msg, last_active_ts, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
                   last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos",
                params![u, p, s, now_ms as i64, sp as i64],
            )?;
            Ok(sp)
        })
    }

    fn presence(&self, user_id: &str) -> Result<Option<PresenceRecord>> {
        self.read(|c| {
            optional(cached_row(c,
                "SELECT user_id, presence, status_msg, last_active_ts, stream_pos FROM presence WHERE user_id = ?1",
                [user_id],
                presence_row,
            ))
        })
    }

    fn presence_since(
        &self,
        user_ids: &[String],
        from: u64,
        to: u64,
    ) -> Result<Vec<PresenceRecord>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let sql = format!(
                "SELECT user_id, presence, status_msg, last_active_ts, stream_pos FROM presence
                 WHERE stream_pos > ? AND stream_pos <= ? AND user_id IN ({})",
                placeholders(user_ids.len())
            );
            let mut st = c.prepare(&sql)?;
            let args = in_list_args(vec![(from as i64).into(), (to as i64).into()], user_ids);
            let rows = st.query_map(params_from_iter(args), presence_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

fn presence_row(r: &rusqlite::Row) -> rusqlite::Result<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: r.get(0)?,
        presence: r.get(1)?,
        status_msg: r.get(2)?,
        last_active_ts: r.get::<_, i64>(3)? as u64,
        stream_pos: r.get::<_, i64>(4)? as u64,
    })
}
