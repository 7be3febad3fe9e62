//! Profiles on Ruma's request and response types; the service side is
//! `crate::profile`.
//!
//! `displayname` and `avatar_url` have their own routes (and the spec's
//! older, nullable request types, so that a client can still clear them
//! with `null` or by leaving the key out); any other field goes through the
//! extensible `/profile/{userId}/{keyName}` types.

use super::{require_self, Hs};
use crate::error::MatrixError;
use crate::extract::Auth;
use crate::profile::ProfileField;
use crate::ruma_api::{Ruma, RumaResult};
use crate::Homeserver;
use axum::routing::get;
use axum::Router;
use conifer_rooms::ruma::api::client::profile::{
    get_avatar_url, get_display_name, get_profile, get_profile_field, set_avatar_url,
    set_display_name, set_profile_field,
};
use conifer_rooms::ruma::profile::ProfileFieldValue;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/profile/:user", get(profile))
        .route(
            "/profile/:user/displayname",
            get(get_displayname).put(put_displayname),
        )
        .route("/profile/:user/avatar_url", get(get_avatar).put(put_avatar))
        .route("/profile/:user/:field", get(get_field).put(put_field))
}

async fn profile(
    hs: Hs,
    Ruma(req): Ruma<get_profile::v3::Request>,
) -> RumaResult<get_profile::v3::Response> {
    let fields = hs.profile(req.user_id.as_str(), None).await?;
    Ok(fields
        .into_iter()
        .collect::<get_profile::v3::Response>()
        .into())
}

/// One field of a profile as a string, 404 when it is not set.
async fn field_str(hs: &Homeserver, user: &str, field: ProfileField) -> crate::ApiResult<String> {
    let fields = hs.profile(user, Some(field.name())).await?;
    match fields.get(field.name()) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(MatrixError::not_found("profile field not set")),
    }
}

async fn get_displayname(
    hs: Hs,
    Ruma(req): Ruma<get_display_name::v3::Request>,
) -> RumaResult<get_display_name::v3::Response> {
    let name = field_str(&hs, req.user_id.as_str(), ProfileField::DisplayName).await?;
    Ok(get_display_name::v3::Response::new(Some(name)).into())
}

async fn get_avatar(
    hs: Hs,
    Ruma(req): Ruma<get_avatar_url::v3::Request>,
) -> RumaResult<get_avatar_url::v3::Response> {
    let url = field_str(&hs, req.user_id.as_str(), ProfileField::AvatarUrl).await?;
    Ok(get_avatar_url::v3::Response::new(Some(url.into())).into())
}

async fn get_field(
    hs: Hs,
    Ruma(req): Ruma<get_profile_field::v3::Request>,
) -> RumaResult<get_profile_field::v3::Response> {
    let field = req.field.as_str();
    let fields = hs.profile(req.user_id.as_str(), Some(field)).await?;
    match fields.get(field) {
        Some(v) if !v.is_null() => {
            let value = ProfileFieldValue::new(field, v.clone()).map_err(|_| {
                MatrixError::not_found(format!("the profile's {field} is not of its type"))
            })?;
            Ok(get_profile_field::v3::Response::new(value).into())
        }
        _ => Err(MatrixError::not_found("profile field not set")),
    }
}

async fn put_displayname(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_display_name::v3::Request>,
) -> RumaResult<set_display_name::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    hs.set_profile_field(
        &auth.user_id,
        ProfileField::DisplayName,
        req.displayname.as_deref(),
    )
    .await?;
    Ok(set_display_name::v3::Response::new().into())
}

async fn put_avatar(
    hs: Hs,
    auth: Auth,
    Ruma(req): Ruma<set_avatar_url::v3::Request>,
) -> RumaResult<set_avatar_url::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    let url = req.avatar_url.as_ref().map(|u| u.as_str());
    hs.set_profile_field(&auth.user_id, ProfileField::AvatarUrl, url)
        .await?;
    Ok(set_avatar_url::v3::Response::new().into())
}

/// Other fields (`m.tz` and custom ones) are not stored.
async fn put_field(
    auth: Auth,
    Ruma(req): Ruma<set_profile_field::v3::Request>,
) -> RumaResult<set_profile_field::v3::Response> {
    require_self(&auth, req.user_id.as_str())?;
    Err(MatrixError::bad_json(format!(
        "only displayname and avatar_url can be set, not {}",
        req.value.field_name().as_str()
    )))
}
