//! Conifer's embeddable Matrix homeserver.
//!
//! [`Homeserver`] owns the storage, the signing key and the in-memory parts
//! (room caches and locks, typing, rate limits); [`client::router`] is the
//! Client-Server API as an axum router over it. Embedders start one with
//! [`Homeserver::open`] and serve the router wherever they like.

#![forbid(unsafe_code)]

mod account_data;
mod aggregations;
mod aliases;
pub mod api;
pub mod client;
pub mod config;
mod device_lists;
mod directory;
mod ephemeral;
pub mod error;
mod event_cache;
mod extract;
pub mod federation;
mod format;
mod history;
mod media;
mod memberships;
pub mod panic_guard;
mod password;
mod profile;
mod push;
mod ratelimit;
mod rooms;
pub mod ruma_api;
mod server_acl;
mod sliding_sync;
mod sync;
mod typing;
mod user_directory;
mod visibility;
mod waiters;

pub use aliases::AliasTarget;
pub use config::{Config, FederationConfig, OverlayConfig};
pub use conifer_rooms::ruma::{OwnedServerName, ServerName};
pub use error::{ApiResult, MatrixError};
pub use extract::Auth;
pub use sync::{SyncFilter, SyncFilterParam};

use conifer_rooms::{Pdu, ServerKey};
use conifer_store::sqlite::SqliteStore;
use conifer_store::Store;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// `(user, device, room) → (member → membership event ID sent)`.
type LazyMembersSent = hashlink::LruCache<(String, String, String), HashMap<String, String>>;

/// Device-and-room entries of the lazy-loading memory.
const LAZY_MEMBER_ROOMS: usize = 20_000;
/// Most access tokens kept resolved in memory.
const TOKEN_CACHE_SIZE: usize = 10_000;

pub struct Homeserver {
    pub config: Config,
    pub server_name: OwnedServerName,
    pub key: ServerKey,
    pub store: Arc<dyn Store>,
    rooms: rooms::RoomCaches,
    events: Mutex<event_cache::EventCache>,
    /// States before events whose parents this server lacks, fetched from
    /// another server (`federation::gaps`), until the event is accepted.
    pub(crate) adopted_states: Mutex<HashMap<String, conifer_rooms::StateIdMap>>,
    /// Room versions never change: read once per room.
    room_versions: Mutex<HashMap<String, String>>,
    /// Recently used access tokens (least recently used leaves first).
    tokens: Mutex<hashlink::LruCache<String, Auth>>,
    pub(crate) sender: federation::SenderHandle,
    pub(crate) key_ring: Mutex<conifer_federation::KeyRing>,
    /// How federation requests leave this server; set once by the embedder.
    pub transport: std::sync::OnceLock<Arc<dyn conifer_federation::Transport>>,
    pub(crate) push_rules: Mutex<HashMap<String, Arc<conifer_rooms::ruma::push::Ruleset>>>,
    pub(crate) typing: typing::Typing,
    pub(crate) limits: ratelimit::Limits,
    pub(crate) media: media::MediaFiles,
    /// Per `(user, device, room)`: the membership event sent for each
    /// member under lazy loading (`sync::lazy_members`).
    pub(crate) lazy_members_sent: Mutex<LazyMembersSent>,
    /// Long-polls waiting for something to show, woken by the store's
    /// commit hook.
    pub(crate) waiters: Arc<waiters::Waiters>,
    /// Each user's memberships between syncs (`memberships.rs`).
    pub(crate) memberships: memberships::MembershipCache,
    /// Sliding-sync connections (what each has been sent) and bump stamps.
    pub(crate) sliding: sliding_sync::Connections,
    /// `/sync` responses computed (initial, woken and timed-out alike).
    sync_computations: std::sync::atomic::AtomicU64,
    /// Held while the homeserver is open: see [`lock_data_dir`].
    _data_lock: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] conifer_store::StoreError),
    #[error("the data directory {path} is in use by another process{}", holder.map(|p| format!(" (PID {p})")).unwrap_or_default())]
    InUse {
        path: std::path::PathBuf,
        holder: Option<u32>,
    },
}

