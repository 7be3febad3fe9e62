//! Account data (global and per room), room tags and stored filters: the
//! rules the Client-Server API's handlers share.

use crate::error::{ApiResult, MatrixError};
use crate::Homeserver;
use serde_json::{json, Value};

/// Server-managed types a client may not overwrite through the account
/// data API.
fn check_settable(kind: &str) -> ApiResult<()> {
    if kind == "m.fully_read" || kind == "m.push_rules" {
        return Err(MatrixError::bad_json(format!(
            "{kind} cannot be set through account data"
        )));
    }
    Ok(())
}

impl Homeserver {
    /// Stores a filter (checked by the caller as `/sync` needs it); its ID.
    pub(crate) fn create_filter(&self, user: &str, filter: &Value) -> ApiResult<String> {
        Ok(self.store.create_filter(user, filter)?.to_string())
    }

    /// A stored filter of the user's: 404 for an ID that is not one.
    pub(crate) fn filter(&self, user: &str, id: &str) -> ApiResult<Value> {
        let id: u64 = id
            .parse()
            .map_err(|_| MatrixError::not_found("no such filter"))?;
        self.store
            .filter(user, id)?
            .ok_or_else(|| MatrixError::not_found("no such filter"))
    }

    /// The content of account data of one type, global or of a room.
    pub(crate) fn account_data(
        &self,
        user: &str,
        room: Option<&str>,
        kind: &str,
    ) -> ApiResult<Value> {
        self.store
            .account_data(user, room, kind)?
            .ok_or_else(|| MatrixError::not_found("no account data of that type"))
    }

    /// Sets account data a client may set (not the server-managed types);
    /// the content must be a JSON object.
    pub(crate) fn set_account_data(
        &self,
        user: &str,
        room: Option<&str>,
        kind: &str,
        content: &Value,
    ) -> ApiResult<()> {
        check_settable(kind)?;
        if !content.is_object() {
            return Err(MatrixError::bad_json("account data must be a JSON object"));
        }
        self.store.put_account_data(user, room, kind, content)?;
        Ok(())
    }

    /// The room's `m.tag` content for the user: `{"tags": {…}}`.
    pub(crate) fn tags(&self, user: &str, room: &str) -> ApiResult<Value> {
        let mut tags = self
            .store
            .account_data(user, Some(room), "m.tag")?
            .unwrap_or_else(|| json!({ "tags": {} }));
        if !tags.get("tags").is_some_and(Value::is_object) {
            tags = json!({ "tags": {} });
        }
        Ok(tags)
    }

    /// Adds or replaces one tag of a room.
    pub(crate) fn set_tag(&self, user: &str, room: &str, tag: &str, info: Value) -> ApiResult<()> {
        let mut tags = self.tags(user, room)?;
        tags["tags"][tag] = info;
        self.store
            .put_account_data(user, Some(room), "m.tag", &tags)?;
        Ok(())
    }

    /// Removes one tag of a room (none is no error).
    pub(crate) fn delete_tag(&self, user: &str, room: &str, tag: &str) -> ApiResult<()> {
        let mut tags = self.tags(user, room)?;
        if let Some(t) = tags["tags"].as_object_mut() {
            t.remove(tag);
        }
        self.store
            .put_account_data(user, Some(room), "m.tag", &tags)?;
        Ok(())
    }
}
