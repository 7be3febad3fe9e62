//! Which addresses outbound federation may connect to. A remote server name
//! is chosen by whoever sends us an event, so by default nothing private is
//! reachable (loopback, RFC 1918, link-local, …): otherwise any room member
//! could make the server probe its own network. Tests and private
//! federations allow ranges back explicitly.

use ipnet::IpNet;
use std::net::IpAddr;

/// The ranges denied unless allowed (the same set Synapse denies by default).
const DENIED: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "::/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
];

#[derive(Debug, Clone)]
pub struct IpFilter {
    denied: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP range (expected CIDR such as 127.0.0.0/8)")]
pub struct BadRange(pub String);

impl IpFilter {
    /// The default deny list with `allowed` CIDR ranges let through.
    pub fn new(allowed: &[String]) -> Result<Self, BadRange> {
        let allowed = allowed
            .iter()
            .map(|r| r.parse().map_err(|_| BadRange(r.clone())))
            .collect::<Result<_, _>>()?;
        Ok(IpFilter {
            denied: DENIED.iter().map(|r| r.parse().unwrap()).collect(),
            allowed,
        })
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        // IPv4-mapped IPv6 addresses are judged as the IPv4 address they are.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if ip.is_unspecified() {
            return false;
        }
        self.allowed.iter().any(|n| n.contains(&ip)) || !self.denied.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_denied_unless_allowed() {
        let strict = IpFilter::new(&[]).unwrap();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "fd00::1",
        ] {
            assert!(!strict.permits(ip.parse().unwrap()), "{ip}");
        }
        assert!(strict.permits("8.8.8.8".parse().unwrap()));
        assert!(strict.permits("2606:4700::1".parse().unwrap()));

        let tests = IpFilter::new(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
        assert!(tests.permits("127.0.0.2".parse().unwrap()));
        assert!(tests.permits("::1".parse().unwrap()));
        assert!(!tests.permits("10.0.0.1".parse().unwrap()));
        assert!(!tests.permits("0.0.0.0".parse().unwrap()));
        assert!(IpFilter::new(&["nonsense".into()]).is_err());
    }
}
