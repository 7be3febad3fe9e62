//! The embedded SQLite store.
//!
//! Writes go to one writer thread, which runs every queued write inside one
//! transaction (each under its own savepoint, so one failing write does not
//! undo the others) and only then answers the callers: an acknowledged write
//! is committed to the WAL and survives `kill -9`. Reads use a small pool of
//! connections that see the last committed state.

mod accounts;
mod invites;
mod keys;
mod media;
mod outbox;
mod rooms;
mod streams;

use crate::{Audience, Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// A state group chain is cut with a full snapshot after this many deltas.
pub const SNAPSHOT_EVERY: i64 = 64;

/// Writes queued together are committed in one transaction of at most this many.
const MAX_GROUP_COMMIT: usize = 256;

const READ_POOL_SIZE: usize = 4;

type Reply = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn FnOnce(&Connection, &AtomicU64, &mut Vec<(u64, Audience)>) -> Reply + Send>;

/// Entries kept in the change log (a long-poll further behind recomputes).
const CHANGE_LOG_LEN: usize = 16_384;

/// The audiences of recently committed positions, oldest first, and the
/// highest position ever trimmed from the front.
#[derive(Default)]
pub(crate) struct ChangeLog {
    entries: std::collections::VecDeque<(u64, Audience)>,
    trimmed_to: u64,
    /// Told of each commit's audiences once they are in the log.
    hook: Option<crate::CommitHook>,
}

pub struct SqliteStore {
    path: PathBuf,
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    committed: tokio::sync::watch::Sender<u64>,
    changes: Arc<Mutex<ChangeLog>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn)?;
        let start = max_stream_pos(&conn)?;
        let (committed, _) = tokio::sync::watch::channel(start);
        let (tx, rx) = mpsc::channel::<Job>();
        let notify = committed.clone();
        // Positions up to `start` were written by an earlier process.
        let changes = Arc::new(Mutex::new(ChangeLog {
            entries: Default::default(),
            trimmed_to: start,
            hook: None,
        }));
        let log = changes.clone();
        std::thread::Builder::new()
            .name("conifer-db-writer".into())
            .spawn(move || writer_loop(conn, rx, AtomicU64::new(start), notify, log))
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            jobs: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
            committed,
            changes,
        }))
    }

    /// Runs `f` on the writer thread inside a transaction and waits for the commit.
    pub(crate) fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &Positions) -> Result<R> + Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<Result<R>>(1);
        let job: Job = Box::new(move |conn, counter, audiences| {
            let positions = Positions {
                counter,
                taken: std::cell::RefCell::new(Vec::new()),
            };
            let outcome = run_in_savepoint(conn, |c| f(c, &positions));
            // A write that rolled back to its savepoint changed nothing.
            if outcome.is_ok() {
                audiences.extend(positions.taken.into_inner());
            }
            Box::new(move |commit_error| {
                let outcome = match commit_error {
                    Some(e) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
                    None => outcome,
                };
                let _ = reply_tx.send(outcome);
            })
        });
        self.jobs
            .lock()
            .unwrap()
            .send(job)
            .map_err(|_| StoreError::WriterGone)?;
        // Waiting for the group commit (and its fsync) is the slow part of a
        // write: other tasks of this worker move on meanwhile.
        crate::off_runtime(|| reply_rx.recv()).map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on a pooled read connection.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let conn = self.readers.lock().unwrap().pop();
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path, true)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap();
        if pool.len() < READ_POOL_SIZE {
            pool.push(conn);
        }
        out
    }

    pub(crate) fn committed(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.committed
    }

    pub(crate) fn install_commit_hook(&self, hook: crate::CommitHook) {
        self.changes.lock().unwrap_or_else(|e| e.into_inner()).hook = Some(hook);
    }

    pub(crate) fn changes_after(&self, after: u64) -> Option<Vec<(u64, Audience)>> {
        let log = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if after < log.trimmed_to {
            return None;
        }
        let start = log.entries.partition_point(|(p, _)| *p <= after);
        Some(log.entries.range(start..).cloned().collect())
    }
}

