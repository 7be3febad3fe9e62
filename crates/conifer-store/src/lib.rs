//! Storage for Conifer's homeserver.
//!
//! The homeserver talks to storage through the domain-level traits below
//! ([`AccountStore`], [`RoomStore`], [`StreamStore`], [`KeyStore`],
//! [`MediaStore`]), never through SQL. [`sqlite::SqliteStore`] is the embedded
//! default: one writer thread that commits queued writes in groups, plus a pool
//! of read connections, in WAL mode.
//!
//! Strings that repeat (event IDs, rooms, `(type, state_key)` pairs) are
//! interned to small integers inside the store; room state is kept as
//! *state groups*, each a delta on a parent group, with a full snapshot every
//! [`sqlite::SNAPSHOT_EVERY`] deltas so that loading a state stays cheap.
//!
//! Every write that a `/sync` must see takes a position on one global stream
//! counter. [`StreamStore::subscribe`] reports the highest committed position,
//! so long-polls wake only after the data they will read is committed.

#![forbid(unsafe_code)]

pub mod sqlite;
mod types;

pub use types::*;

use serde_json::Value;
use std::collections::HashMap;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store's writer thread has stopped")]
    WriterGone,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs a blocking step (a store call that waits for the disk or for the
/// writer thread, or a computation made of many store reads) without holding
/// up the async runtime around it: on a multi-threaded tokio runtime the
/// worker first hands its queued tasks (other requests, the overlay driver)
/// to another thread ([`tokio::task::block_in_place`]); on any other thread,
/// including a current-thread runtime, it simply runs.
///
/// Handing a worker off costs about 10 µs, so this wraps coarse steps: a
/// write's wait for its commit, a whole `/sync` computation; not each small
/// read, which WAL mode never makes wait for a lock.
pub fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// See [`StreamStore::set_commit_hook`].
pub type CommitHook = std::sync::Arc<dyn Fn(&[(u64, Audience)]) + Send + Sync>;

/// The full storage interface the homeserver needs.
pub trait Store:
    AccountStore
    + RoomStore
    + StreamStore
    + KeyStore
    + MediaStore
    + OutboxStore
    + InviteStore
    + Housekeeping
{
}
impl<
        T: AccountStore
            + RoomStore
            + StreamStore
            + KeyStore
            + MediaStore
            + OutboxStore
            + InviteStore
            + Housekeeping,
    > Store for T
{
}

/// What a store does for the process around it rather than for a request.
pub trait Housekeeping: Send + Sync {
    /// Frees memory the store holds only to go faster (page caches, parsed
    /// statements), for an idle process that wants to stay small. Nothing
    /// is lost: it is read or parsed again when next needed.
    fn release_memory(&self);
}

/// Users, devices, access tokens, filters and profiles.
pub trait AccountStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] if the user exists.
    fn create_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        admin: bool,
        now_ms: u64,
    ) -> Result<()>;
    fn user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<()>;
    fn deactivate_user(&self, user_id: &str) -> Result<()>;
    /// Records that a user asked for erasure, with the profile and account
    /// data gone; returns the stream position of the request.
    fn erase_user(&self, user_id: &str) -> Result<u64>;
    /// When the user asked for erasure, if they did.
    fn erased_at(&self, user_id: &str) -> Result<Option<u64>>;
    fn set_displayname(&self, user_id: &str, name: Option<&str>) -> Result<()>;
    fn set_avatar_url(&self, user_id: &str, url: Option<&str>) -> Result<()>;

    /// Creates (or re-uses) a device and binds a fresh access token to it.
    fn create_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
        now_ms: u64,
    ) -> Result<()>;
    fn token_owner(&self, token: &str) -> Result<Option<(String, String)>>;
    fn devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>>;
    fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRecord>>;
    fn set_device_name(&self, user_id: &str, device_id: &str, name: Option<&str>) -> Result<bool>;
    fn touch_device(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: u64,
        ip: Option<&str>,
    ) -> Result<()>;
    /// Deletes a device with its tokens, keys and pending to-device messages.
    /// Returns the stream position of the resulting device-list change.
    fn delete_device(&self, user_id: &str, device_id: &str) -> Result<u64>;
    fn delete_token(&self, token: &str) -> Result<()>;
    /// Deletes every token of the user except those of `keep_device`.
    fn delete_tokens_except(&self, user_id: &str, keep_device: Option<&str>) -> Result<()>;

    fn put_login_token(&self, token: &str, user_id: &str, expires_ms: u64) -> Result<()>;
    /// Takes a login token once; expired tokens are treated as absent.
    fn take_login_token(&self, token: &str, now_ms: u64) -> Result<Option<String>>;

    fn create_filter(&self, user_id: &str, filter: &Value) -> Result<u64>;
    fn filter(&self, user_id: &str, filter_id: u64) -> Result<Option<Value>>;
}

