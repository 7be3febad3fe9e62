//! Each user's memberships (every room it has a membership in), kept in
//! memory between `/sync`s: an incremental sync of a user in a thousand rooms
//! would otherwise load a thousand rows to find the one room that changed.
//!
//! An entry remembers the stream position it was loaded at. The store puts a
//! `User` audience on every write that changes a user's membership (its
//! membership events, and memberships changed by state resolution or adopted
//! with a remote room's state), so the entry is still right if the change log
//! since then names no `User` audience for that user; otherwise, or when the
//! log no longer reaches back, it is loaded again. Forgetting a room (no
//! stream position) drops the entry.

use crate::error::ApiResult;
use crate::Homeserver;
use conifer_store::{Audience, MembershipRecord};
use parking_lot::Mutex;
use std::sync::Arc;

/// Users whose memberships are kept.
const USERS: usize = 4096;

type Entry = (u64, Arc<Vec<MembershipRecord>>);

pub(crate) struct MembershipCache(Mutex<hashlink::LruCache<String, Entry>>);

impl Default for MembershipCache {
    fn default() -> Self {
        Self(Mutex::new(hashlink::LruCache::new(USERS)))
    }
}

impl MembershipCache {
    pub(crate) fn forget(&self, user: &str) {
        self.0.lock().remove(user);
    }
}

impl Homeserver {
    /// The user's memberships, as `RoomStore::user_memberships` reads them.
    pub(crate) fn memberships_of(&self, user: &str) -> ApiResult<Arc<Vec<MembershipRecord>>> {
        let now = self.store.stream_position();
        let cached = self.memberships.0.lock().get(user).cloned();
        if let Some((at, list)) = cached {
            if at == now {
                return Ok(list);
            }
            if let Some(changes) = self.store.changes_since(at) {
                let moved = changes
                    .iter()
                    .any(|(p, a)| *p <= now && matches!(a, Audience::User(u) if u == user));
                if !moved {
                    let mut cache = self.memberships.0.lock();
                    if let Some(entry) = cache.get_mut(user) {
                        if Arc::ptr_eq(&entry.1, &list) && entry.0 < now {
                            entry.0 = now;
                        }
                    }
                    return Ok(list);
                }
            }
        }
        // Read the position first: a change committed while loading is
        // after it, and makes the next call load again.
        let list = Arc::new(self.store.user_memberships(user)?);
        self.memberships
            .0
            .lock()
            .insert(user.to_owned(), (now, list.clone()));
        Ok(list)
    }
}
