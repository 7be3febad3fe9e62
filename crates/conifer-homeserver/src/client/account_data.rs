//! Filters, account data (global and per room) and room tags on Ruma's
//! request and response types; the service side is `crate::account_data`.

use super::{require_self, Hs};
use crate::error::MatrixError;
use crate::extract::Auth;
use crate::ruma_api::{Ruma, RumaResult};
use axum::routing::{get, post, put};
use axum::Router;
use conifer_rooms::ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use conifer_rooms::ruma::api::client::filter::{create_filter, get_filter};
use conifer_rooms::ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use conifer_rooms::ruma::serde::Raw;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

pub fn routes() -> Router<Arc<crate::Homeserver>> {
    Router::new()
        .route("/user/:user/filter", post(post_filter))
        .route("/user/:user/filter/:id", get(filter))
        .route(
            "/user/:user/account_data/:kind",
            get(get_global).put(put_global),
        )
        .route(
            "/user/:user/rooms/:room/account_data/:kind",
            get(get_room).put(put_room),
        )
        .route("/user/:user/rooms/:room/tags", get(tags))
        .route(
            "/user/:user/rooms/:room/tags/:tag",
            put(put_tag).delete(remove_tag),
        )
}

/// A typed value as JSON (the store keeps JSON).
fn to_json<T: Serialize>(t: &T) -> crate::ApiResult<Value> {
    serde_json::to_value(t).map_err(|e| MatrixError::bad_json(e.to_string()))
}

/// Stored JSON read back as the response's type; stored data that does not
/// fit it is reported as not found rather than as a server error.
fn from_json<T: DeserializeOwned>(v: Value) -> crate::ApiResult<T> {
    serde_json::from_value(v)
        .map_err(|e| MatrixError::not_found(format!("the stored data is not readable: {e}")))
}

/// Raw JSON content as a value.
fn raw_json<T>(raw: &Raw<T>) -> crate::ApiResult<Value> {
    serde_json::from_str(raw.json().get()).map_err(|e| MatrixError::bad_json(e.to_string()))
}

/// A value as raw JSON content.
fn to_raw<T>(v: &Value) -> crate::ApiResult<Raw<T>> {
    serde_json::value::to_raw_value(v)
        .map(Raw::from_json)
        .map_err(|e| MatrixError::unknown_internal(e.to_string()))
}

async fn post_filter(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<create_filter::v3::Request>,
) -> RumaResult<create_filter::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let filter = to_json(&req.filter)?;
    super::sync::validate_filter(&filter)?;
    let id = hs.create_filter(&auth.user_id, &filter)?;
    Ok(create_filter::v3::Response::new(id).into())
}

async fn filter(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_filter::v3::Request>,
) -> RumaResult<get_filter::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let filter = hs.filter(&auth.user_id, &req.filter_id)?;
    Ok(get_filter::v3::Response::new(from_json(filter)?).into())
}

async fn get_global(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_global_account_data::v3::Request>,
) -> RumaResult<get_global_account_data::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let content = hs.account_data(&auth.user_id, None, &req.event_type.to_string())?;
    Ok(get_global_account_data::v3::Response::new(to_raw(&content)?).into())
}

async fn put_global(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_global_account_data::v3::Request>,
) -> RumaResult<set_global_account_data::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let content = raw_json(&req.data)?;
    hs.set_account_data(&auth.user_id, None, &req.event_type.to_string(), &content)?;
    Ok(set_global_account_data::v3::Response::new().into())
}

async fn get_room(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_room_account_data::v3::Request>,
) -> RumaResult<get_room_account_data::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let content = hs.account_data(
        &auth.user_id,
        Some(req.room_id.as_str()),
        &req.event_type.to_string(),
    )?;
    Ok(get_room_account_data::v3::Response::new(to_raw(&content)?).into())
}

async fn put_room(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_room_account_data::v3::Request>,
) -> RumaResult<set_room_account_data::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let content = raw_json(&req.data)?;
    hs.set_account_data(
        &auth.user_id,
        Some(req.room_id.as_str()),
        &req.event_type.to_string(),
        &content,
    )?;
    Ok(set_room_account_data::v3::Response::new().into())
}

async fn tags(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<get_tags::v3::Request>,
) -> RumaResult<get_tags::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let tags = hs.tags(&auth.user_id, req.room_id.as_str())?;
    Ok(get_tags::v3::Response::new(from_json(tags["tags"].clone())?).into())
}

async fn put_tag(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<create_tag::v3::Request>,
) -> RumaResult<create_tag::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let info = to_json(&req.tag_info)?;
    hs.set_tag(&auth.user_id, req.room_id.as_str(), &req.tag, info)?;
    Ok(create_tag::v3::Response::new().into())
}

async fn remove_tag(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<delete_tag::v3::Request>,
) -> RumaResult<delete_tag::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    hs.delete_tag(&auth.user_id, req.room_id.as_str(), &req.tag)?;
    Ok(delete_tag::v3::Response::new().into())
}
