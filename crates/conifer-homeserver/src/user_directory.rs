//! The user directory: who a user may find by name.
//!
//! The spec (Client-Server API, "User directory"): "The homeserver may
//! determine which subset of users are searched. However, the homeserver
//! MUST at a minimum consider users who are visible to the requester based
//! on their membership in rooms known to the homeserver. This means: users
//! that share a room with the requesting user; users who are joined to
//! rooms known to the homeserver that have a `public` join rule." Conifer
//! searches exactly that set (Synapse's default), computed from the rooms'
//! current state at each search, so it follows joins, leaves and join-rule
//! changes at once. Users of other servers are found by the profile in
//! their membership event.

use crate::error::ApiResult;
use crate::Homeserver;
use serde_json::Value;
use std::collections::BTreeMap;

/// One search result; absent fields are left out of the response.
pub struct Found {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

impl Homeserver {
    /// Users visible to `searcher` whose ID or display name contains
    /// `term` (case-insensitive); at most `limit`, and whether there were
    /// more.
    pub(crate) fn search_user_directory(
        &self,
        searcher: &str,
        term: &str,
        limit: usize,
    ) -> ApiResult<(Vec<Found>, bool)> {
        let term = term.to_lowercase();
        let mut rooms: Vec<String> = self
            .store
            .user_memberships(searcher)?
            .into_iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id)
            .collect();
        for (room, group) in self.store.rooms_with_state()? {
            let Some(group) = group else { continue };
            let join_rules = self
                .store
                .state_events_at_group(group, &[("m.room.join_rules", "")])?
                .pop()
                .flatten();
            let public = join_rules
                .is_some_and(|e| e.value()["content"]["join_rule"].as_str() == Some("public"));
            if public {
                rooms.push(room);
            }
        }
        rooms.sort();
        rooms.dedup();
        // user → profile, from the first room that shows the user joined.
        let mut candidates: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for room in &rooms {
            for (user, _) in self.store.room_members(room, Some("join"))? {
                if candidates.contains_key(&user) {
                    continue;
                }
                let profile = if self.is_local(&user) {
                    match self.store.user(&user)? {
                        Some(u) if !u.deactivated => (u.displayname, u.avatar_url),
                        _ => continue,
                    }
                } else {
                    let content = self
                        .state_event(room, "m.room.member", &user)?
                        .map(|p| p.content_value())
                        .unwrap_or(Value::Null);
                    let text = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
                    (text("displayname"), text("avatar_url"))
                };
                candidates.insert(user, profile);
            }
        }
        let mut found: Vec<Found> = candidates
            .into_iter()
            .filter(|(user, (name, _))| {
                user.to_lowercase().contains(&term)
                    || name
                        .as_ref()
                        .is_some_and(|n| n.to_lowercase().contains(&term))
            })
            .map(|(user_id, (display_name, avatar_url))| Found {
                user_id,
                display_name,
                avatar_url,
            })
            .collect();
        let limited = found.len() > limit;
        found.truncate(limit);
        Ok((found, limited))
    }
}
