//! How federation requests reach another server. Plain HTTPS (DNS names,
//! Synapse) and QUIC sessions through the overlay (P2P names) both implement
//! [`Transport`]; everything above it is the same.

use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone)]
pub struct FederationRequest {
    pub destination: String,
    pub method: String,
    /// Path and query, e.g. `/_matrix/federation/v1/send/123`.
    pub uri: String,
    pub body: Option<Vec<u8>>,
    /// The `Authorization: X-Matrix …` header value.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FederationResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Io(String),
}

pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FederationResponse, TransportError>> + Send + 'a>>;

/// Sends one request to a server and returns its answer.
pub trait Transport: Send + Sync {
    fn send(&self, request: FederationRequest) -> TransportFuture<'_>;
}
