//! Typing, receipts, read markers and presence on Ruma's request and
//! response types; the service side is `crate::ephemeral`.

use super::{require_self, Hs};
use crate::error::MatrixError;
use crate::extract::Auth;
use crate::ruma_api::{BodyDefaults, Ruma, RumaFilled, RumaResult};
use crate::Homeserver;
use axum::routing::{get, post, put};
use axum::Router;
use conifer_rooms::ruma::api::client::presence::{get_presence, set_presence};
use conifer_rooms::ruma::api::client::read_marker::set_read_marker;
use conifer_rooms::ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};
use conifer_rooms::ruma::api::client::typing::create_typing_event::{self, v3::Typing};
use conifer_rooms::ruma::events::receipt::ReceiptThread;
use conifer_rooms::ruma::presence::PresenceState;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/rooms/:room/typing/:user", put(typing))
        .route("/rooms/:room/receipt/:kind/:event", post(receipt))
        .route("/rooms/:room/read_markers", post(read_markers))
        .route("/presence/:user/status", get(presence).put(put_presence))
}

/// How long a typing notification lasts when the client gives no
/// `timeout`.
const DEFAULT_TYPING_MS: u64 = 30_000;

/// The spec requires only `typing`; Ruma's type wants a `timeout` with
/// `typing: true`.
impl BodyDefaults for create_typing_event::v3::Request {
    fn fill(body: &mut serde_json::Map<String, Value>) {
        body.entry("timeout")
            .or_insert_with(|| json!(DEFAULT_TYPING_MS));
    }
}

async fn typing(
    hs: Hs,
    auth: Auth,
    RumaFilled(req): RumaFilled<create_typing_event::v3::Request>,
) -> RumaResult<create_typing_event::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let timeout = match req.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    hs.set_typing(req.room_id.as_str(), &auth.user_id, timeout)?;
    Ok(create_typing_event::v3::Response::new().into())
}

async fn receipt(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<create_receipt::v3::Request>,
) -> RumaResult<create_receipt::v3::Response> {
    let room = req.room_id.as_str();
    hs.require_joined(room, &auth.user_id)?;
    let thread = match &req.thread {
        ReceiptThread::Unthreaded => None,
        other => other.as_str(),
    };
    match req.receipt_type {
        ReceiptType::Read | ReceiptType::ReadPrivate => hs.put_receipt(
            room,
            &auth.user_id,
            req.receipt_type.as_str(),
            req.event_id.as_str(),
            thread,
        )?,
        ReceiptType::FullyRead => hs.set_fully_read(room, &auth.user_id, req.event_id.as_str())?,
        _ => return Err(MatrixError::invalid_param("unknown receipt type")),
    }
    Ok(create_receipt::v3::Response::new().into())
}

async fn read_markers(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_read_marker::v3::Request>,
) -> RumaResult<set_read_marker::v3::Response> {
    let room = req.room_id.as_str();
    hs.require_joined(room, &auth.user_id)?;
    if let Some(e) = &req.fully_read {
        hs.set_fully_read(room, &auth.user_id, e.as_str())?;
    }
    for (kind, event) in [
        ("m.read", &req.read_receipt),
        ("m.read.private", &req.private_read_receipt),
    ] {
        if let Some(e) = event {
            hs.put_receipt(room, &auth.user_id, kind, e.as_str(), None)?;
        }
    }
    Ok(set_read_marker::v3::Response::new().into())
}

async fn presence(
    hs: Hs,
    _auth: Auth,
    Ruma(req): Ruma<get_presence::v3::Request>,
) -> RumaResult<get_presence::v3::Response> {
    let p = hs.presence(req.user_id.as_str())?;
    let mut res = get_presence::v3::Response::new(PresenceState::from(p.presence.as_str()));
    res.status_msg = p.status_msg;
    res.currently_active = p.currently_active;
    res.last_active_ago = p.last_active_ago.map(Duration::from_millis);
    Ok(res.into())
}

async fn put_presence(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_presence::v3::Request>,
) -> RumaResult<set_presence::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    hs.set_presence(
        &auth.user_id,
        req.presence.as_str(),
        req.status_msg.as_deref(),
    )?;
    Ok(set_presence::v3::Response::new().into())
}
