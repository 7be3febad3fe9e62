//! A tiny in-memory driver for multi-router tests: links are instant and
//! lossless, time is virtual and advances in fixed steps.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use conifer_overlay::router::{Action, Event, PeerType, Router, RouterConfig, Time};
use conifer_overlay::wire::{Frame, Port};
use conifer_overlay::{Identity, PublicKey};

pub const START: Time = Time::from_unix_millis(1_800_000_000_000);

pub struct Node {
    pub router: Router,
    pub delivered: Vec<(PublicKey, Vec<u8>)>,
    pub events: Vec<Event>,
    pub closed: Vec<(Port, String)>,
}

pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Time,
    /// (node, port) → (node, port) for every live link, both directions.
    links: HashMap<(usize, Port), (usize, Port)>,
    inflight: VecDeque<(usize, Port, Vec<u8>)>,
    /// Every frame that crossed a link: (from node, to node, bytes).
    pub wire_log: Vec<(usize, usize, Vec<u8>)>,
    pub log_wire: bool,
}

/// Identities from seeds `base, base+1, …` (byte-repeated), so tests are reproducible.
pub fn identities(n: usize, base: u8) -> Vec<Identity> {
    (0..n)
        .map(|i| Identity::from_seed([base.wrapping_add(i as u8); 32]))
        .collect()
}

impl Net {
    pub fn new(ids: Vec<Identity>, config: RouterConfig) -> Self {
        let nodes = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| Node {
                router: Router::new(
                    id,
                    RouterConfig {
                        seed: i as u64,
                        ..config.clone()
                    },
                    START,
                ),
                delivered: Vec::new(),
                events: Vec::new(),
                closed: Vec::new(),
            })
            .collect();
        Net {
            nodes,
            now: START,
            links: HashMap::new(),
            inflight: VecDeque::new(),
            wire_log: Vec::new(),
            log_wire: false,
        }
    }

    pub fn key(&self, i: usize) -> PublicKey {
        self.nodes[i].router.public_key()
    }

    pub fn connect(&mut self, a: usize, b: usize) -> (Port, Port) {
        let (ka, kb) = (self.key(a), self.key(b));
        let pa = self.nodes[a]
            .router
            .peer_connected(self.now, kb, PeerType::Remote, "test")
            .unwrap();
        let pb = self.nodes[b]
            .router
            .peer_connected(self.now, ka, PeerType::Remote, "test")
            .unwrap();
        self.links.insert((a, pa), (b, pb));
        self.links.insert((b, pb), (a, pa));
        self.pump();
        (pa, pb)
    }

    pub fn disconnect(&mut self, a: usize, b: usize) {
        let ports: Vec<(usize, Port)> = self
            .links
            .iter()
            .filter(|(&(n, _), &(m, _))| n == a && m == b)
            .map(|(&k, _)| k)
            .collect();
        for (n, p) in ports {
            self.cut(n, p);
        }
        self.pump();
    }

    /// Removes every link of node `a` (the node "leaves").
    pub fn isolate(&mut self, a: usize) {
        let ports: Vec<(usize, Port)> = self
            .links
            .keys()
            .filter(|&&(n, _)| n == a)
            .copied()
            .collect();
        for (n, p) in ports {
            self.cut(n, p);
        }
        self.pump();
    }

    fn cut(&mut self, n: usize, p: Port) {
        if let Some((m, q)) = self.links.remove(&(n, p)) {
            self.links.remove(&(m, q));
            self.nodes[n].router.peer_disconnected(self.now, p);
            self.nodes[m].router.peer_disconnected(self.now, q);
        }
    }

    /// Delivers raw bytes to node `to` as if they came from its peer on `port`.
    pub fn inject(&mut self, to: usize, port: Port, bytes: &[u8]) {
        self.nodes[to].router.receive_frame(self.now, port, bytes);
        self.pump();
    }

    /// Runs actions and in-flight frames until the network is quiet.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(action) = self.nodes[i].router.poll_action() {
                    progressed = true;
                    match action {
                        Action::Wake { port } => {
                            while let Some(bytes) =
                                self.nodes[i].router.poll_transmit(self.now, port)
                            {
                                self.inflight.push_back((i, port, bytes));
                            }
                        }
                        Action::Deliver { source, payload } => {
                            self.nodes[i].delivered.push((source, payload))
                        }
                        Action::ClosePeer { port, reason } => {
                            self.nodes[i].closed.push((port, reason));
                            self.cut(i, port);
                        }
                        Action::Event(e) => self.nodes[i].events.push(e),
                    }
                }
            }
            while let Some((from, port, bytes)) = self.inflight.pop_front() {
                progressed = true;
                let Some(&(to, to_port)) = self.links.get(&(from, port)) else {
                    continue;
                };
                if self.log_wire {
                    self.wire_log.push((from, to, bytes.clone()));
                }
                self.nodes[to]
                    .router
                    .receive_frame(self.now, to_port, &bytes);
            }
            if !progressed {
                return;
            }
        }
    }

    /// Advances virtual time, firing timers in steps of `step`.
    pub fn run_for(&mut self, duration: Duration, step: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now = (self.now + step).min(end);
            for i in 0..self.nodes.len() {
                if self.nodes[i].router.poll_timeout() <= self.now {
                    self.nodes[i].router.handle_timeout(self.now);
                }
            }
            self.pump();
        }
    }

    pub fn settle(&mut self, secs: u64) {
        self.run_for(Duration::from_secs(secs), Duration::from_millis(250));
    }

    pub fn highest_key(&self) -> PublicKey {
        (0..self.nodes.len()).map(|i| self.key(i)).max().unwrap()
    }

    /// Sends a ping from a to b and reports whether it arrived (no time passes).
    pub fn ping(&mut self, a: usize, b: usize, tag: &[u8]) -> bool {
        let dest = self.key(b);
        let before = self.nodes[b].delivered.len();
        self.nodes[a]
            .router
            .send(self.now, dest, tag.to_vec())
            .unwrap();
        self.pump();
        let src = self.key(a);
        self.nodes[b].delivered[before..]
            .iter()
            .any(|(s, p)| *s == src && p == tag)
    }

    /// Every ordered pair of `alive` nodes exchanges a ping; returns failures.
    pub fn all_pairs(&mut self, alive: &[usize]) -> Vec<(usize, usize)> {
        let mut failed = Vec::new();
        for &a in alive {
            for &b in alive {
                if a != b && !self.ping(a, b, format!("{a}->{b}").as_bytes()) {
                    failed.push((a, b));
                }
            }
        }
        failed
    }

    pub fn frame_types_logged(&self) -> Vec<Frame> {
        self.wire_log
            .iter()
            .map(|(_, _, b)| Frame::decode(b).unwrap())
            .collect()
    }
}
