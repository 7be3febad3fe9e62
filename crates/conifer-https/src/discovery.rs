//! Matrix server discovery as a state machine with no I/O: given a server
//! name it says what to look up next (`.well-known`, SRV records) and, fed
//! the answers, where to connect, which `Host` header to send and which name
//! the certificate must carry. The steps are the spec's "Resolving server
//! names" (Server-Server API, section 2.1), in order.

use std::net::IpAddr;

/// The port federation uses when nothing names another.
pub const DEFAULT_PORT: u16 = 8448;

/// A server name split into host and optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    pub host: Host,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Domain(String),
}

impl Host {
    /// The host as it appears in a server name or `Host` header
    /// (IPv6 in brackets).
    pub fn to_name(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Domain(d) => d.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid server name")]
pub struct BadServerName(pub String);

impl ServerName {
    /// Parses `host[:port]` where host is an IPv4 literal, a bracketed IPv6
    /// literal or a DNS name.
    pub fn parse(name: &str) -> Result<Self, BadServerName> {
        let bad = || BadServerName(name.to_owned());
        let (host, port) = if let Some(rest) = name.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match name.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (name, None),
            };
            let host = match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) if is_dns_name(host) => Host::Domain(host.to_ascii_lowercase()),
                Err(_) => return Err(bad()),
            };
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?)
            }
            Some(_) => return Err(bad()),
        };
        Ok(ServerName { host, port })
    }
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Where and how to connect to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What to connect to: an address, or a name to look up (A/AAAA).
    pub connect: Host,
    pub port: u16,
    /// The `Host` header of every request.
    pub host_header: String,
    /// The name the server's certificate must be valid for (also the SNI).
    pub tls_name: String,
}

/// One SRV answer, already ordered by priority and weight by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub target: String,
    pub port: u16,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Connect here.
    Done(Target),
    /// `GET https://{0}/.well-known/matrix/server` and call
    /// [`Discovery::on_well_known`] with the `m.server` value (or `None`).
    FetchWellKnown(String),
    /// Look up these SRV names in order and call [`Discovery::on_srv`]
    /// with the first non-empty answer (or an empty list).
    LookupSrv(Vec<String>),
}

/// The resolution of one server name.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The hostname SRV results and the fallback apply to: the server
    /// name's, or the delegated one after `.well-known`.
    hostname: String,
}

impl Discovery {
    /// Starts resolving `name`.
    pub fn start(name: &ServerName) -> (Self, Step) {
        let hostname = name.host.to_name();
        let me = Discovery {
            hostname: hostname.clone(),
        };
        match (&name.host, name.port) {
            // Steps 1 and 2: an IP literal or an explicit port needs no lookup
            // beyond A/AAAA; the Host header is the whole server name.
            (Host::Ip(_), _) | (_, Some(_)) => {
                let port = name.port.unwrap_or(DEFAULT_PORT);
                let header = match name.port {
                    Some(p) => format!("{hostname}:{p}"),
                    None => hostname.clone(),
                };
                let step = Step::Done(Target {
                    connect: name.host.clone(),
                    port,
                    host_header: header,
                    tls_name: host_without_brackets(&name.host),
                });
                (me, step)
            }
            (Host::Domain(d), None) => (me, Step::FetchWellKnown(d.clone())),
        }
    }

    /// Step 3: the `m.server` of the `.well-known` answer, if there was a
    /// valid one.
    pub fn on_well_known(&mut self, m_server: Option<&str>) -> Step {
        let Some(delegated) = m_server.and_then(|s| ServerName::parse(s).ok()) else {
            // Step 4 on the original hostname.
            return self.srv_step();
        };
        self.hostname = delegated.host.to_name();
        match (&delegated.host, delegated.port) {
            (Host::Ip(_), _) | (_, Some(_)) => {
                let port = delegated.port.unwrap_or(DEFAULT_PORT);
                Step::Done(Target {
                    connect: delegated.host.clone(),
                    port,
                    host_header: match delegated.port {
                        Some(p) => format!("{}:{p}", self.hostname),
                        None => self.hostname.clone(),
                    },
                    tls_name: host_without_brackets(&delegated.host),
                })
            }
            (Host::Domain(_), None) => self.srv_step(),
        }
    }

    fn srv_step(&self) -> Step {
        Step::LookupSrv(vec![
            format!("_matrix-fed._tcp.{}", self.hostname),
            // Deprecated, still published by older deployments.
            format!("_matrix._tcp.{}", self.hostname),
        ])
    }

