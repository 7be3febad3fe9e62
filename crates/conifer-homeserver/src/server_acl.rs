//! Server ACLs (`m.room.server_acl`): which servers may take part in a room
//! over federation.
//!
//! Client-Server API, "Server Access Control Lists (ACLs) for rooms":
//! "Servers MUST prevent blacklisted servers from sending events or
//! participating in the room when an `m.room.server_acl` event is present in
//! the room state." The matching (globs, `allow_ip_literals`, the port left
//! out) is Ruma's [`RoomServerAclEventContent::is_allowed`]; this module
//! reads the room's current ACL leniently, as the event's schema asks
//! (`allow_ip_literals` "Defaults to `true` if missing or otherwise not a
//! boolean", `allow` and `deny` default to empty lists), and answers for a
//! room. Every federation entry point for a room asks
//! [`Homeserver::check_server_acl`].

use crate::error::{ApiResult, MatrixError};
use crate::Homeserver;
use conifer_rooms::ruma::events::room::server_acl::RoomServerAclEventContent;
use conifer_rooms::ruma::ServerName;
use serde_json::Value;

/// Whether an `m.room.server_acl` content lets `server` (which may carry a
/// port) take part in the room. Entries that are not strings are ignored;
/// a server name that is not valid is denied.
pub(crate) fn acl_allows(content: &Value, server: &str) -> bool {
    let strings = |key: &str| -> Vec<String> {
        content
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let allow_ip_literals = content
        .get("allow_ip_literals")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let acl = RoomServerAclEventContent::new(allow_ip_literals, strings("allow"), strings("deny"));
    <&ServerName>::try_from(server).is_ok_and(|name| acl.is_allowed(name))
}

impl Homeserver {
    /// Whether the room's current server ACL lets `server` take part; a
    /// room without one (or that this server does not have) allows all.
    pub(crate) fn server_allowed_in(&self, room_id: &str, server: &str) -> ApiResult<bool> {
        if self.store.room(room_id)?.is_none() {
            return Ok(true);
        }
        Ok(match self.state_event(room_id, "m.room.server_acl", "")? {
            Some(acl) => acl_allows(&acl.content_value(), server),
            None => true,
        })
    }

    /// Server-Server API, "Server Access Control Lists (ACLs)": "If the
    /// server is denied access to a room, the receiving server MUST reply
    /// with a 403 HTTP status code and an `errcode` of `M_FORBIDDEN`."
    pub(crate) fn check_server_acl(&self, room_id: &str, server: &str) -> ApiResult<()> {
        if self.server_allowed_in(room_id, server)? {
            Ok(())
        } else {
            Err(MatrixError::forbidden(format!(
                "{server} is denied by the server ACL of {room_id}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::acl_allows;
    use serde_json::json;

    #[test]
    fn the_spec_order_of_rules() {
        // 2. IP literal with allow_ip_literals false: deny.
        let acl = json!({ "allow": ["*"], "allow_ip_literals": false });
        assert!(!acl_allows(&acl, "1.2.3.4"));
        assert!(!acl_allows(&acl, "[::1]:8448"));
        assert!(acl_allows(&acl, "good.example"));
        // Missing or not a boolean: IP literals allowed.
        assert!(acl_allows(&json!({ "allow": ["*"] }), "1.2.3.4"));
        assert!(acl_allows(
            &json!({ "allow": ["*"], "allow_ip_literals": "no" }),
            "1.2.3.4"
        ));
        // 3. deny before 4. allow, globs, ports not considered.
        let acl = json!({ "allow": ["*"], "deny": ["evil.com", "*.bad.example", "b?d.test"] });
        assert!(!acl_allows(&acl, "evil.com"));
        assert!(!acl_allows(&acl, "evil.com:8448"));
        assert!(!acl_allows(&acl, "evil.com:1234"));
        assert!(!acl_allows(&acl, "x.bad.example"));
        assert!(!acl_allows(&acl, "bad.test"));
        assert!(acl_allows(&acl, "bard.test"));
        assert!(acl_allows(&acl, "notevil.com"));
        // 5. Otherwise deny: no allow list denies everyone.
        assert!(!acl_allows(&json!({}), "good.example"));
        assert!(!acl_allows(&json!({ "allow": "*" }), "good.example"));
        let acl = json!({ "allow": ["*.example", 7] });
        assert!(acl_allows(&acl, "a.example"));
        assert!(!acl_allows(&acl, "example.org"));
        // Not a server name at all.
        assert!(!acl_allows(&json!({ "allow": ["*"] }), "bad name"));
    }
}
