//! Versions, capabilities, well-known and the few endpoints clients probe,
//! on Ruma's request and response types where the response can be said in
//! them.

use super::{Hs, Resp};
use crate::ruma_api::{Ruma, RumaResult};
use crate::{Auth, MatrixError};
use axum::routing::get;
use axum::{Json, Router};
use conifer_rooms::ruma::api::client::account::get_3pids;
use conifer_rooms::ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ChangePasswordCapability, GetLoginTokenCapability, RoomVersionStability,
    RoomVersionsCapability, ThirdPartyIdChangesCapability,
};
use conifer_rooms::ruma::api::client::discovery::{
    discover_homeserver, get_capabilities, get_supported_versions,
};
use conifer_rooms::ruma::api::client::push::get_pushers;
use conifer_rooms::ruma::api::client::thirdparty::get_protocols;
use conifer_rooms::ruma::RoomVersionId;
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
async fn no_threepids(
    _auth: Auth,
    Ruma(_): Ruma<get_3pids::v3::Request>,
) -> RumaResult<get_3pids::v3::Response> {
    Ok(get_3pids::v3::Response::new(Vec::new()).into())
}

/// No application-service bridges are configured.
async fn no_protocols(
    _auth: Auth,
    Ruma(_): Ruma<get_protocols::v3::Request>,
) -> RumaResult<get_protocols::v3::Response> {
    Ok(get_protocols::v3::Response::new(Default::default()).into())
}

/// No TURN server is configured: an empty object, as Synapse answers then.
/// (Ruma's response type requires the credentials of a TURN server, so this
/// one stays plain JSON.)
async fn no_turn_server(_auth: Auth) -> Resp {
    Ok(Json(json!({})))
}

/// Push gateways are not supported yet, so no pusher is ever registered.
async fn no_pushers(
    _auth: Auth,
    Ruma(_): Ruma<get_pushers::v3::Request>,
) -> RumaResult<get_pushers::v3::Response> {
    Ok(get_pushers::v3::Response::new(Vec::new()).into())
}

pub fn unstable_routes() -> Router<Arc<crate::Homeserver>> {
    Router::new().route(
        "/org.matrix.msc2697.v2/dehydrated_device",
        get(no_dehydrated_device),
    )
}

/// The spec versions Conifer speaks.
const VERSIONS: [&str; 14] = [
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
    "v1.9", "v1.10", "v1.11",
];

async fn versions(
    Ruma(_): Ruma<get_supported_versions::Request>,
) -> RumaResult<get_supported_versions::Response> {
    let mut res =
        get_supported_versions::Response::new(VERSIONS.iter().map(|v| v.to_string()).collect());
    res.unstable_features = [
        ("org.matrix.msc2432".to_owned(), true),
        ("org.matrix.e2e_cross_signing".to_owned(), true),
        ("org.matrix.simplified_msc3575".to_owned(), true),
    ]
    .into();
    Ok(res.into())
}

async fn well_known(
    hs: Hs,
    Ruma(_): Ruma<discover_homeserver::Request>,
) -> RumaResult<discover_homeserver::Response> {
    Ok(
        discover_homeserver::Response::new(discover_homeserver::HomeserverInfo::new(
            hs.config.client_base_url(),
        ))
        .into(),
    )
}

/// What clients may do here. Ruma leaves out a capability at its default,
/// which the spec lets a client assume: `m.change_password`,
/// `m.set_displayname` and `m.set_avatar_url` are enabled.
async fn capabilities(
    hs: Hs,
    _auth: Auth,
    Ruma(_): Ruma<get_capabilities::v3::Request>,
) -> RumaResult<get_capabilities::v3::Response> {
    let version = |v: &str| {
        RoomVersionId::try_from(v)
            .map_err(|_| MatrixError::unknown_internal(format!("bad room version {v}")))
    };
    let available = conifer_rooms::SUPPORTED_VERSIONS
        .iter()
        .map(|v| Ok((version(v)?, RoomVersionStability::Stable)))
        .collect::<crate::ApiResult<_>>()?;
    let mut caps = Capabilities::new();
    caps.change_password = ChangePasswordCapability::new(true);
    caps.room_versions =
        RoomVersionsCapability::new(version(&hs.config.rooms.default_version)?, available);
    caps.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    caps.get_login_token = GetLoginTokenCapability::new(true);
    Ok(get_capabilities::v3::Response::new(caps).into())
}

/// Dehydrated devices (an unstable feature Ruma's types here do not
/// include) are not kept.
async fn no_dehydrated_device(_auth: Auth) -> Resp {
    Err(MatrixError::not_found("no dehydrated device"))
}
