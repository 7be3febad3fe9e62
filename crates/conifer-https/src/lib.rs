//! Federation over ordinary HTTPS, for servers with DNS names or IP
//! literals (Synapse, classic homeservers, a gateway's outer side). P2P
//! names go through the overlay instead; both implement
//! [`conifer_federation::Transport`].
//!
//! - [`discovery`]: the spec's server-name resolution as a state machine
//!   without I/O; [`resolver`] runs it with hickory DNS and HTTPS.
//! - [`HttpsTransport`]: the pooled TLS client.
//! - [`serve_tls`]: the Server-Server API's TLS listener.

#![forbid(unsafe_code)]

mod client;
mod connect;
pub mod discovery;
pub mod ip_filter;
mod listener;
mod resolver;
pub mod tls;

pub use client::{ClientSettings, HttpsTransport, SettingsError};
pub use listener::{serve_http, serve_tls, HttpLimits};
pub use tls::{server_config, ServerCertificate};
