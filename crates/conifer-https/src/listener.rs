//! The HTTP listeners: the Client-Server API in plain HTTP/1.1 (behind a
//! reverse proxy, or on loopback for the node's own apps) and the
//! Server-Server API over TLS. Both bound what a client can hold before it
//! has sent a request: the time to send the request head
//! ([`HttpLimits::header_read_timeout`]), the connections one address may
//! keep open, and the connections in all.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A connection that has not sent a whole request head this long after
    /// it opened (or after its previous response) is closed.
    pub header_read_timeout: Duration,
    /// Open connections from one address (an IPv6 /64 counts as one).
    pub max_connections_per_ip: usize,
    /// Whether loopback clients count per address too. Off by default: on
    /// loopback are a reverse proxy (every client behind it shares its
    /// address) and the apps of the machine itself.
    pub limit_loopback: bool,
    /// Open connections in all.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections_per_ip: 256,
            limit_loopback: false,
            max_connections: 8_192,
        }
    }
}

/// Counts open connections per source; a slot is given back on drop.
#[derive(Clone, Default)]
struct Connections {
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

struct Slot {
    connections: Connections,
    source: IpAddr,
}

/// IPv4 addresses as they are, IPv6 addresses by their /64: one host
/// usually holds a whole /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Connections {
    fn admit(&self, ip: IpAddr, limits: &HttpLimits) -> Option<Slot> {
        let source = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let here = open.1.get(&source).copied().unwrap_or(0);
        let per_ip_applies = limits.limit_loopback || !source.is_loopback();
        if open.0 >= limits.max_connections
            || (per_ip_applies && here >= limits.max_connections_per_ip)
        {
            return None;
        }
        open.0 += 1;
        *open.1.entry(source).or_insert(0) += 1;
        Some(Slot {
            connections: self.clone(),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.source);
            }
        }
    }
}

/// Serves `app` in plain HTTP/1.1 on `listener` until the task is dropped.
/// Handlers see the client's address as `ConnectInfo<SocketAddr>`, and
/// upgrades (WebSocket) work.
pub async fn serve_http(listener: tokio::net::TcpListener, app: axum::Router, limits: HttpLimits) {
    accept_loop(listener, app, limits, None).await
}

/// Serves `app` over TLS on `listener` until the task is dropped. The TLS
/// handshake is bounded in time, so silent clients cannot pile up.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<ServerConfig>,
    app: axum::Router,
    limits: HttpLimits,
) {
    accept_loop(listener, app, limits, Some(tls)).await
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    tls: Option<Arc<ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Connections::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off, do not spin.
                tracing::warn!(error = %e, "HTTP listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = connections.admit(peer.ip(), &limits) else {
            // Closed at once; a flood would flood the log too, so debug.
            tracing::debug!(%peer, "connection refused: too many open");
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            match acceptor {
                None => serve_connection(tcp, peer, app, &limits).await,
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    serve_connection(stream, peer, app, &limits).await
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, app: axum::Router, limits: &HttpLimits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&app, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_source_and_given_back() {
        let limits = HttpLimits {
            max_connections_per_ip: 2,
            max_connections: 3,
            limit_loopback: true,
            ..HttpLimits::default()
        };
        let c = Connections::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b2: IpAddr = "2001:db8::2".parse().unwrap();
        let s1 = c.admit(a, &limits).unwrap();
        let _s2 = c.admit(a, &limits).unwrap();
        assert!(c.admit(a, &limits).is_none(), "per address");
        let _s3 = c.admit(b, &limits).unwrap();
        assert!(c.admit(b2, &limits).is_none(), "in all");
        drop(s1);
        let _s4 = c.admit(b2, &limits).expect("a slot was given back");
        assert!(c.admit(a, &limits).is_none(), "in all, again");
        let many = HttpLimits {
            max_connections_per_ip: 1,
            ..HttpLimits::default()
        };
        let d = Connections::default();
        let _t = d.admit(b, &many).unwrap();
        assert!(d.admit(b2, &many).is_none(), "one /64 is one source");
        let proxied = HttpLimits {
            max_connections_per_ip: 1,
            ..HttpLimits::default()
        };
        let e = Connections::default();
        let _u = e.admit(a, &proxied).unwrap();
        assert!(
            e.admit(a, &proxied).is_some(),
            "loopback is not limited per address by default"
        );
    }
}