/// Rooms, aliases, events and room state.
pub trait RoomStore: Send + Sync {
    fn create_room(&self, room_id: &str, version: &str) -> Result<RoomRecord>;
    /// Stores a room joined through another server, in one transaction: the
    /// state and auth events it sent (outside the timeline), the room state
    /// as a full snapshot, and the join event on top of it.
    fn create_joined_room(
        &self,
        room_id: &str,
        version: &str,
        outliers: Vec<OutlierEvent>,
        state: Vec<(String, String, String)>,
        join: NewEvent,
    ) -> Result<PersistedEvent>;
    /// The state before an event: the parent of its state group when it is
    /// a state event stored as a delta, else its own group.
    fn state_before_event(&self, event_id: &str) -> Result<StateIds>;
    /// Creates a room together with its first events, in one transaction.
    fn create_room_with_events(
        &self,
        room_id: &str,
        version: &str,
        events: Vec<NewEvent>,
    ) -> Result<RoomRecord>;
    fn room(&self, room_id: &str) -> Result<Option<RoomRecord>>;
    fn set_room_published(&self, room_id: &str, published: bool) -> Result<()>;
    fn published_rooms(&self) -> Result<Vec<String>>;

    fn put_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<()>;
    fn alias(&self, alias: &str) -> Result<Option<AliasRecord>>;
    fn delete_alias(&self, alias: &str) -> Result<bool>;
    fn aliases_for_room(&self, room_id: &str) -> Result<Vec<String>>;

