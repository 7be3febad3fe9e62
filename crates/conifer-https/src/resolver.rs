//! The I/O around [`crate::discovery`]: `.well-known` over HTTPS, SRV and
//! A/AAAA through hickory, the outbound IP filter, and a cache of
//! resolved targets.

use crate::connect;
use crate::discovery::{parse_well_known, Discovery, Host, ServerName, SrvRecord, Step, Target};
use crate::ip_filter::IpFilter;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls::ClientConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a discovered target is reused (the spec's default for
/// `.well-known` answers), and how long a failed `.well-known` is.
const TARGET_TTL: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;
const WELL_KNOWN_REDIRECTS: usize = 3;

pub(crate) struct Resolver {
    /// `None` when the system has no resolver configuration: DNS names then
    /// fail to resolve, IP literals still work.
    dns: Option<hickory_resolver::TokioResolver>,
    filter: IpFilter,
    verifying: Arc<ClientConfig>,
    cache: Mutex<HashMap<String, (Target, Instant)>>,
}

impl Resolver {
    pub(crate) fn new(filter: IpFilter, verifying: Arc<ClientConfig>) -> Self {
        let dns = match hickory_resolver::Resolver::builder_tokio() {
            Ok(b) => Some(b.build()),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS configuration; only IP-literal server names resolve");
                None
            }
        };
        Resolver {
            dns,
            filter,
            verifying,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Where `server_name` is served.
    pub(crate) async fn target(&self, server_name: &str) -> Result<Target, String> {
        let name = ServerName::parse(server_name).map_err(|e| e.to_string())?;
        if let Some((t, until)) = self.cache.lock().unwrap().get(server_name) {
            if *until > Instant::now() {
                return Ok(t.clone());
            }
        }
        let (mut discovery, mut step) = Discovery::start(&name);
        let target = loop {
            step = match step {
                Step::Done(t) => break t,
                Step::FetchWellKnown(host) => {
                    let m_server = self.well_known(&host).await;
                    discovery.on_well_known(m_server.as_deref())
                }
                Step::LookupSrv(names) => break discovery.on_srv(&self.srv(&names).await),
            };
        };
        if name.port.is_none() && matches!(name.host, Host::Domain(_)) {
            self.cache.lock().unwrap().insert(
                server_name.to_owned(),
                (target.clone(), Instant::now() + TARGET_TTL),
            );
        }
        Ok(target)
    }

    /// The addresses of a target that the IP filter lets us connect to.
    pub(crate) async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        let ips = match &target.connect {
            Host::Ip(ip) => vec![*ip],
            Host::Domain(d) => {
                let dns = self.dns.as_ref().ok_or("no DNS resolver configured")?;
                dns.lookup_ip(d.as_str())
                    .await
                    .map_err(|e| format!("cannot resolve {d}: {e}"))?
                    .iter()
                    .collect()
            }
        };
        let allowed: Vec<SocketAddr> = ips
            .iter()
            .filter(|ip| self.filter.permits(**ip))
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect();
        if allowed.is_empty() && !ips.is_empty() {
            return Err(format!(
                "{} resolves only to addresses outbound federation may not use ({ips:?}); \
                 allow them with federation.ip_range_allow",
                target.connect.to_name()
            ));
        }
        Ok(allowed)
    }

    async fn srv(&self, names: &[String]) -> Vec<SrvRecord> {
        let Some(dns) = &self.dns else {
            return Vec::new();
        };
        for name in names {
            let Ok(answer) = dns.srv_lookup(name.as_str()).await else {
                continue;
            };
            let mut records: Vec<_> = answer.iter().collect();
            // Lowest priority first; within one, heaviest first (weighted
            // random choice would spread load, but one order keeps retries
            // on the same server).
            records.sort_by_key(|r| (r.priority(), std::cmp::Reverse(r.weight())));
            let records: Vec<SrvRecord> = records
                .into_iter()
                .filter(|r| r.target().to_string() != ".")
                .map(|r| SrvRecord {
                    target: r.target().to_string(),
                    port: r.port(),
                })
                .collect();
            if !records.is_empty() {
                return records;
            }
        }
        Vec::new()
    }

    /// `m.server` from `https://{host}/.well-known/matrix/server`, following
    /// a few redirects; `None` on any failure.
    async fn well_known(&self, host: &str) -> Option<String> {
        let mut url: hyper::Uri = format!("https://{host}/.well-known/matrix/server")
            .parse()
            .ok()?;
        for _ in 0..=WELL_KNOWN_REDIRECTS {
            let authority = url.authority()?.clone();
            let target = Target {
                connect: ServerName::parse(authority.host()).ok()?.host,
                port: authority.port_u16().unwrap_or(443),
                host_header: authority.to_string(),
                tls_name: authority.host().trim_matches(['[', ']']).to_owned(),
            };
            let addrs = self.addresses(&target).await.ok()?;
            let mut sender = connect::open(&addrs, &target.tls_name, self.verifying.clone())
                .await
                .map_err(|e| tracing::debug!(host, error = %e, "no .well-known"))
                .ok()?;
            let request = hyper::Request::get(url.path_and_query()?.as_str())
                .header(hyper::header::HOST, target.host_header)
                .body(Full::new(Bytes::new()))
                .ok()?;
            let response =
                tokio::time::timeout(connect::CONNECT_TIMEOUT, sender.send_request(request))
                    .await
                    .ok()?
                    .ok()?;
            if response.status().is_redirection() {
                let next = response
                    .headers()
                    .get(hyper::header::LOCATION)?
                    .to_str()
                    .ok()?;
                url = next
                    .parse()
                    .ok()
                    .filter(|u: &hyper::Uri| u.scheme_str() == Some("https"))?;
                continue;
            }
            if !response.status().is_success() {
                return None;
            }
            let body = Limited::new(response.into_body(), WELL_KNOWN_MAX_BYTES)
                .collect()
                .await
                .ok()?
                .to_bytes();
            return parse_well_known(&body);
        }
        None
    }
}
