//! What both API layers (the Client-Server API in `client/` and the
//! Server-Server API in `federation/`) share: the homeserver handle as an
//! axum state, and the parsers and checks of identifiers that are not
//! specific to either.

use crate::error::MatrixError;
use crate::Homeserver;
use std::sync::Arc;

/// The homeserver handle every handler takes.
pub type Hs = axum::extract::State<Arc<Homeserver>>;

/// Parses a user ID from a path, `M_INVALID_PARAM` otherwise.
pub(crate) fn user_id(s: &str) -> crate::ApiResult<conifer_rooms::ruma::OwnedUserId> {
    conifer_rooms::ruma::OwnedUserId::try_from(s)
        .map_err(|_| MatrixError::invalid_param(format!("{s:?} is not a user ID")))
}

/// Parses a room ID from a path, `M_INVALID_PARAM` otherwise.
pub(crate) fn room_id(s: &str) -> crate::ApiResult<conifer_rooms::ruma::OwnedRoomId> {
    conifer_rooms::ruma::OwnedRoomId::try_from(s)
        .map_err(|_| MatrixError::invalid_param(format!("{s:?} is not a room ID")))
}

/// Only the user itself may touch its own resources.
pub(crate) fn require_self(auth: &crate::Auth, user: &str) -> crate::ApiResult<()> {
    if auth.user_id == user {
        Ok(())
    } else {
        Err(MatrixError::forbidden("you can only access your own data"))
    }
}
