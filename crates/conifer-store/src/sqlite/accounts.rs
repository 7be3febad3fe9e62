//! Users, devices, tokens, filters.

use super::{cached_exec, cached_row, json_col, optional, SqliteStore};
use crate::{AccountStore, Audience, DeviceRecord, Result, StoreError, UserRecord};
use rusqlite::{params, Row};
use serde_json::Value;

fn user_row(r: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        user_id: r.get(0)?,
        password_hash: r.get(1)?,
        admin: r.get(2)?,
        deactivated: r.get(3)?,
        displayname: r.get(4)?,
        avatar_url: r.get(5)?,
    })
}

fn device_row(r: &Row) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        device_id: r.get(0)?,
        display_name: r.get(1)?,
        last_seen_ts: r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
        last_seen_ip: r.get(3)?,
    })
}

const USER_COLS: &str = "user_id, password_hash, admin, deactivated, displayname, avatar_url";

impl AccountStore for SqliteStore {
    fn create_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        admin: bool,
        now_ms: u64,
    ) -> Result<()> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.map(str::to_owned));
        self.write(move |c, _| {
            let n = cached_exec(c,
                "INSERT OR IGNORE INTO users(user_id, password_hash, created_ts, admin) VALUES (?1, ?2, ?3, ?4)",
                params![user_id, hash, now_ms as i64, admin],
            )?;
            if n == 0 {
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
    }

    fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.read(|c| {
            optional(cached_row(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE user_id = ?1"),
                [user_id],
                user_row,
            ))
        })
    }

    fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<()> {
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
                params![user_id, hash],
            )?;
            Ok(())
        })
    }

    fn erase_user(&self, user_id: &str) -> Result<u64> {
        let user_id = user_id.to_owned();
        self.write(move |c, pos| {
            let p = pos.next(Audience::User(user_id.clone()));
            cached_exec(
                c,
                "INSERT OR REPLACE INTO erased_users(user_id, stream_pos) VALUES (?1, ?2)",
                params![user_id, p as i64],
            )?;
            cached_exec(
                c,
                "UPDATE users SET displayname = NULL, avatar_url = NULL WHERE user_id = ?1",
                [&user_id],
            )?;
            cached_exec(c, "DELETE FROM account_data WHERE user_id = ?1", [&user_id])?;
            Ok(p)
        })
    }

    fn erased_at(&self, user_id: &str) -> Result<Option<u64>> {
        self.read(|c| {
            Ok(optional(cached_row(
                c,
                "SELECT stream_pos FROM erased_users WHERE user_id = ?1",
                [user_id],
                |r| r.get::<_, i64>(0),
            ))?
            .map(|p| p as u64))
        })
    }

    fn deactivate_user(&self, user_id: &str) -> Result<()> {
        let user_id = user_id.to_owned();
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = ?1",
                [&user_id],
            )?;
            cached_exec(
                c,
                "DELETE FROM access_tokens WHERE user_id = ?1",
                [&user_id],
            )?;
            Ok(())
        })
    }

    fn set_displayname(&self, user_id: &str, name: Option<&str>) -> Result<()> {
        let (user_id, name) = (user_id.to_owned(), name.map(str::to_owned));
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE users SET displayname = ?2 WHERE user_id = ?1",
                params![user_id, name],
            )?;
            Ok(())
        })
    }

    fn set_avatar_url(&self, user_id: &str, url: Option<&str>) -> Result<()> {
        let (user_id, url) = (user_id.to_owned(), url.map(str::to_owned));
        self.write(move |c, _| {
            cached_exec(
                c,
                "UPDATE users SET avatar_url = ?2 WHERE user_id = ?1",
                params![user_id, url],
            )?;
            Ok(())
        })
    }

    fn create_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
        now_ms: u64,
    ) -> Result<()> {
        let (u, d, n, t) = (
            user_id.to_owned(),
            device_id.to_owned(),
            display_name.map(str::to_owned),
            token.to_owned(),
        );
        self.write(move |c, _| {
            cached_exec(c,
                "INSERT INTO devices(user_id, device_id, display_name, last_seen_ts) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts,
                 display_name = coalesce(excluded.display_name, devices.display_name)",
                params![u, d, n, now_ms as i64],
            )?;
            cached_exec(c, "INSERT INTO access_tokens(token, user_id, device_id) VALUES (?1, ?2, ?3)", params![t, u, d])?;
            Ok(())
        })
    }

    fn token_owner(&self, token: &str) -> Result<Option<(String, String)>> {
        self.read(|c| {
            optional(cached_row(
                c,
                "SELECT user_id, device_id FROM access_tokens WHERE token = ?1",
                [token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))
        })
    }

    fn devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ?1 ORDER BY device_id",
            )?;
            let rows = st.query_map([user_id], device_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.read(|c| {
            optional(cached_row(c,
                "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ?1 AND device_id = ?2",
                [user_id, device_id],
                device_row,
            ))
        })
    }

    fn set_device_name(&self, user_id: &str, device_id: &str, name: Option<&str>) -> Result<bool> {
        let (u, d, n) = (
            user_id.to_owned(),
            device_id.to_owned(),
            name.map(str::to_owned),
        );
        self.write(move |c, _| {
            Ok(cached_exec(
                c,
                "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![u, d, n],
            )? > 0)
        })
    }

    fn touch_device(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: u64,
        ip: Option<&str>,
    ) -> Result<()> {
        let (u, d, ip) = (
            user_id.to_owned(),
            device_id.to_owned(),
            ip.map(str::to_owned),
        );
        self.write(move |c, _| {
            cached_exec(c,
                "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = coalesce(?4, last_seen_ip) WHERE user_id = ?1 AND device_id = ?2",
                params![u, d, now_ms as i64, ip],
            )?;
            Ok(())
        })
    }

    fn delete_device(&self, user_id: &str, device_id: &str) -> Result<u64> {
        let (u, d) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c, pos| {
            let n = cached_exec(
                c,
                "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                [&u, &d],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            for table in [
                "access_tokens",
                "device_keys",
                "one_time_keys",
                "fallback_keys",
                "to_device",
            ] {
                cached_exec(
                    c,
                    &format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
                    [&u, &d],
                )?;
            }
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

    fn delete_token(&self, token: &str) -> Result<()> {
        let t = token.to_owned();
        self.write(move |c, _| {
            cached_exec(c, "DELETE FROM access_tokens WHERE token = ?1", [&t])?;
            Ok(())
        })
    }

    fn delete_tokens_except(&self, user_id: &str, keep_device: Option<&str>) -> Result<()> {
        let (u, keep) = (user_id.to_owned(), keep_device.map(str::to_owned));
        self.write(move |c, _| {
            cached_exec(
                c,
                "DELETE FROM access_tokens WHERE user_id = ?1 AND (?2 IS NULL OR device_id != ?2)",
                params![u, keep],
            )?;
            Ok(())
        })
    }

    fn put_login_token(&self, token: &str, user_id: &str, expires_ms: u64) -> Result<()> {
        let (t, u) = (token.to_owned(), user_id.to_owned());
        self.write(move |c, _| {
            cached_exec(
                c,
                "INSERT INTO login_tokens(token, user_id, expires_ts) VALUES (?1, ?2, ?3)",
                params![t, u, expires_ms as i64],
            )?;
            Ok(())
        })
    }

    fn take_login_token(&self, token: &str, now_ms: u64) -> Result<Option<String>> {
        let t = token.to_owned();
        self.write(move |c, _| {
            let row: Option<(String, i64)> = optional(cached_row(
                c,
                "SELECT user_id, expires_ts FROM login_tokens WHERE token = ?1",
                [&t],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            cached_exec(
                c,
                "DELETE FROM login_tokens WHERE token = ?1 OR expires_ts < ?2",
                params![t, now_ms as i64],
            )?;
            Ok(row.filter(|(_, exp)| *exp as u64 >= now_ms).map(|(u, _)| u))
        })
    }

    fn create_filter(&self, user_id: &str, filter: &Value) -> Result<u64> {
        let (u, json) = (user_id.to_owned(), filter.to_string());
        self.write(move |c, _| {
            let next: i64 = cached_row(
                c,
                "SELECT coalesce(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
                [&u],
                |r| r.get(0),
            )?;
            cached_exec(
                c,
                "INSERT INTO filters(user_id, filter_id, json) VALUES (?1, ?2, ?3)",
                params![u, next, json],
            )?;
            Ok(next as u64)
        })
    }

    fn filter(&self, user_id: &str, filter_id: u64) -> Result<Option<Value>> {
        let json: Option<String> = self.read(|c| {
            optional(cached_row(
                c,
                "SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                params![user_id, filter_id as i64],
                |r| r.get(0),
            ))
        })?;
        json.map(json_col).transpose()
    }
}
