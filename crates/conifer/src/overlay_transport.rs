//! Federation over the overlay: a P2P server name is the hex of its node's
//! key, so a federation request is HTTP/1.1 on a QUIC stream (ALPN `matrix`)
//! dialled to that key, as Dendrite's P2P demos do.

use bytes::Bytes;
use conifer_federation::{
    FederationRequest, FederationResponse, Transport, TransportError, TransportFuture,
};
use conifer_net::session::{http_request, Sessions};
use conifer_overlay::PublicKey;
use http_body_util::Full;

/// The ALPN of federation sessions.
pub const MATRIX_ALPN: &[u8] = b"matrix";

pub struct OverlayTransport {
    pub sessions: Sessions,
}

impl Transport for OverlayTransport {
    fn send(&self, r: FederationRequest) -> TransportFuture<'_> {
        Box::pin(async move {
            let key = PublicKey::from_hex(&r.destination).map_err(|_| {
                TransportError::Unreachable(format!("{} is not a P2P server name", r.destination))
            })?;
            let mut request = hyper::Request::builder()
                .method(r.method.as_str())
                .uri(&r.uri)
                .header(hyper::header::HOST, r.destination.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json");
            if let Some(a) = &r.authorization {
                request = request.header(hyper::header::AUTHORIZATION, a);
            }
            let request = request
                .body(Full::new(Bytes::from(r.body.unwrap_or_default())))
                .map_err(|e| TransportError::Io(e.to_string()))?;
            let response = http_request(&self.sessions, key, MATRIX_ALPN, request)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            Ok(FederationResponse {
                status: response.status().as_u16(),
                body: response.into_body().to_vec(),
            })
        })
    }
}