impl crate::Housekeeping for SqliteStore {
    fn release_memory(&self) {
        // Pooled readers are not in use while they are in the pool.
        for conn in self.readers.lock().unwrap().iter() {
            release_connection_memory(conn);
        }
        let released = self.write(|c, _| {
            release_connection_memory(c);
            Ok(())
        });
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release the writer's memory");
        }
    }
}

/// Drops a connection's cached pages and parsed statements.
fn release_connection_memory(conn: &Connection) {
    conn.flush_prepared_statement_cache();
    if let Err(e) = conn.execute_batch("PRAGMA shrink_memory") {
        tracing::debug!(error = %e, "PRAGMA shrink_memory failed");
    }
}

/// Hands out stream positions inside a write, each with who it concerns.
pub(crate) struct Positions<'a> {
    counter: &'a AtomicU64,
    taken: std::cell::RefCell<Vec<(u64, Audience)>>,
}

impl Positions<'_> {
    pub(crate) fn next(&self, audience: Audience) -> u64 {
        let p = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.taken.borrow_mut().push((p, audience));
        p
    }

    /// One more audience for a position this write took.
    pub(crate) fn also(&self, p: u64, audience: Audience) {
        self.taken.borrow_mut().push((p, audience));
    }
}

fn run_in_savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT job")?;
    let out = f(conn);
    if out.is_err() {
        conn.execute_batch("ROLLBACK TO job")?;
    }
    conn.execute_batch("RELEASE job")?;
    out
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    counter: AtomicU64,
    notify: tokio::sync::watch::Sender<u64>,
    log: Arc<Mutex<ChangeLog>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begin = conn.execute_batch("BEGIN IMMEDIATE");
        let mut replies = Vec::with_capacity(batch.len());
        let mut audiences = Vec::new();
        for job in batch {
            replies.push(job(&conn, &counter, &mut audiences));
        }
        let commit = begin.and_then(|_| conn.execute_batch("COMMIT"));
        let error = commit.err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "database commit failed");
            e.to_string()
        });
        if error.is_none() {
            // The log first: whoever sees the new position finds its audiences.
            let hook = {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                audiences.sort_by_key(|(p, _)| *p);
                log.entries.extend(audiences.iter().cloned());
                while log.entries.len() > CHANGE_LOG_LEN {
                    if let Some((p, _)) = log.entries.pop_front() {
                        log.trimmed_to = log.trimmed_to.max(p);
                    }
                }
                log.hook.clone()
            };
            notify.send_replace(counter.load(Ordering::SeqCst));
            if let Some(hook) = hook {
                hook(&audiences);
            }
        }
        for reply in replies {
            reply(error.clone());
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; NORMAL sync keeps every commit
    // across a process crash (kill -9), only a power cut may lose the last few.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-8000;")?;
    // Every hot statement stays parsed (the default keeps only 16).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Schema steps: step N takes a database from version N to N + 1.
const MIGRATIONS: [&str; 6] = [
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
];

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this build understands ({latest})"
        )));
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", step + 1))?;
        tx.commit()?;
    }
    Ok(())
}

fn max_stream_pos(conn: &Connection) -> Result<u64> {
    let sql = "SELECT MAX(p) FROM (
        SELECT MAX(stream_pos) AS p FROM events UNION ALL
        SELECT MAX(stream_pos) FROM account_data UNION ALL
        SELECT MAX(stream_pos) FROM receipts UNION ALL
        SELECT MAX(stream_pos) FROM to_device UNION ALL
        SELECT MAX(stream_pos) FROM presence UNION ALL
        SELECT MAX(stream_pos) FROM key_changes UNION ALL
        SELECT MAX(stream_pos) FROM remote_invites UNION ALL
        SELECT MAX(stream_pos) FROM memberships)";
    let max: Option<i64> = conn.query_row(sql, [], |r| r.get(0))?;
    Ok(max.unwrap_or(0) as u64)
}

/// Maps "no row" to `None`.
/// `query_row` through the connection's statement cache.
pub(crate) fn cached_row<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, f)
}

/// `execute` through the connection's statement cache.
pub(crate) fn cached_exec<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

pub(crate) fn optional<T>(r: rusqlite::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn json_col(s: String) -> Result<serde_json::Value> {
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `?, ?, ?` for an IN list of `n` items.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}
