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
        let sharing: BTreeSet<String> = self.store.users_sharing_rooms(user)?.into_iter().collect();
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut left: BTreeSet<String> = BTreeSet::new();
        let mut sharing_list: Vec<String> = sharing.iter().cloned().collect();
        if !sharing.contains(user) {
            // The user's own other devices.
            sharing_list.push(user.to_owned());
        }
        changed.extend(self.store.keys_changed(&sharing_list, from, to)?);

        let memberships = self.store.user_memberships(user)?;
        let mut joined = Vec::new();
        for m in &memberships {
            let in_window = m.stream_pos > from && m.stream_pos <= to;
            match m.membership.as_str() {
                "join" => {
                    joined.push(m.room_id.clone());
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
        changed.retain(|u| sharing.contains(u) || u == user);
        left.retain(|u| !sharing.contains(u) && u != user);
        Ok((changed, left))
    }
}
