//! LAN discovery exactly as Go Pinecone does it.
//!
//! Every 2 s, on every interface that is up, multicast-capable and not
//! point-to-point, a 34-byte beacon (our key ‖ big-endian TCP port) goes to
//! 224.0.0.114 and ff02::114, UDP port 60606. A beacon from a key we are not
//! yet peered with in that interface's zone makes us dial back to the
//! sender's address and the advertised port. Interfaces are rescanned every
//! 10 s. Unlike Go, a short datagram is ignored instead of stopping discovery
//! on that interface.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conifer_overlay::router::PeerType;
use conifer_overlay::PublicKey;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

use crate::peering::PeeringInfo;
use crate::Node;

pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 114);
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x114);
pub const MULTICAST_PORT: u16 = 60606;
const BEACON_LEN: usize = 34;
const BEACON_INTERVAL: Duration = Duration::from_secs(2);
const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A usable interface: its name, index and addresses (with prefix lengths).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interface {
    name: String,
    index: u32,
    v4: Vec<(Ipv4Addr, u8)>,
    v6_link_local: Option<Ipv6Addr>,
}

fn suitable_interfaces() -> Vec<Interface> {
    let Ok(addrs) = getifaddrs() else {
        return Vec::new();
    };
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for a in addrs {
        let f = a.flags;
        if !f.contains(InterfaceFlags::IFF_UP)
            || !f.contains(InterfaceFlags::IFF_MULTICAST)
            || f.contains(InterfaceFlags::IFF_POINTOPOINT)
        {
            continue;
        }
        let Ok(index) = nix::net::if_::if_nametoindex(a.interface_name.as_str()) else {
            continue;
        };
        let entry = by_name
            .entry(a.interface_name.clone())
            .or_insert_with(|| Interface {
                name: a.interface_name.clone(),
                index,
                v4: Vec::new(),
                v6_link_local: None,
            });
        let Some(addr) = a.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            let ip = sin.ip();
            let prefix = a
                .netmask
                .and_then(|m| {
                    m.as_sockaddr_in()
                        .map(|m| u32::from(m.ip()).count_ones() as u8)
                })
                .unwrap_or(32);
            // Like Go: only global unicast (which includes private ranges) addresses.
            if !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified() {
                entry.v4.push((ip, prefix));
            }
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            let ip = sin6.ip();
            if ip.segments()[0] & 0xffc0 == 0xfe80 {
                entry.v6_link_local = Some(ip);
            }
        }
    }
    by_name
        .into_values()
        .filter(|i| !i.v4.is_empty() || i.v6_link_local.is_some())
        .collect()
}

fn beacon_socket(v6: bool) -> std::io::Result<UdpSocket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if v6 {
        s.set_only_v6(true)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, MULTICAST_PORT)).into())?;
    } else {
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, MULTICAST_PORT)).into())?;
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn beacon(key: &PublicKey, port: u16) -> [u8; BEACON_LEN] {
    let mut b = [0u8; BEACON_LEN];
    b[..32].copy_from_slice(&key.0);
    b[32..].copy_from_slice(&port.to_be_bytes());
    b
}

/// Which interface a beacon came in on, and the local address to dial from.
fn zone_for(source: &SocketAddr, interfaces: &[Interface]) -> Option<(String, Option<IpAddr>)> {
    match source {
        SocketAddr::V4(s) => {
            let ip = u32::from(*s.ip());
            interfaces.iter().find_map(|i| {
                i.v4.iter().find_map(|&(ours, prefix)| {
                    let mask = if prefix == 0 {
                        0
                    } else {
                        u32::MAX << (32 - prefix)
                    };
                    (ip & mask == u32::from(ours) & mask)
                        .then(|| (i.name.clone(), Some(IpAddr::V4(ours))))
                })
            })
        }
        SocketAddr::V6(s) => interfaces
            .iter()
            .find(|i| i.index == s.scope_id())
            .map(|i| (i.name.clone(), i.v6_link_local.map(IpAddr::V6))),
    }
}

impl Node {
    /// Starts LAN discovery: a TCP listener for discovered peers, beacons and
    /// listeners on every suitable interface, rescanned every 10 seconds.
    pub async fn start_multicast(&self) -> std::io::Result<()> {
        let tcp = {
            let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            s.set_only_v6(false)?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
            s.listen(128)?;
            s.set_nonblocking(true)?;
            TcpListener::from_std(s.into())?
        };
        let port = tcp.local_addr()?.port();
        let node = self.clone();
        self.spawn_until_stopped(async move {
            loop {
                let Ok((stream, remote)) = tcp.accept().await else {
                    continue;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let interfaces = suitable_interfaces();
                    let zone = zone_for(&remote, &interfaces).map_or("multicast".into(), |z| z.0);
                    let info = PeeringInfo {
                        peer_type: PeerType::Multicast,
                        zone,
                        remote: remote.to_string(),
                    };
                    if let Err(e) = node.start_tcp(stream, info, None).await {
                        tracing::debug!(%remote, error = %e, "multicast peering failed");
                    }
                });
            }
        });

