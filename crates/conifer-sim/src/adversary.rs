//! Adversary placement: which nodes misbehave, which keys they hold, and
//! which extra attacker nodes exist.
//!
//! All attacks act at the simulator level, around unmodified routers: a
//! dropping node filters what it receives before its router sees it (Go's
//! filter hook); identities are chosen, not forged; joining and leaving is
//! the engine bringing links up and down.

use conifer_overlay::{Identity, PublicKey};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::engine::NodeId;
use crate::filter::DropRates;
use crate::scenario::{AdversaryKind, AdversarySpec};
use crate::topology::Graph;

/// How an extra (non-topology) attacker node is linked.
#[derive(Clone, Debug)]
pub enum Attach {
    /// A zero-latency link to this topology node (a Sybil behind its proxy).
    Behind(NodeId),
    /// `n` links to random online honest nodes, drawn afresh at every join.
    Random(usize),
}

#[derive(Clone, Debug)]
pub struct Extra {
    pub identity: Identity,
    pub attach: Attach,
    /// `(up, down)` seconds: the node joins and leaves repeatedly.
    pub flap: Option<(f64, f64)>,
    pub drop: Option<DropRates>,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Topology nodes that are adversaries, with what they drop.
    pub droppers: Vec<(NodeId, DropRates)>,
    /// Topology nodes whose identity is replaced (keyspace collision).
    pub identities: Vec<(NodeId, Identity)>,
    pub extras: Vec<Extra>,
    pub victims: Vec<NodeId>,
    /// Malicious identities in total.
    pub malicious: usize,
}

/// A random identity from the scenario's RNG.
pub fn identity<R: Rng>(rng: &mut R) -> Identity {
    Identity::from_seed(rng.gen())
}

/// An identity whose key starts with `0xFF`: above every ordinary key, so it
/// wins the root election wherever it appears.
pub fn high_identity<R: Rng>(rng: &mut R) -> Identity {
    loop {
        let id = identity(rng);
        if id.public_key().0[0] == 0xff {
            return id;
        }
    }
}

/// Places `round(fraction × n)` malicious identities on `graph` (n nodes).
pub fn plan<R: Rng>(
    spec: &AdversarySpec,
    fraction: f64,
    graph: &Graph,
    keys: &[PublicKey],
    rng: &mut R,
) -> Plan {
    let n = graph.n;
    let k = (fraction * n as f64).round() as usize;
    let mut plan = Plan::default();
    if k == 0 {
        return plan;
    }
    let mut order: Vec<NodeId> = (0..n).collect();
    order.shuffle(rng);
    match spec.kind {
        AdversaryKind::Drop => {
            plan.droppers = order[..k.min(n)]
                .iter()
                .map(|&a| (a, spec.drop.clone()))
                .collect();
            plan.malicious = plan.droppers.len();
        }
        AdversaryKind::Sybil => {
            let per = spec.identities.max(1);
            let positions = k.div_ceil(per).min(n);
            for &a in &order[..positions] {
                plan.droppers.push((a, spec.drop.clone()));
                for _ in 1..per {
                    plan.extras.push(Extra {
                        identity: identity(rng),
                        attach: Attach::Behind(a),
                        flap: None,
                        drop: Some(spec.drop.clone()),
                    });
                }
            }
            plan.malicious = positions * per;
        }
        AdversaryKind::Eclipse => {
            let adj = graph.adjacency();
            let mut bad = vec![false; n];
            let mut victim = vec![false; n];
            let mut used = 0;
            for &v in &order {
                if bad[v] || adj[v].iter().any(|&m| victim[m]) {
                    continue;
                }
                let new: Vec<NodeId> = adj[v].iter().copied().filter(|&m| !bad[m]).collect();
                if new.is_empty() || used + new.len() > k {
                    continue;
                }
                used += new.len();
                victim[v] = true;
                plan.victims.push(v);
                for m in new {
                    bad[m] = true;
                    plan.droppers.push((m, spec.drop.clone()));
                }
            }
            plan.droppers.sort_by_key(|d| d.0);
            plan.malicious = used;
        }
        AdversaryKind::Keyspace => {
            // One victim per two attackers: one key just above, one just below.
            let victims = k.div_ceil(2).min(n / 3).max(1);
            plan.victims = order[..victims].to_vec();
            let mut hosts = order[victims..].iter().copied();
            let mut pool: Vec<Identity> =
                (0..spec.key_search.max(2)).map(|_| identity(rng)).collect();
            pool.sort_by_key(|i| i.public_key());
            let mut placed = 0;
            'victims: for &v in &plan.victims.clone() {
                let vk = keys[v];
                let above = pool.iter().position(|i| i.public_key() > vk);
                let picks = [
                    above,
                    above
                        .and_then(|i| i.checked_sub(1))
                        .or(Some(pool.len() - 1)),
                ];
                for pick in picks.into_iter().flatten() {
                    if placed == k {
                        break 'victims;
                    }
                    let Some(host) = hosts.next() else {
                        break 'victims;
                    };
                    let id = pool.remove(pick.min(pool.len() - 1));
                    plan.identities.push((host, id));
                    plan.droppers.push((host, spec.drop.clone()));
                    placed += 1;
                }
            }
            plan.malicious = placed;
        }
        AdversaryKind::RootHijack | AdversaryKind::ChurnAttack => {
            for _ in 0..k {
                let identity = if spec.kind == AdversaryKind::RootHijack {
                    high_identity(rng)
                } else {
                    identity(rng)
                };
                plan.extras.push(Extra {
                    identity,
                    attach: Attach::Random(spec.links.max(1)),
                    flap: Some((spec.up, spec.down)),
                    drop: (!spec.drop.is_none() && spec.kind == AdversaryKind::ChurnAttack)
                        .then(|| spec.drop.clone()),
                });
            }
            plan.malicious = k;
        }
    }
    plan
}
