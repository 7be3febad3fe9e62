//! Versions, capabilities, well-known and the few unstable endpoints clients probe.

use super::{Hs, Resp};
use crate::{Auth, MatrixError};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn root_routes() -> Router<Arc<crate::Homeserver>> {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/.well-known/matrix/client", get(well_known))
}

pub fn routes() -> Router<Arc<crate::Homeserver>> {
    Router::new()
        .route("/capabilities", get(capabilities))
        .route("/account/3pid", get(no_threepids))
        .route("/thirdparty/protocols", get(no_protocols))
        .route("/voip/turnServer", get(no_turn_server))
        .route("/pushers", get(no_pushers))
}

/// Conifer binds no e-mail addresses or phone numbers to accounts.
async fn no_threepids(_auth: Auth) -> Resp {
    Ok(Json(json!({ "threepids": [] })))
}

/// No application-service bridges are configured.
async fn no_protocols(_auth: Auth) -> Resp {
    Ok(Json(json!({})))
}

/// No TURN server is configured (an empty object, as Synapse answers then).
async fn no_turn_server(_auth: Auth) -> Resp {
    Ok(Json(json!({})))
}

/// Push gateways are not supported yet, so no pusher is ever registered.
async fn no_pushers(_auth: Auth) -> Resp {
    Ok(Json(json!({ "pushers": [] })))
}

pub fn unstable_routes() -> Router<Arc<crate::Homeserver>> {
    Router::new().route(
        "/org.matrix.msc2697.v2/dehydrated_device",
        get(no_dehydrated_device),
    )
}

async fn versions() -> Resp {
    Ok(Json(json!({
        "versions": ["r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"],
        "unstable_features": { "org.matrix.msc2432": true, "org.matrix.e2e_cross_signing": true, "org.matrix.simplified_msc3575": true }
    })))
}

async fn well_known(hs: Hs) -> Resp {
    Ok(Json(
        json!({ "m.homeserver": { "base_url": hs.config.client_base_url() } }),
    ))
}

async fn capabilities(hs: Hs, _auth: Auth) -> Resp {
    let available: serde_json::Map<_, _> = conifer_rooms::SUPPORTED_VERSIONS
        .iter()
        .map(|v| (v.to_string(), json!("stable")))
        .collect();
    Ok(Json(json!({ "capabilities": {
        "m.change_password": { "enabled": true },
        "m.room_versions": { "default": hs.config.rooms.default_version, "available": available },
        "m.set_displayname": { "enabled": true },
        "m.set_avatar_url": { "enabled": true },
        "m.3pid_changes": { "enabled": false },
        "m.get_login_token": { "enabled": true },
    }})))
}

async fn no_dehydrated_device(_auth: Auth) -> Resp {
    Err(MatrixError::not_found("no dehydrated device"))
}
