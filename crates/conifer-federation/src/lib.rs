//! The parts of federation that need no network: server keys and their
//! self-signatures, X-Matrix request signing and verification, the key ring
//! that caches remote keys with their validity, the verify keys P2P server
//! names carry in themselves, and the transport trait that plain HTTPS and
//! QUIC-over-overlay implement. Signatures and canonical JSON are Ruma's.

#![forbid(unsafe_code)]

mod backoff;
mod base64;
mod inbound;
mod key_ring;
mod p2p;
mod request_auth;
mod server_keys;
mod transaction;
mod transport;

pub use backoff::Backoff;
pub use inbound::{
    decode_pdu, parse_transaction, DecodedPdu, InboundTransaction, TransactionError,
};
pub use key_ring::{KeyRing, VerifyKey};
pub use p2p::{p2p_verify_key, P2P_KEY_ID};
pub use request_auth::{parse_x_matrix, sign_request, verify_request, XMatrix, MAX_X_MATRIX_LEN};
pub use server_keys::{notary_sign, server_key_response, verify_server_key_response};
pub use transaction::{next_transaction, Queued, MAX_EDUS, MAX_PDUS};
pub use transport::{
    FederationRequest, FederationResponse, Transport, TransportError, TransportFuture,
};

/// What can be wrong with a signed request or a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(String),
    #[error("the request is addressed to {0}, not to us")]
    WrongDestination(String),
    #[error("no valid key {key} known for {server}")]
    UnknownKey { server: String, key: String },
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("bad key response: {0}")]
    BadKeyResponse(String),
}
