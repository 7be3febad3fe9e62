//! The federation outbox.

use super::{cached_exec, json_col, placeholders, SqliteStore};
use crate::{OutboxItem, OutboxStore, Result};
use rusqlite::{params, params_from_iter, Connection};

/// Queues items inside an ongoing write (used by `persist_event` too, so an
/// event and its outbound copies commit together).
pub(crate) fn push(
    c: &Connection,
    destinations: &[String],
    is_pdu: bool,
    json: &str,
) -> Result<()> {
    let mut st =
        c.prepare_cached("INSERT INTO outbox(destination, is_pdu, json) VALUES (?1, ?2, ?3)")?;
    for d in destinations {
        st.execute(params![d, is_pdu, json])?;
    }
    Ok(())
}

impl OutboxStore for SqliteStore {
    fn outbox_push(
        &self,
        destinations: &[String],
        is_pdu: bool,
        json: &serde_json::Value,
    ) -> Result<()> {
        let (d, j) = (destinations.to_vec(), json.to_string());
        self.write(move |c, _| push(c, &d, is_pdu, &j))
    }

    fn outbox_peek(&self, destination: &str, limit: usize) -> Result<Vec<OutboxItem>> {
        let rows: Vec<(i64, bool, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, is_pdu, json FROM outbox WHERE destination = ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![destination, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(id, is_pdu, j)| {
                Ok(OutboxItem {
                    id: id as u64,
                    is_pdu,
                    json: json_col(j)?,
                })
            })
            .collect()
    }

    fn outbox_ack(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().map(|i| *i as i64).collect();
        self.write(move |c, _| {
            cached_exec(
                c,
                &format!(
                    "DELETE FROM outbox WHERE id IN ({})",
                    placeholders(ids.len())
                ),
                params_from_iter(ids),
            )?;
            Ok(())
        })
    }

    fn record_inbound_txn(&self, origin: &str, txn_id: &str) -> Result<bool> {
        let (o, t) = (origin.to_owned(), txn_id.to_owned());
        self.write(move |c, _| {
            Ok(cached_exec(
                c,
                "INSERT OR IGNORE INTO inbound_txns(origin, txn_id) VALUES (?1, ?2)",
                [&o, &t],
            )? == 1)
        })
    }

    fn outbox_destinations(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT DISTINCT destination FROM outbox ORDER BY destination")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
