//! Typing, receipts, read markers and presence.

use super::{require_self, Hs, Resp};
use crate::error::MatrixError;
use crate::extract::{Auth, Json as Body};
use crate::{now_ms, Homeserver};
use axum::extract::Path;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use conifer_store::ReceiptRecord;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/rooms/:room/typing/:user", put(typing))
        .route("/rooms/:room/receipt/:kind/:event", post(receipt))
        .route("/rooms/:room/read_markers", post(read_markers))
        .route(
            "/presence/:user/status",
            get(get_presence).put(put_presence),
        )
}

async fn typing(
    hs: Hs,
    auth: Auth,
    Path((room, user)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    hs.require_joined(&room, &user)?;
    let typing = body
        .get("typing")
        .and_then(Value::as_bool)
        .ok_or_else(|| MatrixError::missing_param("typing"))?;
    let timeout = body
        .get("timeout")
        .and_then(Value::as_u64)
        .unwrap_or(30_000);
    hs.typing
        .set(&room, &user, typing.then(|| Duration::from_millis(timeout)));
    hs.federate_typing(&room, &user, typing);
    Ok(Json(json!({})))
}

fn put_receipt(
    hs: &Homeserver,
    auth: &Auth,
    room: &str,
    kind: &str,
    event: &str,
    thread: Option<&str>,
) -> crate::ApiResult<()> {
    if hs
        .store
        .event(event)?
        .filter(|e| e.room_id == room)
        .is_none()
    {
        return Err(MatrixError::not_found("unknown event in this room"));
    }
    hs.store.put_receipt(ReceiptRecord {
        room_id: room.to_owned(),
        user_id: auth.user_id.clone(),
        receipt_type: kind.to_owned(),
        thread_id: thread.unwrap_or("").to_owned(),
        event_id: event.to_owned(),
        ts: now_ms(),
        stream_pos: 0,
    })?;
    if kind == "m.read" {
        hs.federate_read_receipt(room, &auth.user_id, event, now_ms());
    }
    Ok(())
}

async fn receipt(
    hs: Hs,
    auth: Auth,
    Path((room, kind, event)): Path<(String, String, String)>,
    Body(body): Body<Value>,
) -> Resp {
    hs.require_joined(&room, &auth.user_id)?;
    let thread = body.get("thread_id").and_then(Value::as_str);
    match kind.as_str() {
        "m.read" | "m.read.private" => put_receipt(&hs, &auth, &room, &kind, &event, thread)?,
        "m.fully_read" => {
            hs.store.put_account_data(
                &auth.user_id,
                Some(&room),
                "m.fully_read",
                &json!({ "event_id": event }),
            )?;
        }
        _ => return Err(MatrixError::invalid_param("unknown receipt type")),
    }
    Ok(Json(json!({})))
}

async fn read_markers(
    hs: Hs,
    auth: Auth,
    Path(room): Path<String>,
    Body(body): Body<Value>,
) -> Resp {
    hs.require_joined(&room, &auth.user_id)?;
    if let Some(e) = body.get("m.fully_read").and_then(Value::as_str) {
        hs.store.put_account_data(
            &auth.user_id,
            Some(&room),
            "m.fully_read",
            &json!({ "event_id": e }),
        )?;
    }
    for kind in ["m.read", "m.read.private"] {
        if let Some(e) = body.get(kind).and_then(Value::as_str) {
            put_receipt(&hs, &auth, &room, kind, e, None)?;
        }
    }
    Ok(Json(json!({})))
}

async fn get_presence(hs: Hs, _auth: Auth, Path(user): Path<String>) -> Resp {
    super::user_id(&user)?;
    let p = hs.store.presence(&user)?;
    match p {
        Some(p) => {
            let mut out = json!({
                "presence": p.presence,
                "last_active_ago": now_ms().saturating_sub(p.last_active_ts),
                "currently_active": p.presence == "online",
            });
            if let Some(s) = p.status_msg {
                out["status_msg"] = json!(s);
            }
            Ok(Json(out))
        }
        None if hs.store.user(&user)?.is_some() => Ok(Json(json!({ "presence": "offline" }))),
        None => Err(MatrixError::not_found("unknown user")),
    }
}

async fn put_presence(
    hs: Hs,
    auth: Auth,
    Path(user): Path<String>,
    Body(body): Body<Value>,
) -> Resp {
    require_self(&auth, &user)?;
    let presence = body
        .get("presence")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("presence"))?;
    if !matches!(presence, "online" | "offline" | "unavailable") {
        return Err(MatrixError::invalid_param(
            "presence must be online, offline or unavailable",
        ));
    }
    let status_msg = body.get("status_msg").and_then(Value::as_str);
    hs.store
        .set_presence(&user, presence, status_msg, now_ms())?;
    hs.federate_presence(&user, presence, status_msg);
    Ok(Json(json!({})))
}
