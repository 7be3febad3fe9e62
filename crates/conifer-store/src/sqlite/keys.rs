//! End-to-end encryption keys and room-key backups.

use super::{cached_exec, cached_row, json_col, optional, placeholders, SqliteStore};
use crate::{Audience, BackupVersion, KeyStore, Result};
use rusqlite::{params, params_from_iter};
use serde_json::Value;
use std::collections::HashMap;

/// `signed_curve25519:AAAAHg` → `signed_curve25519`.
fn algorithm_of(key_id: &str) -> &str {
    key_id.split_once(':').map(|(a, _)| a).unwrap_or(key_id)
}

impl KeyStore for SqliteStore {
    fn upload_keys(
        &self,
        user_id: &str,
        device_id: &str,
        device_keys: Option<&Value>,
        one_time: &[(String, Value)],
        fallback: &[(String, Value)],
    ) -> Result<()> {
        let (u, d) = (user_id.to_owned(), device_id.to_owned());
        let device_keys = device_keys.map(Value::to_string);
        let one_time = one_time.to_vec();
        let fallback = fallback.to_vec();
        self.write(move |c, _| {
            if let Some(json) = device_keys {
                cached_exec(c,
                    "INSERT INTO device_keys(user_id, device_id, json) VALUES (?1, ?2, ?3)
                     ON CONFLICT(user_id, device_id) DO UPDATE SET json = excluded.json",
                    params![u, d, json],
                )?;
            }
            let mut st = c.prepare_cached(
                "INSERT OR IGNORE INTO one_time_keys(user_id, device_id, key_id, algorithm, json) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (key_id, key) in &one_time {
                st.execute(params![u, d, key_id, algorithm_of(key_id), key.to_string()])?;
            }
            let mut st = c.prepare_cached(
                "INSERT INTO fallback_keys(user_id, device_id, algorithm, key_id, json, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)
                 ON CONFLICT(user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, json = excluded.json, used = 0",
            )?;
            for (key_id, key) in &fallback {
                st.execute(params![u, d, algorithm_of(key_id), key_id, key.to_string()])?;
            }
            Ok(())
        })
    }

    fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<HashMap<String, u64>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
            )?;
            let rows = st.query_map([user_id, device_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
            )?;
            let rows = st.query_map([user_id, device_id], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn device_keys(&self, user_id: &str) -> Result<Vec<(String, Value)>> {
        let rows: Vec<(String, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT k.device_id, k.json FROM device_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
                 WHERE k.user_id = ?1",
            )?;
            let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(d, j)| Ok((d, json_col(j)?)))
            .collect()
    }

    fn claim_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>> {
        let (u, d, a) = (
            user_id.to_owned(),
            device_id.to_owned(),
            algorithm.to_owned(),
        );
        let found: Option<(String, String)> = self.write(move |c, _| {
            let otk: Option<(String, String)> = optional(cached_row(c,
                "SELECT key_id, json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                 ORDER BY key_id LIMIT 1",
                [&u, &d, &a],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            if let Some((key_id, json)) = otk {
                cached_exec(c,
                    "DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                    [&u, &d, &key_id],
                )?;
                return Ok(Some((key_id, json)));
            }
            let fallback: Option<(String, String)> = optional(cached_row(c,
                "SELECT key_id, json FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                [&u, &d, &a],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            if fallback.is_some() {
                cached_exec(c,
                    "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3",
                    [&u, &d, &a],
                )?;
            }
            Ok(fallback)
        })?;
        found.map(|(k, j)| Ok((k, json_col(j)?))).transpose()
    }

    fn put_cross_signing_key(&self, user_id: &str, key_type: &str, key: &Value) -> Result<()> {
        let (u, t, j) = (user_id.to_owned(), key_type.to_owned(), key.to_string());
        self.write(move |c, _| {
            cached_exec(
                c,
                "INSERT INTO cross_signing_keys(user_id, key_type, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id, key_type) DO UPDATE SET json = excluded.json",
                [&u, &t, &j],
            )?;
            Ok(())
        })
    }

    fn cross_signing_keys(&self, user_id: &str) -> Result<HashMap<String, Value>> {
        let rows: Vec<(String, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT key_type, json FROM cross_signing_keys WHERE user_id = ?1",
            )?;
            let rows = st.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(t, j)| Ok((t, json_col(j)?)))
            .collect()
    }

    fn replace_device_keys(&self, user_id: &str, device_id: &str, keys: &Value) -> Result<()> {
        let (u, d, j) = (user_id.to_owned(), device_id.to_owned(), keys.to_string());
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE device_keys SET json = ?3 WHERE user_id = ?1 AND device_id = ?2",
                [&u, &d, &j],
            )?;
            Ok(())
        })
    }

