//! Profiles: a user's display name and avatar, local or asked of the
//! user's server, and their changes, mirrored into the user's room
//! memberships as the spec asks.

use crate::error::{ApiResult, MatrixError};
use crate::Homeserver;
use conifer_rooms::EventTemplate;
use serde_json::{json, Map, Value};

/// The profile fields Conifer stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProfileField {
    DisplayName,
    AvatarUrl,
}

impl ProfileField {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProfileField::DisplayName => "displayname",
            ProfileField::AvatarUrl => "avatar_url",
        }
    }
}

impl Homeserver {
    fn local_profile(&self, user: &str) -> ApiResult<conifer_store::UserRecord> {
        self.store
            .user(user)?
            .filter(|u| !u.deactivated)
            .ok_or_else(|| MatrixError::not_found("profile not found"))
    }

    /// A user's profile (the fields that are set), from this server's
    /// accounts or asked of the user's server (only `field` when given).
    pub(crate) async fn profile(
        &self,
        user: &str,
        field: Option<&str>,
    ) -> ApiResult<Map<String, Value>> {
        if !self.is_local(user) {
            return self.remote_profile(user, field).await;
        }
        let u = self.local_profile(user)?;
        let mut out = Map::new();
        if let Some(n) = u.displayname {
            out.insert("displayname".into(), json!(n));
        }
        if let Some(a) = u.avatar_url {
            out.insert("avatar_url".into(), json!(a));
        }
        Ok(out)
    }

    /// A remote user's profile, asked of their server.
    async fn remote_profile(
        &self,
        user: &str,
        field: Option<&str>,
    ) -> ApiResult<Map<String, Value>> {
        let server = crate::federation::e2ee::server_of(user);
        // Unreachable or unknown servers answer 404 like a missing profile:
        // the client cannot tell them apart from here, and no 5xx is ours to
        // give.
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut uri = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(user));
        if let Some(f) = field {
            uri.push_str(&format!("&field={}", enc(f)));
        }
        match self.federation_call(server, "GET", &uri, None).await {
            Ok((200, Value::Object(v))) => Ok(v),
            Ok((404, _)) => Err(MatrixError::not_found("profile not found")),
            Ok((status, _)) => Err(MatrixError::not_found(format!(
                "{server} answered {status} for the profile"
            ))),
            Err(e) => Err(MatrixError::not_found(format!(
                "cannot reach {server}: {e}"
            ))),
        }
    }

    /// Sets (or with `None` removes) one of the user's profile fields, and
    /// updates the user's membership event in every room they are joined
    /// to.
    pub(crate) async fn set_profile_field(
        &self,
        user: &str,
        field: ProfileField,
        value: Option<&str>,
    ) -> ApiResult<()> {
        match field {
            ProfileField::DisplayName => self.store.set_displayname(user, value)?,
            ProfileField::AvatarUrl => self.store.set_avatar_url(user, value)?,
        }
        let name = field.name();
        for m in self.store.user_memberships(user)? {
            if m.membership != "join" {
                continue;
            }
            let Some(current) = self.state_event(&m.room_id, "m.room.member", user)? else {
                continue;
            };
            let mut content = current.content_value();
            match value {
                Some(v) => content[name] = json!(v),
                None => {
                    if let Some(o) = content.as_object_mut() {
                        o.remove(name);
                    }
                }
            }
            let template = EventTemplate {
                kind: "m.room.member".into(),
                state_key: Some(user.to_owned()),
                content,
                redacts: None,
            };
            if let Err(e) = self.send_event(&m.room_id, user, template, None).await {
                tracing::warn!(room = %m.room_id, error = ?e, "could not update membership profile");
            }
        }
        Ok(())
    }
}
