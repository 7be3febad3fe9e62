//! Panic isolation for the HTTP routers: a handler that panics answers
//! `500 M_UNKNOWN` and is logged with its method and path (never the query,
//! which may carry an access token); the server goes on serving. Shared
//! state uses `parking_lot` locks, which a panic does not poison.

use crate::error::MatrixError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

/// Wraps every route and fallback of `router` in the panic guard.
pub fn isolate_panics(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(guard))
}

async fn guard(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, path, panic = what, "request handler panicked");
            MatrixError::unknown_internal("internal error").into_response()
        }
    }
}
