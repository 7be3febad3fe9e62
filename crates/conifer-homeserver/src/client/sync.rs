//! `GET /sync`.

use super::{Hs, Resp};
use crate::error::MatrixError;
use crate::extract::Auth;
use crate::sync::{sync, SyncFilter, SyncFilterParam, SyncRequest};
use crate::{now_ms, Homeserver};
use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/sync", get(sync_handler))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<String>,
    filter: Option<String>,
    #[serde(default)]
    full_state: bool,
    timeout: Option<u64>,
    set_presence: Option<String>,
}

async fn sync_handler(hs: Hs, auth: Auth, Query(q): Query<SyncQuery>) -> Resp {
    let filter = match q.filter.as_deref() {
        None => SyncFilter::default(),
        Some(f) => match SyncFilterParam::parse(f)? {
            SyncFilterParam::Inline(filter) => filter,
            SyncFilterParam::Id(id) => {
                let v = hs
                    .store
                    .filter(&auth.user_id, id)?
                    .ok_or_else(|| MatrixError::not_found("no such filter"))?;
                SyncFilter::from_json(&v)
            }
        },
    };
    match q.set_presence.as_deref() {
        Some("offline") => {}
        Some(p @ ("online" | "unavailable")) => set_presence_if_changed(&hs, &auth.user_id, p)?,
        None => set_presence_if_changed(&hs, &auth.user_id, "online")?,
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "set_presence must be online, offline or unavailable",
            ))
        }
    }
    let timeout = Duration::from_millis(
        q.timeout
            .unwrap_or(0)
            .min(hs.config.client.max_sync_timeout_ms),
    );
    let req = SyncRequest {
        since: q.since,
        full_state: q.full_state,
        timeout,
        filter,
    };
    Ok(Json(sync(&hs, &auth, req).await?))
}

/// Presence only moves the stream when it changes, so polling syncs do not
/// wake each other forever.
fn set_presence_if_changed(hs: &Homeserver, user: &str, presence: &str) -> crate::ApiResult<()> {
    let current = hs.store.presence(user)?;
    if current.as_ref().is_none_or(|p| p.presence != presence) {
        let status_msg = current.and_then(|p| p.status_msg);
        hs.store
            .set_presence(user, presence, status_msg.as_deref(), now_ms())?;
        hs.federate_presence(user, presence, status_msg.as_deref());
    }
    Ok(())
}
