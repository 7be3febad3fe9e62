//! Room aliases, the public room directory and the user directory on Ruma's
//! request and response types; the service side is `crate::directory` and
//! `crate::user_directory`.

use super::Hs;
use crate::directory::{PublicRoomsPage, PublicRoomsQuery};
use crate::error::MatrixError;
use crate::extract::{Auth, MaybeAuth};
use crate::ruma_api::{BodyDefaults, Ruma, RumaFilled, RumaResult};
use crate::Homeserver;
use axum::routing::{get, post};
use axum::Router;
use conifer_rooms::ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use conifer_rooms::ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use conifer_rooms::ruma::api::client::room::{aliases, Visibility};
use conifer_rooms::ruma::api::client::user_directory::search_users;
use conifer_rooms::ruma::{OwnedRoomAliasId, OwnedServerName, UInt};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) use crate::directory::check_canonical_alias;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route(
            "/directory/room/:alias",
            get(alias).put(put_alias).delete(remove_alias),
        )
        .route("/rooms/:room/aliases", get(room_aliases))
        .route(
            "/directory/list/room/:room",
            get(visibility).put(put_visibility),
        )
        .route(
            "/publicRooms",
            get(public_rooms_get).post(public_rooms_post),
        )
        .route("/user_directory/search", post(search))
}

async fn alias(
    hs: Hs,
    Ruma(req): Ruma<get_alias::v3::Request>,
) -> RumaResult<get_alias::v3::Response> {
    // Ours from the alias table, another server's by asking it.
    let target = hs.resolve_alias(req.room_alias.as_str()).await?;
    let room = target
        .room_id
        .try_into()
        .map_err(|_| MatrixError::not_found("room alias not found"))?;
    let servers = target
        .servers
        .iter()
        .filter_map(|s| s.as_str().try_into().ok())
        .collect();
    Ok(get_alias::v3::Response::new(room, servers).into())
}

async fn put_alias(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<create_alias::v3::Request>,
) -> RumaResult<create_alias::v3::Response> {
    hs.create_alias(&req.room_alias, req.room_id.as_str(), &auth.user_id)?;
    Ok(create_alias::v3::Response::new().into())
}

async fn remove_alias(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<delete_alias::v3::Request>,
) -> RumaResult<delete_alias::v3::Response> {
    hs.delete_alias(&req.room_alias, &auth.user_id).await?;
    Ok(delete_alias::v3::Response::new().into())
}

async fn room_aliases(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<aliases::v3::Request>,
) -> RumaResult<aliases::v3::Response> {
    let list = hs
        .room_aliases(req.room_id.as_str(), &auth.user_id)?
        .into_iter()
        .filter_map(|a| OwnedRoomAliasId::try_from(a).ok())
        .collect();
    Ok(aliases::v3::Response::new(list).into())
}

async fn visibility(
    hs: Hs,
    Ruma(req): Ruma<get_room_visibility::v3::Request>,
) -> RumaResult<get_room_visibility::v3::Response> {
    let visibility = if hs.room_published(req.room_id.as_str())? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(get_room_visibility::v3::Response::new(visibility).into())
}

/// "The new visibility setting for the room. Defaults to `public`." (Ruma's
/// type requires the key.)
impl BodyDefaults for set_room_visibility::v3::Request {
    fn fill(body: &mut serde_json::Map<String, Value>) {
        body.entry("visibility").or_insert_with(|| json!("public"));
    }
}

async fn put_visibility(
    hs: Hs,
    auth: Auth,
    RumaFilled(req): RumaFilled<set_room_visibility::v3::Request>,
) -> RumaResult<set_room_visibility::v3::Response> {
    let public = match req.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => {
            return Err(MatrixError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    hs.set_room_published(req.room_id.as_str(), &auth.user_id, public)?;
    Ok(set_room_visibility::v3::Response::new().into())
}

/// The server to ask, if it is another one.
fn remote<'a>(hs: &Homeserver, server: &'a Option<OwnedServerName>) -> Option<&'a str> {
    server
        .as_deref()
        .map(|s| s.as_str())
        .filter(|s| *s != hs.server_name.as_str())
}

fn uint(n: Option<UInt>) -> Option<u64> {
    n.map(u64::from)
}

async fn public_rooms_get(
    hs: Hs,
    _auth: MaybeAuth,
    Ruma(req): Ruma<get_public_rooms::v3::Request>,
) -> RumaResult<get_public_rooms::v3::Response> {
    let page = if let Some(server) = remote(&hs, &req.server) {
        let mut body = json!({});
        if let Some(l) = req.limit {
            body["limit"] = json!(l);
        }
        if let Some(s) = &req.since {
            body["since"] = json!(s);
        }
        hs.remote_public_rooms(server, body).await?
    } else {
        hs.public_rooms(&PublicRoomsQuery {
            limit: uint(req.limit),
            since: req.since,
            term: None,
        })?
    };
    let PublicRoomsPage {
        chunk,
        next_batch,
        prev_batch,
        total_room_count_estimate,
    } = page;
    let mut res = get_public_rooms::v3::Response::new(chunk);
    res.next_batch = next_batch;
    res.prev_batch = prev_batch;
    res.total_room_count_estimate = total_room_count_estimate;
    Ok(res.into())
}

async fn public_rooms_post(
    hs: Hs,
    _auth: Auth,
    Ruma(req): Ruma<get_public_rooms_filtered::v3::Request>,
) -> RumaResult<get_public_rooms_filtered::v3::Response> {
    let page = if let Some(server) = remote(&hs, &req.server) {
        let mut body = json!({});
        if let Some(l) = req.limit {
            body["limit"] = json!(l);
        }
        if let Some(s) = &req.since {
            body["since"] = json!(s);
        }
        if let Some(t) = &req.filter.generic_search_term {
            body["filter"] = json!({ "generic_search_term": t });
        }
        hs.remote_public_rooms(server, body).await?
    } else {
        hs.public_rooms(&PublicRoomsQuery {
            limit: uint(req.limit),
            since: req.since,
            term: req.filter.generic_search_term.map(|t| t.to_lowercase()),
        })?
    };
    let mut res = get_public_rooms_filtered::v3::Response::new();
    res.chunk = page.chunk;
    res.next_batch = page.next_batch;
    res.prev_batch = page.prev_batch;
    res.total_room_count_estimate = page.total_room_count_estimate;
    Ok(res.into())
}

async fn search(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<search_users::v3::Request>,
) -> RumaResult<search_users::v3::Response> {
    let limit = u64::from(req.limit).clamp(1, 100) as usize;
    let (found, limited) = hs.search_user_directory(&auth.user_id, &req.search_term, limit)?;
    let results = found
        .into_iter()
        .filter_map(|u| {
            let mut r = search_users::v3::User::new(u.user_id.as_str().try_into().ok()?);
            r.display_name = u.display_name;
            r.avatar_url = u.avatar_url.map(Into::into);
            Some(r)
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited).into())
}