    fn mark_keys_changed(&self, user_id: &str) -> Result<u64> {
        let u = user_id.to_owned();
        self.write(move |c, pos| {
            let p = pos.next(Audience::SharingWith(u.clone()));
            cached_exec(
                c,
                "INSERT INTO key_changes(user_id, stream_pos) VALUES (?1, ?2)
                 ON CONFLICT(user_id) DO UPDATE SET stream_pos = excluded.stream_pos",
                params![u, p as i64],
            )?;
            Ok(p)
        })
    }

    fn keys_changed(&self, user_ids: &[String], from: u64, to: u64) -> Result<Vec<String>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let sql = format!(
                "SELECT user_id FROM key_changes WHERE stream_pos > ? AND stream_pos <= ? AND user_id IN ({})",
                placeholders(user_ids.len())
            );
            let mut st = c.prepare(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = vec![(from as i64).into(), (to as i64).into()];
            args.extend(user_ids.iter().map(|s| s.clone().into()));
            let rows = st.query_map(params_from_iter(args), |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn create_backup(&self, user_id: &str, algorithm: &str, auth_data: &Value) -> Result<u64> {
        let (u, a, j) = (
            user_id.to_owned(),
            algorithm.to_owned(),
            auth_data.to_string(),
        );
        self.write(move |c, _| {
            let next: i64 =
                cached_row(c, "SELECT coalesce(MAX(version), 0) + 1 FROM backup_versions WHERE user_id = ?1", [&u], |r| r.get(0))?;
            cached_exec(c,
                "INSERT INTO backup_versions(user_id, version, algorithm, auth_data) VALUES (?1, ?2, ?3, ?4)",
                params![u, next, a, j],
            )?;
            Ok(next as u64)
        })
    }

    fn backup_version(&self, user_id: &str, version: Option<u64>) -> Result<Option<BackupVersion>> {
        let row: Option<(i64, String, String, i64)> = self.read(|c| {
            optional(cached_row(c,
                "SELECT version, algorithm, auth_data, etag FROM backup_versions WHERE user_id = ?1 AND deleted = 0
                 AND (?2 IS NULL OR version = ?2) ORDER BY version DESC LIMIT 1",
                params![user_id, version.map(|v| v as i64)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ))
        })?;
        let Some((v, algorithm, auth, etag)) = row else {
            return Ok(None);
        };
        let count: i64 = self.read(|c| {
            Ok(cached_row(
                c,
                "SELECT COUNT(*) FROM backup_keys WHERE user_id = ?1 AND version = ?2",
                params![user_id, v],
                |r| r.get(0),
            )?)
        })?;
        Ok(Some(BackupVersion {
            version: v as u64,
            algorithm,
            auth_data: json_col(auth)?,
            etag: etag as u64,
            count: count as u64,
        }))
    }

    fn update_backup(&self, user_id: &str, version: u64, auth_data: &Value) -> Result<bool> {
        let (u, j) = (user_id.to_owned(), auth_data.to_string());
        self.write(move |c, _| {
            Ok(cached_exec(c,
                "UPDATE backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![u, version as i64, j],
            )? > 0)
        })
    }

    fn delete_backup(&self, user_id: &str, version: u64) -> Result<bool> {
        let u = user_id.to_owned();
        self.write(move |c, _| {
            cached_exec(c, "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![u, version as i64])?;
            Ok(cached_exec(c,
                "UPDATE backup_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![u, version as i64],
            )? > 0)
        })
    }

    fn put_backup_keys(
        &self,
        user_id: &str,
        version: u64,
        keys: &[(String, String, Value)],
    ) -> Result<()> {
        let (u, keys) = (user_id.to_owned(), keys.to_vec());
        self.write(move |c, _| {
            let mut st = c.prepare_cached(
                "INSERT INTO backup_keys(user_id, version, room_id, session_id, json) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(user_id, version, room_id, session_id) DO UPDATE SET json = excluded.json",
            )?;
            for (room, session, key) in &keys {
                st.execute(params![u, version as i64, room, session, key.to_string()])?;
            }
            cached_exec(c, "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2", params![u, version as i64])?;
            Ok(())
        })
    }

    fn backup_keys(
        &self,
        user_id: &str,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<(String, String, Value)>> {
        let rows: Vec<(String, String, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT room_id, session_id, json FROM backup_keys WHERE user_id = ?1 AND version = ?2
                 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
            )?;
            let rows = st.query_map(params![user_id, version as i64, room_id, session_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(r, s, j)| Ok((r, s, json_col(j)?)))
            .collect()
    }

    fn delete_backup_keys(
        &self,
        user_id: &str,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()> {
        let (u, r, s) = (
            user_id.to_owned(),
            room_id.map(str::to_owned),
            session_id.map(str::to_owned),
        );
        self.write(move |c, _| {
            cached_exec(c,
                "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                params![u, version as i64, r, s],
            )?;
            cached_exec(c, "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2", params![u, version as i64])?;
            Ok(())
        })
    }
}