    /// Steps 3.3–3.5 and 4–6: the SRV answer (empty if none), else port 8448.
    /// The Host header and certificate name stay the hostname either way.
    pub fn on_srv(&self, records: &[SrvRecord]) -> Target {
        let (connect, port) = match records.first() {
            Some(r) => (
                Host::Domain(r.target.trim_end_matches('.').to_owned()),
                r.port,
            ),
            None => (Host::Domain(self.hostname.clone()), DEFAULT_PORT),
        };
        Target {
            connect,
            port,
            host_header: self.hostname.clone(),
            tls_name: self.hostname.clone(),
        }
    }
}

fn host_without_brackets(h: &Host) -> String {
    match h {
        Host::Ip(ip) => ip.to_string(),
        Host::Domain(d) => d.clone(),
    }
}

/// The `m.server` value of a `.well-known/matrix/server` body, if it is a
/// JSON object with a string there.
pub fn parse_well_known(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("m.server")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str) -> (Discovery, Step) {
        Discovery::start(&ServerName::parse(name).unwrap())
    }

    fn done(step: Step) -> Target {
        match step {
            Step::Done(t) => t,
            other => panic!("expected a target, got {other:?}"),
        }
    }

    #[test]
    fn parses_server_names() {
        let n = ServerName::parse("[::1]:8448").unwrap();
        assert_eq!(n.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(n.port, Some(8448));
        assert_eq!(
            ServerName::parse("Matrix.Example.org").unwrap().host,
            Host::Domain("matrix.example.org".into())
        );
        for bad in [
            "", "a:b", "a:0", "a:70000", "[::1", "[::1]x", "a..b", "a b", "a:+1", "-:",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn ip_literals_and_explicit_ports_connect_directly() {
        let t = done(start("127.0.0.1:8448").1);
        assert_eq!(t.connect, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!((t.port, t.host_header.as_str()), (8448, "127.0.0.1:8448"));
        assert_eq!(t.tls_name, "127.0.0.1");

        let t = done(start("[::1]").1);
        assert_eq!((t.port, t.host_header.as_str()), (8448, "[::1]"));
        assert_eq!(t.tls_name, "::1");

        let t = done(start("hs.example:1234").1);
        assert_eq!(t.connect, Host::Domain("hs.example".into()));
        assert_eq!(t.host_header, "hs.example:1234");
        assert_eq!(t.tls_name, "hs.example");
    }

    #[test]
    fn well_known_delegation() {
        let (mut d, step) = start("example.org");
        assert_eq!(step, Step::FetchWellKnown("example.org".into()));
        let t = done(d.on_well_known(Some("matrix.example.org:443")));
        assert_eq!(t.connect, Host::Domain("matrix.example.org".into()));
        assert_eq!(
            (t.port, t.host_header.as_str()),
            (443, "matrix.example.org:443")
        );
        assert_eq!(t.tls_name, "matrix.example.org");

        // Delegation to a name without a port goes on to SRV on that name.
        let (mut d, _) = start("example.org");
        assert_eq!(
            d.on_well_known(Some("matrix.example.org")),
            Step::LookupSrv(vec![
                "_matrix-fed._tcp.matrix.example.org".into(),
                "_matrix._tcp.matrix.example.org".into()
            ])
        );
        let t = d.on_srv(&[SrvRecord {
            target: "fed.example.net.".into(),
            port: 8449,
        }]);
        assert_eq!(t.connect, Host::Domain("fed.example.net".into()));
        assert_eq!(t.port, 8449);
        assert_eq!(t.host_header, "matrix.example.org");
        assert_eq!(t.tls_name, "matrix.example.org");
    }

    #[test]
    fn no_well_known_then_srv_then_8448() {
        let (mut d, _) = start("example.org");
        assert_eq!(
            d.on_well_known(Some("not a name")),
            Step::LookupSrv(vec![
                "_matrix-fed._tcp.example.org".into(),
                "_matrix._tcp.example.org".into()
            ])
        );
        let t = d.on_srv(&[]);
        assert_eq!(t.connect, Host::Domain("example.org".into()));
        assert_eq!((t.port, t.host_header.as_str()), (8448, "example.org"));
    }

    #[test]
    fn well_known_bodies() {
        assert_eq!(
            parse_well_known(br#"{"m.server":"a.b:1"}"#),
            Some("a.b:1".into())
        );
        assert_eq!(parse_well_known(br#"{"m.server":1}"#), None);
        assert_eq!(parse_well_known(b"<html>"), None);
    }
}
