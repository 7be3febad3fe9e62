//! The Server-Server API surface (growing): key publication, the version
//! endpoint, X-Matrix authentication of every inbound request, and the
//! profile query. Outbound requests go through the embedder's
//! [`conifer_federation::Transport`].

mod auth;
pub(crate) mod e2ee;
mod edus;
mod gaps;
mod history;
mod ingest;
mod invite;
pub(crate) mod join;
mod join_out;
mod keys;
mod media;
mod query;
mod receive;
mod sender;

pub(crate) use sender::{SenderHandle, Signal};

pub use auth::FederationAuth;

use crate::error::MatrixError;
use crate::Homeserver;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// The routes other servers call.
pub fn router(hs: Arc<Homeserver>) -> Router {
    let api = Router::new()
        .route("/_matrix/key/v2/server", get(keys::server_keys))
        .route("/_matrix/key/v2/server/:key_id", get(keys::server_keys))
        .route("/_matrix/key/v2/query", axum::routing::post(keys::query))
        .route("/_matrix/key/v2/query/:server", get(keys::query_one))
        .route("/_matrix/federation/v1/event/:event", get(history::event))
        .route("/_matrix/federation/v1/state/:room", get(history::state))
        .route(
            "/_matrix/federation/v1/state_ids/:room",
            get(history::state_ids),
        )
        .route(
            "/_matrix/federation/v1/event_auth/:room/:event",
            get(history::event_auth),
        )
        .route(
            "/_matrix/federation/v1/backfill/:room",
            get(history::backfill),
        )
        .route(
            "/_matrix/federation/v1/get_missing_events/:room",
            axum::routing::post(history::get_missing_events),
        )
        .route(
            "/_matrix/federation/v1/make_leave/:room/:user",
            get(join::make_leave),
        )
        .route(
            "/_matrix/federation/v2/send_leave/:room/:event",
            axum::routing::put(join::send_leave),
        )
        .route(
            "/_matrix/federation/v1/make_join/:room/:user",
            get(join::make_join),
        )
        .route(
            "/_matrix/federation/v2/send_join/:room/:event",
            axum::routing::put(join::send_join),
        )
        .route(
            "/_matrix/federation/v1/make_knock/:room/:user",
            get(join::make_knock),
        )
        .route(
            "/_matrix/federation/v1/send_knock/:room/:event",
            axum::routing::put(join::send_knock),
        )
        .route(
            "/_matrix/federation/v2/invite/:room/:event",
            axum::routing::put(invite::invite_v2),
        )
        .route("/_matrix/federation/v1/version", get(version))
        .route(
            "/_matrix/federation/v1/media/download/:media_id",
            get(media::download),
        )
        .route(
            "/_matrix/federation/v1/send/:txn",
            axum::routing::put(receive::send_transaction),
        )
        .route("/_matrix/federation/v1/query/profile", get(query::profile))
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(query::public_rooms_get).post(query::public_rooms_post),
        )
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query::directory),
        )
        .route(
            "/_matrix/federation/v1/user/devices/:user",
            get(query::user_devices),
        )
        .route(
            "/_matrix/federation/v1/user/keys/query",
            axum::routing::post(query::keys_query),
        )
        .route(
            "/_matrix/federation/v1/user/keys/claim",
            axum::routing::post(query::keys_claim),
        )
        .fallback(|| async { MatrixError::unrecognized("unrecognized request") })
        .method_not_allowed_fallback(|| async { MatrixError::method_not_allowed() })
        .with_state(hs);
    crate::panic_guard::isolate_panics(api)
}

/// A path segment of a federation URI (room, event and user IDs).
pub(crate) fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({ "server": { "name": "Conifer", "version": env!("CARGO_PKG_VERSION") } }))
}
