//! HTTP/1.1 over session streams (not HTTP/3), as Dendrite's P2P demo speaks
//! federation: one request/response exchange per QUIC stream.

use bytes::Bytes;
use conifer_overlay::PublicKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

use super::{SessionError, Sessions};

/// Serves `router` to every stream opened to us with protocol `alpn`.
pub fn serve_router(sessions: &Sessions, alpn: &[u8], router: axum::Router) {
    let mut incoming = sessions.listen(alpn);
    sessions.inner.node.spawn_until_stopped(async move {
        while let Some(s) = incoming.recv().await {
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let io = TokioIo::new(tokio::io::join(s.recv, s.send));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(peer = %s.peer, error = %e, "HTTP over session failed");
                }
            });
        }
    });
}

/// Why an HTTP exchange over a session failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// Sends one request to `key` over a fresh stream and reads the whole response.
pub async fn http_request(
    sessions: &Sessions,
    key: PublicKey,
    alpn: &[u8],
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, HttpError> {
    let (send, recv) = sessions.dial(key, alpn).await?;
    let io = TokioIo::new(tokio::io::join(recv, send));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response: Response<Incoming> = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
