//! Long-polls waiting for something to show, indexed by what they wait
//! for, so that a commit wakes only the long-polls it concerns: a room's
//! events wake its members' long-polls, a user's writes that user's. A
//! change for "everyone sharing a room with X" (presence, device keys)
//! wakes every waiting long-poll, which then checks the change log.

use conifer_store::Audience;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

type Set = HashMap<u64, Arc<Notify>>;

#[derive(Default)]
pub(crate) struct Waiters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    by_room: HashMap<String, Set>,
    by_user: HashMap<String, Set>,
    all: Set,
}

/// One waiting long-poll; unregistered on drop.
pub(crate) struct Registration<'a> {
    waiters: &'a Waiters,
    id: u64,
    user: String,
    rooms: Vec<String>,
    pub notify: Arc<Notify>,
}

impl Waiters {
    pub fn register<'a>(
        &'a self,
        user: &str,
        rooms: impl IntoIterator<Item = &'a String>,
    ) -> Registration<'a> {
        let notify = Arc::new(Notify::new());
        let rooms: Vec<String> = rooms.into_iter().cloned().collect();
        let mut inner = self.inner.lock();
        inner.next += 1;
        let id = inner.next;
        for r in &rooms {
            inner
                .by_room
                .entry(r.clone())
                .or_default()
                .insert(id, notify.clone());
        }
        inner
            .by_user
            .entry(user.to_owned())
            .or_default()
            .insert(id, notify.clone());
        inner.all.insert(id, notify.clone());
        Registration {
            waiters: self,
            id,
            user: user.to_owned(),
            rooms,
            notify,
        }
    }

    /// Wakes the long-polls a commit's audiences concern. A wake-up that
    /// comes before the long-poll awaits is kept (`Notify` stores a permit).
    pub fn dispatch(&self, audiences: &[(u64, Audience)]) {
        let inner = self.inner.lock();
        let wake = |set: Option<&Set>| {
            for n in set.into_iter().flat_map(|s| s.values()) {
                n.notify_one();
            }
        };
        for (_, a) in audiences {
            match a {
                Audience::Room(r) => wake(inner.by_room.get(r)),
                Audience::User(u) | Audience::Device(u, _) => wake(inner.by_user.get(u)),
                Audience::SharingWith(_) => wake(Some(&inner.all)),
            }
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.inner.lock().all.len()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut inner = self.waiters.inner.lock();
        let Inner {
            by_room,
            by_user,
            all,
            ..
        } = &mut *inner;
        for r in &self.rooms {
            if let Some(set) = by_room.get_mut(r) {
                set.remove(&self.id);
                if set.is_empty() {
                    by_room.remove(r);
                }
            }
        }
        if let Some(set) = by_user.get_mut(&self.user) {
            set.remove(&self.id);
            if set.is_empty() {
                by_user.remove(&self.user);
            }
        }
        all.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_wakes_only_the_long_polls_it_concerns() {
        let w = Waiters::default();
        let rooms = ["!a:x".to_owned()];
        let in_room = w.register("@ann:x", rooms.iter());
        let elsewhere = w.register("@bob:x", std::iter::empty());
        w.dispatch(&[(1, Audience::Room("!a:x".into()))]);
        let woke = |r: &Registration<'_>| {
            let n = r.notify.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(20), n.notified())
                    .await
                    .is_ok()
            }
        };
        assert!(woke(&in_room).await);
        assert!(!woke(&elsewhere).await);
        w.dispatch(&[(2, Audience::Device("@bob:x".into(), "D".into()))]);
        assert!(woke(&elsewhere).await && !woke(&in_room).await);
        w.dispatch(&[(3, Audience::SharingWith("@carol:x".into()))]);
        assert!(woke(&elsewhere).await && woke(&in_room).await);
        drop(in_room);
        drop(elsewhere);
        assert_eq!(w.waiting(), 0);
        assert!(w.inner.lock().by_room.is_empty() && w.inner.lock().by_user.is_empty());
    }
}
