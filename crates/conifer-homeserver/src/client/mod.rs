//! The Client-Server API as an axum router.
//!
//! Every endpoint is served under `/_matrix/client/v3` and, for older
//! clients such as Hydrogen, under the legacy `/_matrix/client/r0` too.
//! Unknown paths answer `M_UNRECOGNIZED` (404), wrong methods 405.

mod account;
mod account_data;
pub(crate) mod directory;
mod ephemeral;
mod events;
mod keys;
mod media;
mod membership;
mod misc;
mod profile;
mod pushrules;
mod search;
mod sliding_sync;
mod sync;

pub(crate) use crate::api::{require_self, room_id, user_id, Hs};
use crate::error::MatrixError;
use crate::Homeserver;
use axum::http::{header, Method};
use axum::Router;
use std::sync::Arc;
use tower_http::cors::{Any, CorsLayer};

pub type Resp = crate::ApiResult<axum::Json<serde_json::Value>>;

/// The versioned client API, shared by the v3 and r0 prefixes.
fn client_api() -> Router<Arc<Homeserver>> {
    Router::new()
        .merge(account::routes())
        .merge(account_data::routes())
        .merge(directory::routes())
        .merge(ephemeral::routes())
        .merge(events::routes())
        .merge(keys::routes())
        .merge(membership::routes())
        .merge(misc::routes())
        .merge(profile::routes())
        .merge(pushrules::routes())
        .merge(search::routes())
        .merge(sync::routes())
}

/// The whole client-facing HTTP surface of the homeserver.
pub fn router(hs: Arc<Homeserver>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            "x-requested-with".parse().unwrap(),
        ]);
    let api = client_api();
    let api = Router::new()
        .nest("/_matrix/client/v3", api.clone())
        .nest("/_matrix/client/r0", api)
        .nest(
            "/_matrix/client/v1",
            account::v1_routes()
                .merge(media::client_v1_routes())
                .merge(events::v1_routes()),
        )
        .nest(
            "/_matrix/client/unstable",
            misc::unstable_routes().merge(sliding_sync::routes()),
        )
        .nest("/_matrix/media/v3", media::legacy_routes())
        .nest("/_matrix/media/r0", media::legacy_routes())
        .nest("/_matrix/media/v1", media::legacy_routes())
        .merge(misc::root_routes())
        .nest("/_synapse/admin/v1", account::admin_routes())
        .fallback(|| async { MatrixError::unrecognized("unrecognized request") })
        .method_not_allowed_fallback(|| async { MatrixError::method_not_allowed() })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            hs.clone(),
            declared_size_limit,
        ))
        .layer(cors)
        .with_state(hs);
    crate::panic_guard::isolate_panics(api)
}

/// Refuses a request whose declared `Content-Length` is over the limit
/// (media uploads: `media.max_upload_bytes`; anything else:
/// `client.max_request_bytes`) with `413 M_TOO_LARGE` before reading any of
/// its body. Bodies without a declared length are still cut at the limit
/// as they are read.
async fn declared_size_limit(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = if req.uri().path().ends_with("/upload") || req.uri().path().contains("/upload/") {
        hs.config.media.max_upload_bytes
    } else {
        hs.config.client.max_request_bytes
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return MatrixError::too_large(format!("request body exceeds {limit} bytes"))
            .into_response();
    }
    next.run(req).await
}