    /// Persists an accepted event in one transaction: the event, the state
    /// group after it, forward extremities, memberships, notifications and the
    /// client's transaction ID.
    fn persist_event(&self, event: NewEvent) -> Result<PersistedEvent>;
    /// Persists events in order in one database transaction, each as
    /// [`persist_event`](Self::persist_event) would. All or nothing, but for
    /// events already stored: those come back as `Err(Conflict)` and leave
    /// the others to be stored. An `Err` means nothing was stored.
    fn persist_events(&self, events: Vec<NewEvent>) -> Result<Vec<Result<PersistedEvent>>> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match self.persist_event(event) {
                Err(StoreError::Conflict) => out.push(Err(StoreError::Conflict)),
                Err(e) => return Err(e),
                Ok(p) => out.push(Ok(p)),
            }
        }
        Ok(out)
    }
    /// Stores events outside the timeline (auth and state events fetched
    /// from other servers, soft-failed events); known ones are left alone.
    fn store_outliers(&self, room_id: &str, events: Vec<OutlierEvent>) -> Result<()>;
    /// The state group of the room's current state.
    fn room_state_group(&self, room_id: &str) -> Result<Option<i64>>;
    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>>;
    fn event_for_txn(&self, user_id: &str, device_id: &str, txn_id: &str)
        -> Result<Option<String>>;
    /// Replaces an event's JSON with its redacted form.
    fn redact_event(&self, event_id: &str, redacted_json: &str) -> Result<()>;

    fn current_state(&self, room_id: &str) -> Result<StateIds>;
    fn state_at_group(&self, group: i64) -> Result<StateIds>;
    fn forward_extremities(&self, room_id: &str) -> Result<Vec<String>>;

    /// Timeline events of a room with `from < stream_pos <= to`, newest first
    /// when `backwards`; at most `limit`.
    fn room_events(
        &self,
        room_id: &str,
        from: u64,
        to: u64,
        backwards: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// Every room whose membership for this user is in the table, with the
    /// membership and the stream position of the membership event.
    fn user_memberships(&self, user_id: &str) -> Result<Vec<MembershipRecord>>;
    fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<MembershipRecord>>;
    /// Current members of a room with the given membership (all when `None`).
    fn room_members(
        &self,
        room_id: &str,
        membership: Option<&str>,
    ) -> Result<Vec<(String, String)>>;
    /// Rooms (of the given ones) with timeline events in `(from, to]`.
    fn rooms_with_events(&self, room_ids: &[String], from: u64, to: u64) -> Result<Vec<String>>;
    fn forget_room(&self, room_id: &str, user_id: &str) -> Result<()>;
    /// Events of a room relating to `event_id` (`content.m.relates_to.event_id`),
    /// optionally of one relation type and event type, from `before` on.
    fn relations(
        &self,
        room_id: &str,
        event_id: &str,
        filter: RelationFilter<'_>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// The roots of a room's threads (events with `m.thread` children),
    /// most recently active first, with the stream position of each thread's
    /// latest reply: only threads whose latest reply is at or before
    /// `before`, and with `participant`, only threads that user started or
    /// replied in.
    fn thread_roots(
        &self,
        room_id: &str,
        before: u64,
        participant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>>;
    /// Messages in the given rooms whose body contains `term` (case-insensitive), newest first.
    fn search_messages(
        &self,
        room_ids: &[String],
        term: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// The events of the given `(type, state_key)` pairs in a state group,
    /// in the order asked (`None` where the group has none). Cheaper than
    /// loading the whole state when a caller needs one or two entries.
    fn state_events_at_group(
        &self,
        group: i64,
        keys: &[(&str, &str)],
    ) -> Result<Vec<Option<StoredEvent>>>;
    /// Whether the user's membership became `join` in the room's timeline
    /// at a stream position after `after`.
    fn joined_after(&self, room_id: &str, user_id: &str, after: u64) -> Result<bool>;
    /// The deepest stored event of a `(type, state_key)` whose depth is at
    /// most `max_depth`: the state in force in history stored without state
    /// groups (fetched from other servers).
    fn state_event_by_depth(
        &self,
        room_id: &str,
        kind: &str,
        state_key: &str,
        max_depth: i64,
    ) -> Result<Option<StoredEvent>>;
    /// Every room this server has, with the state group of its current
    /// state (`None` for a room being created).
    fn rooms_with_state(&self) -> Result<Vec<(String, Option<i64>)>>;
    /// Membership changes in the given rooms' timelines with a stream
    /// position in `(from, to]`: `(room, target user, membership)`, oldest
    /// first.
    fn membership_changes(
        &self,
        room_ids: &[String],
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, String, String)>>;
    /// The stream position of the user's first join of the room, if any.
    fn first_join(&self, room_id: &str, user_id: &str) -> Result<Option<u64>>;
    /// Users sharing at least one joined room with `user_id` (including itself).
    fn users_sharing_rooms(&self, user_id: &str) -> Result<Vec<String>>;
    /// Whether two users are both joined to at least one room (true for a
    /// user and itself when it is in any room).
    fn share_a_room(&self, a: &str, b: &str) -> Result<bool>;
}

/// Everything else a `/sync` streams: account data, receipts, to-device
/// messages, notifications and presence.
pub trait StreamStore: Send + Sync {
    /// The highest committed stream position.
    fn stream_position(&self) -> u64;
    /// A watch on the highest committed stream position.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Who the committed writes at positions above `after` concern, oldest
    /// first; every such write is listed once its position is published by
    /// [`subscribe`](Self::subscribe). `None` when the log no longer reaches
    /// back that far (the caller must assume anything changed).
    fn changes_since(&self, after: u64) -> Option<Vec<(u64, Audience)>>;
    /// Calls `hook` after each commit with the audiences of its positions,
    /// once they are in the change log and published (on the writer thread:
    /// it must be quick and must not write).
    fn set_commit_hook(&self, hook: CommitHook);

    fn put_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        kind: &str,
        content: &Value,
    ) -> Result<u64>;
    fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        kind: &str,
    ) -> Result<Option<Value>>;
    /// `(room_id or "", type, content)` changed in `(from, to]`.
    fn account_data_since(
        &self,
        user_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, String, Value)>>;

    fn put_receipt(&self, receipt: ReceiptRecord) -> Result<u64>;
    /// Receipts of the given rooms that changed in `(from, to]`.
    fn receipts_since(&self, room_ids: &[String], from: u64, to: u64)
        -> Result<Vec<ReceiptRecord>>;
    /// The user's own latest read-receipt position in a room (public or private, main or any thread).
    fn read_position(&self, room_id: &str, user_id: &str) -> Result<Option<u64>>;

    fn queue_to_device(&self, messages: Vec<ToDeviceRecord>) -> Result<u64>;
    /// Messages for a device in `(from, to]`, oldest first; messages at or
    /// below `from` are deleted first, since the client has acknowledged them.
    fn to_device_since(
        &self,
        user_id: &str,
        device_id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Value)>>;

    /// `(notifications, highlights)` after the user's read position in a room.
    fn notification_counts(&self, room_id: &str, user_id: &str) -> Result<(u64, u64)>;

    fn set_presence(
        &self,
        user_id: &str,
        presence: &str,
        status_msg: Option<&str>,
        now_ms: u64,
    ) -> Result<u64>;
    fn presence(&self, user_id: &str) -> Result<Option<PresenceRecord>>;
    fn presence_since(
        &self,
        user_ids: &[String],
        from: u64,
        to: u64,
    ) -> Result<Vec<PresenceRecord>>;
}

/// End-to-end encryption keys and room-key backups.
pub trait KeyStore: Send + Sync {
    /// Stores device keys (if given), one-time keys and fallback keys.
    fn upload_keys(
        &self,
        user_id: &str,
        device_id: &str,
        device_keys: Option<&Value>,
        one_time: &[(String, Value)],
        fallback: &[(String, Value)],
    ) -> Result<()>;
    /// Unclaimed one-time keys per algorithm.
    fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<HashMap<String, u64>>;
    /// Algorithms of fallback keys not yet used.
    fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>>;
    fn device_keys(&self, user_id: &str) -> Result<Vec<(String, Value)>>;
    /// Claims one key of `algorithm`: a one-time key, else the fallback key.
    fn claim_key(
        &self,
        user_id: &str,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>>;
    fn put_cross_signing_key(&self, user_id: &str, key_type: &str, key: &Value) -> Result<()>;
    fn cross_signing_keys(&self, user_id: &str) -> Result<HashMap<String, Value>>;
    /// Replaces a device key or cross-signing key JSON after adding signatures.
    fn replace_device_keys(&self, user_id: &str, device_id: &str, keys: &Value) -> Result<()>;
    /// Records that a user's keys or devices changed; returns the position.
    fn mark_keys_changed(&self, user_id: &str) -> Result<u64>;
    /// Users (of the given ones) whose keys changed in `(from, to]`.
    fn keys_changed(&self, user_ids: &[String], from: u64, to: u64) -> Result<Vec<String>>;

    fn create_backup(&self, user_id: &str, algorithm: &str, auth_data: &Value) -> Result<u64>;
    fn backup_version(&self, user_id: &str, version: Option<u64>) -> Result<Option<BackupVersion>>;
    fn update_backup(&self, user_id: &str, version: u64, auth_data: &Value) -> Result<bool>;
    fn delete_backup(&self, user_id: &str, version: u64) -> Result<bool>;
    fn put_backup_keys(
        &self,
        user_id: &str,
        version: u64,
        keys: &[(String, String, Value)],
    ) -> Result<()>;
    fn backup_keys(
        &self,
        user_id: &str,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<(String, String, Value)>>;
    fn delete_backup_keys(
        &self,
        user_id: &str,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()>;
}

/// Media metadata; the bytes live in content-addressed files.
pub trait MediaStore: Send + Sync {
    fn put_media(&self, media: &MediaRecord) -> Result<()>;
    fn media(&self, media_id: &str) -> Result<Option<MediaRecord>>;
}

/// Federation items waiting for their destination, oldest first.
pub trait OutboxStore: Send + Sync {
    /// Queues one item for each destination.
    fn outbox_push(&self, destinations: &[String], is_pdu: bool, json: &Value) -> Result<()>;
    fn outbox_peek(&self, destination: &str, limit: usize) -> Result<Vec<OutboxItem>>;
    /// Forgets items a destination acknowledged.
    fn outbox_ack(&self, ids: &[u64]) -> Result<()>;
    /// Destinations with items waiting (to resume sending after a restart).
    fn outbox_destinations(&self) -> Result<Vec<String>>;
    /// Records an inbound transaction; `false` if it was already processed.
    fn record_inbound_txn(&self, origin: &str, txn_id: &str) -> Result<bool>;
}

/// Invites to rooms this server is not in (received over federation), kept
/// until the user joins the room; a rejected one stays as a `leave`.
pub trait InviteStore: Send + Sync {
    /// Stores (or replaces) the invite, as membership `invite`, at a new
    /// stream position, returned.
    fn put_remote_invite(&self, invite: RemoteInvite) -> Result<u64>;
    /// Marks the invite rejected, with the user's leave event, at a new
    /// stream position (returned; `None` if there was no invite).
    fn reject_remote_invite(
        &self,
        room_id: &str,
        user_id: &str,
        leave_event_id: &str,
        leave: &Value,
    ) -> Result<Option<u64>>;
    /// The user's remote invites, rejected ones included.
    fn remote_invites(&self, user_id: &str) -> Result<Vec<RemoteInvite>>;
    fn remote_invite(&self, room_id: &str, user_id: &str) -> Result<Option<RemoteInvite>>;
    fn delete_remote_invite(&self, room_id: &str, user_id: &str) -> Result<()>;
}
