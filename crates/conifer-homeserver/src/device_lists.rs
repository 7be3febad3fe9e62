//! Which users' device lists a client must refetch, and which it may stop
//! tracking (`/sync` `device_lists`, `/keys/changes`).
//!
//! Client-Server API, end-to-end encryption, "Tracking the device list for
//! a user": `changed` lists "users who have updated their device identity
//! or cross-signing keys, or who now share an encrypted room with the
//! client since the previous sync"; `left` lists "users with whom we do not
//! share any encrypted rooms anymore since the previous sync". Conifer
//! counts every room (encrypted or not) as shared, as Synapse does.

use crate::error::ApiResult;
use crate::Homeserver;
use std::collections::BTreeSet;

impl Homeserver {
    /// `(changed, left)` for `user` between stream positions `from` and `to`.
    pub(crate) fn device_list_delta(
        &self,
        user: &str,
        from: u64,
        to: u64,
    ) -> ApiResult<(BTreeSet<String>, BTreeSet<String>)> {
        let memberships = self.store.user_memberships(user)?;
        self.device_list_delta_in(user, from, to, &memberships, None)
    }

    /// [`device_list_delta`](Self::device_list_delta) with the user's
    /// memberships at hand and, when the store's change log covers the
    /// window, what it says changed: then only the rooms that changed are
    /// looked at, and nothing at all when no key or membership moved.
    pub(crate) fn device_list_delta_in(
        &self,
        user: &str,
        from: u64,
        to: u64,
        memberships: &[conifer_store::MembershipRecord],
        changes: Option<&crate::sync::Changes>,
    ) -> ApiResult<(BTreeSet<String>, BTreeSet<String>)> {
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut left: BTreeSet<String> = BTreeSet::new();
        let own_moved = memberships
            .iter()
            .any(|m| m.stream_pos > from && m.stream_pos <= to);
        // Whose device keys to look up: with the change log, only the users
        // whose keys or presence moved and who share a room with this one.
        let key_users: Vec<String> = match changes {
            Some(ch) => {
                let rooms_moved = memberships
                    .iter()
                    .any(|m| m.membership == "join" && ch.rooms.contains(&m.room_id));
                if ch.sharing_with.is_empty() && !own_moved && !rooms_moved {
                    return Ok((changed, left));
                }
                self.sharing_among(user, &ch.sharing_with)?
            }
            None => {
                let mut all = self.store.users_sharing_rooms(user)?;
                if !all.iter().any(|u| u == user) {
                    // The user's own other devices.
                    all.push(user.to_owned());
                }
                all
            }
        };
        if !key_users.is_empty() {
            changed.extend(self.store.keys_changed(&key_users, from, to)?);
        }

        let mut joined = Vec::new();
        for m in memberships {
            let in_window = m.stream_pos > from && m.stream_pos <= to;
            match m.membership.as_str() {
                "join" => {
                    if changes.is_none_or(|ch| ch.rooms.contains(&m.room_id)) {
                        joined.push(m.room_id.clone());
                    }
                    if in_window {
                        // Everyone in a room we just joined is new to us.
                        changed.extend(
                            self.store
                                .room_members(&m.room_id, Some("join"))?
                                .into_iter()
                                .map(|(u, _)| u),
                        );
                    }
                }
                "leave" | "ban" if in_window => {
                    left.extend(
                        self.store
                            .room_members(&m.room_id, Some("join"))?
                            .into_iter()
                            .map(|(u, _)| u),
                    );
                }
                _ => {}
            }
        }
        for (_, target, membership) in self.store.membership_changes(&joined, from, to)? {
            match membership.as_str() {
                "join" => {
                    changed.insert(target);
                }
                "leave" | "ban" => {
                    left.insert(target);
                }
                _ => {}
            }
        }
        if changed.is_empty() && left.is_empty() {
            return Ok((changed, left));
        }
        // A few users are checked one by one; many (a room just joined) at once.
        if changed.len() + left.len() > 32 {
            let sharing: BTreeSet<String> =
                self.store.users_sharing_rooms(user)?.into_iter().collect();
            changed.retain(|u| sharing.contains(u) || u == user);
            left.retain(|u| !sharing.contains(u) && u != user);
        } else {
            let shared: BTreeSet<String> = self
                .sharing_among(user, &changed.union(&left).cloned().collect())?
                .into_iter()
                .collect();
            changed.retain(|u| shared.contains(u));
            left.retain(|u| !shared.contains(u) && u != user);
        }
        Ok((changed, left))
    }

    /// Those of `users` who are `user` or share a joined room with it.
    pub(crate) fn sharing_among(
        &self,
        user: &str,
        users: &BTreeSet<String>,
    ) -> ApiResult<Vec<String>> {
        let mut out = Vec::new();
        for u in users {
            if u == user || self.store.share_a_room(user, u)? {
                out.push(u.clone());
            }
        }
        Ok(out)
    }
}
