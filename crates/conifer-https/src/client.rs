//! [`HttpsTransport`]: federation requests over HTTPS to servers found by
//! Matrix server discovery, with a small pool of kept-alive connections per
//! destination.

use crate::connect::{self, Sender};
use crate::ip_filter::IpFilter;
use crate::resolver::Resolver;
use crate::tls;
use bytes::Bytes;
use conifer_federation::{
    FederationRequest, FederationResponse, Transport, TransportError, TransportFuture,
};
use http_body_util::{BodyExt, Full, Limited};
use rustls::ClientConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest response accepted (a `send_join` answer carries a room's
/// whole state and auth chain).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long a request may take once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per destination.
const IDLE_PER_DESTINATION: usize = 4;

/// How the client reaches other servers.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// PEM files of extra certificate authorities to trust.
    pub trust_ca: Vec<PathBuf>,
    /// Server names whose certificates are not checked (test servers with
    /// self-signed certificates only).
    pub insecure_skip_verify: Vec<String>,
    /// CIDR ranges let through the private-address filter
    /// (for example `127.0.0.0/8` in tests).
    pub ip_range_allow: Vec<String>,
    /// If set, the only destinations requests go to; others fail at once,
    /// before any lookup.
    pub allowed_servers: Option<Vec<String>>,
}

pub struct HttpsTransport {
    resolver: Resolver,
    verifying: Arc<ClientConfig>,
    unverified: Arc<ClientConfig>,
    insecure: Vec<String>,
    allowed: Option<Vec<String>>,
    idle: Mutex<HashMap<String, Vec<Sender>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Range(#[from] crate::ip_filter::BadRange),
}

impl HttpsTransport {
    /// Must be called inside a tokio runtime (the DNS resolver spawns on it).
    pub fn new(settings: &ClientSettings) -> Result<Self, SettingsError> {
        let verifying = tls::verifying_client(&settings.trust_ca)?;
        let filter = IpFilter::new(&settings.ip_range_allow)?;
        Ok(HttpsTransport {
            resolver: Resolver::new(filter, verifying.clone()),
            verifying,
            unverified: tls::unverified_client()?,
            insecure: settings.insecure_skip_verify.clone(),
            allowed: settings.allowed_servers.clone(),
            idle: Mutex::new(HashMap::new()),
        })
    }

    async fn sender(&self, destination: &str) -> Result<(Sender, String), TransportError> {
        let target = self
            .resolver
            .target(destination)
            .await
            .map_err(TransportError::Unreachable)?;
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap()
                .get_mut(destination)
                .and_then(|v| v.pop());
            match pooled {
                Some(mut s) => {
                    if !s.is_closed() && s.ready().await.is_ok() {
                        return Ok((s, target.host_header));
                    }
                }
                None => break,
            }
        }
        let addrs = self
            .resolver
            .addresses(&target)
            .await
            .map_err(TransportError::Unreachable)?;
        let config = if self.insecure.iter().any(|d| d == destination) {
            self.unverified.clone()
        } else {
            self.verifying.clone()
        };
        let sender = connect::open(&addrs, &target.tls_name, config)
            .await
            .map_err(|e| TransportError::Unreachable(format!("{destination}: {e}")))?;
        Ok((sender, target.host_header))
    }

    fn keep(&self, destination: &str, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        let list = idle.entry(destination.to_owned()).or_default();
        if list.len() < IDLE_PER_DESTINATION {
            list.push(sender);
        }
    }

    async fn request(&self, r: FederationRequest) -> Result<FederationResponse, TransportError> {
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(&r.destination) {
                return Err(TransportError::Unreachable(format!(
                    "{} is not among federation.allowed_servers",
                    r.destination
                )));
            }
        }
        let (mut sender, host) = self.sender(&r.destination).await?;
        let mut request = hyper::Request::builder()
            .method(r.method.as_str())
            .uri(&r.uri)
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::USER_AGENT,
                concat!("Conifer/", env!("CARGO_PKG_VERSION")),
            );
        if r.body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(a) = &r.authorization {
            request = request.header(hyper::header::AUTHORIZATION, a);
        }
        let request = request
            .body(Full::new(Bytes::from(r.body.unwrap_or_default())))
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| TransportError::Io(format!("{}: {e}", r.destination)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| TransportError::Io(format!("{}: {e}", r.destination)))?
                .to_bytes();
            Ok::<_, TransportError>(FederationResponse {
                status,
                body: body.to_vec(),
            })
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| TransportError::Io(format!("{}: request timed out", r.destination)))??;
        self.keep(&r.destination, sender);
        Ok(response)
    }
}

impl Transport for HttpsTransport {
    fn send(&self, request: FederationRequest) -> TransportFuture<'_> {
        Box::pin(self.request(request))
    }
}
