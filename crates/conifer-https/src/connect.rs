//! Opening one HTTP/1.1-over-TLS connection to a resolved target.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// How long one TCP connect and TLS handshake may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the first of `addrs` that answers, then does the TLS
/// handshake for `tls_name` and the HTTP/1.1 handshake.
pub(crate) async fn open(
    addrs: &[SocketAddr],
    tls_name: &str,
    tls: Arc<ClientConfig>,
) -> Result<Sender, String> {
    let name = ServerName::try_from(tls_name.to_owned())
        .map_err(|e| format!("{tls_name:?} is not a TLS server name: {e}"))?;
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS with {addr}: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP with {addr}: {e}"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "federation connection closed");
                }
            });
            Ok::<_, String>(sender)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(sender)) => return Ok(sender),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("connect {addr}: timed out"),
        }
    }
    Err(last)
}
