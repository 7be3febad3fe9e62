//! Typing notifications: in memory only, with a serial that `/sync` tokens
//! carry so long-polls wake when someone starts or stops typing.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per room: the serial of its last change, and who types until when.
type RoomTyping = (u64, HashMap<String, Instant>);

pub struct Typing {
    rooms: Mutex<HashMap<String, RoomTyping>>,
    serial: tokio::sync::watch::Sender<u64>,
}

impl Default for Typing {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            serial: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Typing {
    pub fn set(&self, room_id: &str, user_id: &str, timeout: Option<Duration>) {
        let mut rooms = self.rooms.lock();
        let serial = *self.serial.borrow() + 1;
        let entry = rooms.entry(room_id.to_owned()).or_default();
        let changed = match timeout {
            Some(t) => entry
                .1
                .insert(
                    user_id.to_owned(),
                    Instant::now() + t.min(Duration::from_secs(120)),
                )
                .is_none(),
            None => entry.1.remove(user_id).is_some(),
        };
        if changed {
            entry.0 = serial;
            self.serial.send_replace(serial);
        }
    }

    /// Drops expired entries, bumping the serial if any expired.
    fn expire(&self) {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        let mut serial = None;
        for (changed, users) in rooms.values_mut() {
            let before = users.len();
            users.retain(|_, until| *until > now);
            if users.len() != before {
                let s = serial.unwrap_or(*self.serial.borrow() + 1);
                serial = Some(s);
                *changed = s;
            }
        }
        if let Some(s) = serial {
            self.serial.send_replace(s);
        }
    }

    /// Users typing in `room_id`, if the room changed after `since`.
    pub fn changed_since(&self, room_id: &str, since: u64) -> Option<Vec<String>> {
        self.expire();
        let rooms = self.rooms.lock();
        let (changed, users) = rooms.get(room_id)?;
        (*changed > since).then(|| users.keys().cloned().collect())
    }

    /// The rooms whose typing changed after `since` (only rooms where
    /// someone typed are kept, so this does not grow with all rooms).
    pub fn rooms_changed_since(&self, since: u64) -> Vec<String> {
        self.expire();
        let rooms = self.rooms.lock();
        rooms
            .iter()
            .filter(|(_, (changed, _))| *changed > since)
            .map(|(room, _)| room.clone())
            .collect()
    }

    pub fn serial(&self) -> u64 {
        self.expire();
        *self.serial.borrow()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.serial.subscribe()
    }

    /// The earliest expiry, so a long-poll can wake for it.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.rooms
            .lock()
            .values()
            .flat_map(|(_, u)| u.values().copied())
            .min()
    }
}