        let v4 = beacon_socket(false).ok().map(Arc::new);
        let v6 = beacon_socket(true).ok().map(Arc::new);
        if v4.is_none() && v6.is_none() {
            return Err(std::io::Error::other(format!(
                "cannot bind UDP port {MULTICAST_PORT} for multicast discovery"
            )));
        }
        let interfaces: Arc<Mutex<Vec<Interface>>> = Arc::default();
        let dialling: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
        for sock in [v4.clone(), v6.clone()].into_iter().flatten() {
            self.spawn_until_stopped(listen(
                self.clone(),
                sock,
                interfaces.clone(),
                dialling.clone(),
            ));
        }
        self.spawn_until_stopped(advertise(self.clone(), v4, v6, port, interfaces));
        tracing::info!(tcp_port = port, "multicast discovery started");
        Ok(())
    }
}

async fn advertise(
    node: Node,
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    port: u16,
    shared: Arc<Mutex<Vec<Interface>>>,
) {
    let b = beacon(&node.public_key(), port);
    let mut joined: Vec<Interface> = Vec::new();
    let mut last_scan: Option<tokio::time::Instant> = None;
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL) {
            last_scan = Some(tokio::time::Instant::now());
            let now = suitable_interfaces();
            for i in now.iter().filter(|i| !joined.contains(i)) {
                if let (Some(s), Some(&(addr, _))) = (&v4, i.v4.first()) {
                    let _ = s.join_multicast_v4(MULTICAST_V4, addr);
                }
                if let (Some(s), Some(_)) = (&v6, i.v6_link_local) {
                    let _ = s.join_multicast_v6(&MULTICAST_V6, i.index);
                }
                tracing::info!(interface = %i.name, "multicast discovery enabled");
            }
            joined = now;
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = joined.clone();
        }
        for i in &joined {
            if let (Some(s), Some(&(addr, _))) = (&v4, i.v4.first()) {
                let sock = socket2::SockRef::from(s.as_ref());
                if sock.set_multicast_if_v4(&addr).is_ok() {
                    let _ = s
                        .send_to(&b, SocketAddrV4::new(MULTICAST_V4, MULTICAST_PORT))
                        .await;
                }
            }
            if let (Some(s), Some(_)) = (&v6, i.v6_link_local) {
                let dest = SocketAddrV6::new(MULTICAST_V6, MULTICAST_PORT, 0, i.index);
                let _ = s.send_to(&b, dest).await;
            }
        }
        tokio::time::sleep(BEACON_INTERVAL).await;
    }
}

async fn listen(
    node: Node,
    sock: Arc<UdpSocket>,
    interfaces: Arc<Mutex<Vec<Interface>>>,
    dialling: Arc<Mutex<HashSet<SocketAddr>>>,
) {
    let ours = node.public_key();
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, source)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if n < BEACON_LEN {
            continue;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&buf[..32]);
        let key = PublicKey(key);
        if key == ours {
            continue;
        }
        let port = u16::from_be_bytes([buf[32], buf[33]]);
        let ifs = interfaces.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((zone, local)) = zone_for(&source, &ifs) else {
            continue;
        };
        let already = node
            .status()
            .peers
            .iter()
            .any(|p| p.key == key && p.zone == zone);
        if already {
            continue;
        }
        let mut target = source;
        target.set_port(port);
        if !dialling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target)
        {
            continue;
        }
        let node = node.clone();
        let dialling = dialling.clone();
        tokio::spawn(async move {
            let result = dial(&node, target, local, zone.clone(), key).await;
            if let Err(e) = result {
                tracing::debug!(%target, error = %e, "multicast dial failed");
            }
            dialling
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&target);
        });
    }
}

async fn dial(
    node: &Node,
    target: SocketAddr,
    local: Option<IpAddr>,
    zone: String,
    key: PublicKey,
) -> Result<(), crate::PeeringError> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local {
        let mut from = SocketAddr::new(ip, 0);
        if let (SocketAddr::V6(f), SocketAddr::V6(t)) = (&mut from, &target) {
            f.set_scope_id(t.scope_id());
        }
        socket.bind(from)?;
    }
    let stream = tokio::time::timeout(DIAL_TIMEOUT, socket.connect(target))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let info = PeeringInfo {
        peer_type: PeerType::Multicast,
        zone,
        remote: target.to_string(),
    };
    node.start_tcp(stream, info, Some(key)).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacon_layout() {
        let key = PublicKey([7; 32]);
        let b = beacon(&key, 0x1234);
        assert_eq!(&b[..32], &[7; 32]);
        assert_eq!(&b[32..], &[0x12, 0x34]);
    }

    #[test]
    fn zone_by_subnet() {
        let ifs = vec![Interface {
            name: "veth0".into(),
            index: 5,
            v4: vec![(Ipv4Addr::new(10, 250, 0, 1), 24)],
            v6_link_local: Some("fe80::1".parse().unwrap()),
        }];
        let from: SocketAddr = "10.250.0.2:60606".parse().unwrap();
        assert_eq!(
            zone_for(&from, &ifs),
            Some(("veth0".into(), Some("10.250.0.1".parse().unwrap())))
        );
        assert_eq!(zone_for(&"10.251.0.2:1".parse().unwrap(), &ifs), None);
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 1, 0, 5));
        assert_eq!(zone_for(&v6, &ifs).unwrap().0, "veth0");
    }
}