/// Takes the data directory's lock file (`conifer.lock`, holding the
/// owner's PID) for as long as the returned file is open, so that two
/// processes never serve one node. The operating system drops the lock when
/// the process dies, even by `kill -9`.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("conifer.lock");
    let io_err = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(StartError::InUse {
                path: dir.to_owned(),
                holder: pid.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    write!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(file)
}

impl Homeserver {
    /// Opens the homeserver's data under `config.data_dir` with the given
    /// server name and signing-key seed (`key_version` is the part after
    /// `ed25519:` in the key ID).
    pub fn open(
        config: Config,
        server_name: &ServerName,
        key_version: &str,
        seed: &[u8; 32],
    ) -> Result<Arc<Self>, StartError> {
        config.validate()?;
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let data_lock = lock_data_dir(dir)?;
        let store = SqliteStore::open(&dir.join("homeserver.db"))?;
        let media =
            media::MediaFiles::open(&dir.join("media")).map_err(|source| StartError::DataDir {
                path: dir.join("media"),
                source,
            })?;
        let limits = ratelimit::Limits::new(&config.rate_limits);
        let waiters = Arc::new(waiters::Waiters::default());
        let hook_waiters = waiters.clone();
        conifer_store::StreamStore::set_commit_hook(
            &*store,
            Arc::new(move |audiences| hook_waiters.dispatch(audiences)),
        );
        Ok(Arc::new(Self {
            server_name: server_name.to_owned(),
            key: ServerKey::from_seed(server_name, key_version, seed),
            store,
            rooms: rooms::RoomCaches::default(),
            events: Mutex::new(event_cache::EventCache::new(config.rooms.event_cache_size)),
            room_versions: Mutex::new(HashMap::new()),
            adopted_states: Mutex::new(HashMap::new()),
            tokens: Mutex::new(hashlink::LruCache::new(TOKEN_CACHE_SIZE)),
            push_rules: Mutex::new(HashMap::new()),
            key_ring: Mutex::new(conifer_federation::KeyRing::default()),
            sender: federation::SenderHandle::default(),
            transport: std::sync::OnceLock::new(),
            typing: typing::Typing::default(),
            limits,
            media,
            config,
            sync_computations: Default::default(),
            sliding: Default::default(),
            waiters,
            memberships: Default::default(),
            lazy_members_sent: Mutex::new(hashlink::LruCache::new(LAZY_MEMBER_ROOMS)),
            _data_lock: data_lock,
        }))
    }

    /// How many `/sync` responses were computed since start: a long-poll
    /// computes once when it starts and again only when something it
    /// would show may have changed.
    pub fn sync_computations(&self) -> u64 {
        self.sync_computations
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The user behind an access token.
    pub async fn authenticate(&self, token: &str) -> ApiResult<Auth> {
        if let Some(auth) = self.tokens.lock().get(token) {
            return Ok(auth.clone());
        }
        let (user_id, device_id) = self.store.token_owner(token)?.ok_or_else(|| {
            MatrixError::unknown_token("unknown or expired access token")
                .with_extra(serde_json::json!({"soft_logout": false}))
        })?;
        let auth = Auth {
            user_id,
            device_id,
            token: token.to_owned(),
        };
        self.tokens.lock().insert(token.to_owned(), auth.clone());
        Ok(auth)
    }

    /// Frees memory held only for speed (decoded events, the database's page
    /// caches and parsed statements), for an embedder whose process has gone
    /// idle. Blocks briefly: it waits for the database writer.
    pub fn release_memory(&self) {
        // Events are read again from the store when next needed; events
        // not stored yet stay.
        self.events.lock().release();
        self.store.release_memory();
    }

    /// Forgets cached tokens (after a logout or password change).
    pub(crate) fn forget_tokens(&self, user_id: &str) {
        let mut tokens = self.tokens.lock();
        let gone: Vec<String> = tokens
            .iter()
            .filter(|(_, a)| a.user_id == user_id)
            .map(|(t, _)| t.clone())
            .collect();
        for t in gone {
            tokens.remove(&t);
        }
    }

    /// Is this user ID one of ours?
    /// The version of a room this server has, if it has the room.
    pub(crate) fn room_version(&self, room_id: &str) -> Option<String> {
        if let Some(v) = self.room_versions.lock().get(room_id) {
            return Some(v.clone());
        }
        let version = self.store.room(room_id).ok()??.version;
        self.room_versions
            .lock()
            .insert(room_id.to_owned(), version.clone());
        Some(version)
    }

    pub fn is_local(&self, user_id: &str) -> bool {
        // The server name is everything after the first colon (it may carry a port).
        user_id
            .split_once(':')
            .is_some_and(|(_, s)| s == self.server_name.as_str())
    }

    pub(crate) fn cached_event(&self, event_id: &str) -> Option<Arc<Pdu>> {
        if let Some(e) = self.events.lock().get(event_id) {
            return Some(e);
        }
        let stored = self.store.event(event_id).ok()??;
        let id = conifer_rooms::ruma::OwnedEventId::try_from(event_id).ok()?;
        let pdu = Arc::new(Pdu::from_json(id, stored.json).ok()?);
        self.remember_event(pdu.clone());
        Some(pdu)
    }

    pub(crate) fn remember_event(&self, pdu: Arc<Pdu>) {
        self.events.lock().remember(pdu);
    }

    /// Keeps an event being built or authorised, not stored yet, until
    /// [`settle_event`](Self::settle_event) or [`forget_event`](Self::forget_event).
    pub(crate) fn hold_event(&self, pdu: Arc<Pdu>) {
        self.events.lock().hold(pdu);
    }

    /// A held event is stored now (or was stored by a racing copy).
    pub(crate) fn settle_event(&self, event_id: &str) {
        self.events.lock().settle(event_id);
    }

    pub(crate) fn forget_event(&self, event_id: &str) {
        self.events.lock().forget(event_id);
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random token of `len` URL-safe letters and digits.
pub(crate) fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}
