//! The scenario format (TOML or JSON): topology, link model, router
//! settings, mobility, traffic, churn, timed events, adversaries and what to
//! measure. Every field but the topology has a default, so a scenario file
//! says only what differs. `conifer sim NAME --print-scenario` prints any
//! built-in in full as a starting point.

use std::path::Path;

use conifer_overlay::router::PeerType;
use serde::{Deserialize, Serialize};

use crate::filter::DropRates;
use crate::link::LinkParams;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The seed used when the command line gives none.
    #[serde(default = "one")]
    pub seed: u64,
    /// Virtual seconds to simulate. With `[mobility]`, 0 means
    /// `steps × interval`.
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub router: RouterSettings,
    #[serde(default)]
    pub link: LinkParams,
    pub topology: TopologySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobility: Option<Mobility>,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<TimedEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversarySpec>,
    #[serde(default)]
    pub measure: Measure,
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSettings {
    /// Sign and verify like the real network. Only scenarios that say so
    /// turn this off (Go's `PINECONE_DISABLE_SIGNATURES`).
    pub signatures: bool,
    /// Keepalives and the 5 s peer timeout. Off by default, as in the Go
    /// simulator's pipes: the simulator tells both ends when a link goes down.
    pub keepalives: bool,
    pub hop_limiting: bool,
    pub wakeup_broadcasts: bool,
    /// `pipe`, `multicast`, `bonjour`, `remote` or `bluetooth`.
    pub peer_type: String,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            signatures: true,
            keepalives: false,
            hop_limiting: false,
            wakeup_broadcasts: true,
            peer_type: "remote".into(),
        }
    }
}

impl RouterSettings {
    pub fn peer_type(&self) -> Option<PeerType> {
        Some(match self.peer_type.as_str() {
            "pipe" => PeerType::Pipe,
            "multicast" => PeerType::Multicast,
            "bonjour" => PeerType::Bonjour,
            "remote" => PeerType::Remote,
            "bluetooth" => PeerType::Bluetooth,
            _ => return None,
        })
    }
}

/// How to make a geometric graph connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    /// Accept whatever the placement gives.
    #[default]
    None,
    /// Redraw the placement (same RNG stream) until connected (up to 1 000 times).
    Resample,
    /// Link each stray component to the largest through its nearest pair.
    Patch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopologySpec {
    Line {
        nodes: usize,
    },
    Ring {
        nodes: usize,
    },
    Grid {
        width: usize,
        height: usize,
    },
    /// Nodes placed uniformly in a `width × height` metre area, linked by
    /// radio `range` (or the range giving `mean_degree`), or — with
    /// `nearest_links` — by the k globally shortest pairs.
    RandomGeometric {
        nodes: usize,
        #[serde(default = "km")]
        width: f64,
        #[serde(default = "km")]
        height: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean_degree: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nearest_links: Option<usize>,
        #[serde(default)]
        connectivity: Connectivity,
    },
    BarabasiAlbert {
        nodes: usize,
        #[serde(default = "two")]
        m: usize,
    },
    /// The Go simulator's graph format, from a file (relative to the
    /// scenario file) or inline.
    EdgeList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edges: Option<String>,
    },
}

fn km() -> f64 {
    1000.0
}
fn two() -> usize {
    2
}

impl TopologySpec {
    pub fn describe(&self) -> String {
        match self {
            TopologySpec::Line { nodes } => format!("line of {nodes}"),
            TopologySpec::Ring { nodes } => format!("ring of {nodes}"),
            TopologySpec::Grid { width, height } => format!("{width}×{height} grid"),
            TopologySpec::RandomGeometric {
                nodes,
                range,
                mean_degree,
                nearest_links,
                ..
            } => match (nearest_links, range, mean_degree) {
                (Some(k), _, _) => format!("{nodes} nodes, {k} nearest links"),
                (_, Some(r), _) => format!("{nodes} nodes, radio range {r} m"),
                (_, _, Some(d)) => format!("{nodes} nodes, random geometric, mean degree {d}"),
                _ => format!("{nodes} nodes, random geometric"),
            },
            TopologySpec::BarabasiAlbert { nodes, m } => {
                format!("{nodes} nodes, Barabási–Albert m={m}")
            }
            TopologySpec::EdgeList { path, .. } => match path {
                Some(p) => format!("edge list {p}"),
                None => "inline edge list".into(),
            },
        }
    }
}

/// The arewep2pyet mobility model: every `interval` seconds each node moves
/// a uniformly random distance in `[0, max_move]` metres in a uniformly
/// random direction, staying inside the area (clamped at the border).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mobility {
    pub interval: f64,
    pub max_move: f64,
    pub steps: u32,
}

impl Default for Mobility {
    fn default() -> Self {
        Mobility {
            interval: 10.0,
            max_move: 20.0,
            steps: 360,
        }
    }
}

/// Probe traffic. With `[mobility]`, `per_step` pings are sent at uniformly
/// random instants within each step; otherwise `rate` pings per second from
/// `start` to `stop`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// Virtual seconds before the first ping (lets the tree form).
    pub start: f64,
    /// Last ping time; 0 means `duration - timeout`.
    pub stop: f64,
    pub rate: f64,
    pub per_step: u32,
    /// Only pairs at least this many hops apart on the live topology.
    pub min_hops: u32,
    /// Only pairs at most this many hops apart (0: no limit).
    pub max_hops: u32,
    /// A ping not delivered within this many seconds is lost.
    pub timeout: f64,
    /// Destinations answer each ping (tree-routed on the way back).
    pub pong: bool,
    /// Pick pairs among honest nodes only.
    pub honest_only: bool,
    /// Width of a delivery-ratio bucket in seconds (without mobility).
    pub window: f64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            start: 30.0,
            stop: 0.0,
            rate: 2.0,
            per_step: 20,
            min_hops: 1,
            max_hops: 0,
            timeout: 5.0,
            pong: false,
            honest_only: true,
            window: 10.0,
        }
    }
}

/// Random churn: Poisson processes, rates per minute over the whole network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    pub start: f64,
    /// 0 means the end of the run.
    pub stop: f64,
    /// An online node goes offline (all its links drop, state lost).
    pub node_leave_per_min: f64,
    /// An offline node comes back, with its original links.
    pub node_join_per_min: f64,
    /// A random live link goes down.
    pub link_down_per_min: f64,
    /// A random link that went down comes back.
    pub link_up_per_min: f64,
    /// Never take the network below this fraction of nodes online.
    pub min_online: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            start: 60.0,
            stop: 0.0,
            node_leave_per_min: 2.0,
            node_join_per_min: 2.0,
            link_down_per_min: 2.0,
            link_up_per_min: 2.0,
            min_online: 0.8,
        }
    }
}

/// One scripted change at a virtual time. Nodes are named by their
/// edge-list name or by index.
// No `deny_unknown_fields`: serde cannot combine it with `flatten`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedEvent {
    pub at: f64,
    #[serde(flatten)]
    pub action: EventAction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EventAction {
    LinkDown {
        a: String,
        b: String,
    },
    LinkUp {
        a: String,
        b: String,
    },
    NodeDown {
        node: String,
    },
    NodeUp {
        node: String,
    },
    /// Cuts every link between `side` and the rest of the network.
    Partition {
        side: Vec<String>,
    },
    /// Restores every link a partition cut.
    Heal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdversaryKind {
    /// Honest-looking nodes that drop received frames by type.
    Drop,
    /// Each attacker hosts `identities` keys behind it (zero-latency links);
    /// all of them drop.
    Sybil,
    /// Attackers take all the links around victims and drop.
    Eclipse,
    /// Attackers' keys are chosen next to victims' keys in keyspace, and drop.
    Keyspace,
    /// Nodes whose keys start 0xFF join and leave repeatedly, becoming root.
    RootHijack,
    /// Extra nodes join and leave rapidly at random places.
    ChurnAttack,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversarySpec {
    pub kind: AdversaryKind,
    /// One run per fraction of malicious identities (0 is the honest baseline).
    #[serde(default = "default_fractions")]
    pub fractions: Vec<f64>,
    /// What dropping adversaries drop (received frames, per type, %).
    #[serde(default = "DropRates::snek_and_traffic")]
    pub drop: DropRates,
    /// Sybil: identities per attacker position (the attacker included).
    #[serde(default = "five")]
    pub identities: usize,
    /// Root hijack and churn attack: seconds online, then offline.
    #[serde(default = "twenty")]
    pub up: f64,
    #[serde(default = "twenty")]
    pub down: f64,
    /// Links a joining adversary makes (to random honest nodes).
    #[serde(default = "three")]
    pub links: usize,
    /// Keyspace collision: candidate keys generated per attacker to find
    /// one adjacent to its victim.
    #[serde(default = "search")]
    pub key_search: usize,
}

fn default_fractions() -> Vec<f64> {
    vec![0.0, 0.05, 0.10, 0.20]
}
fn five() -> usize {
    5
}
fn three() -> usize {
    3
}
fn twenty() -> f64 {
    20.0
}
fn search() -> usize {
    2048
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Measure {
    /// Check "all agree on the root and every SNEK predecessor is right".
    pub convergence: bool,
    /// Seconds between convergence checks.
    pub check_interval: f64,
    /// Count routing-table sizes at the end.
    #[serde(default = "yes")]
    pub routing_state: bool,
}

impl Default for Measure {
    fn default() -> Self {
        Measure {
            convergence: true,
            check_interval: 1.0,
            routing_state: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path} is not valid TOML: {0}", path = .1)]
    Toml(toml::de::Error, String),
    #[error("scenario {path} is not valid JSON: {0}", path = .1)]
    Json(serde_json::Error, String),
    #[error("scenario {0}: {1}")]
    Invalid(String, String),
}

impl Scenario {
    /// Reads a `.toml` or `.json` scenario; an edge-list `path` inside it is
    /// resolved relative to the file and inlined, so the results file
    /// records the whole scenario.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut s = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| ScenarioError::Json(e, shown.clone()))?
        } else {
            Scenario::from_toml(&text).map_err(|e| match e {
                ScenarioError::Toml(e, _) => ScenarioError::Toml(e, shown.clone()),
                other => other,
            })?
        };
        if let TopologySpec::EdgeList {
            path: Some(p),
            edges,
        } = &mut s.topology
        {
            let full = path.parent().unwrap_or(Path::new(".")).join(&*p);
            let text = std::fs::read_to_string(&full).map_err(|source| ScenarioError::Read {
                path: full.display().to_string(),
                source,
            })?;
            *edges = Some(text);
        }
        s.validate()?;
        Ok(s)
    }

    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Toml(e, "(inline)".into()))?;
        s.validate()?;
        Ok(s)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("scenarios serialise")
    }

    /// Virtual run length in seconds.
    pub fn run_length(&self) -> f64 {
        match (&self.mobility, self.duration) {
            (Some(m), d) if d <= 0.0 => m.steps as f64 * m.interval,
            (_, d) => d,
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(self.name.clone(), m.into()));
        if self.run_length() <= 0.0 {
            return bad("set `duration` (virtual seconds) or a [mobility] section");
        }
        if !(0.0..=1.0).contains(&self.link.loss) {
            return bad("link.loss is a probability between 0 and 1");
        }
        if self.mobility.is_some() && !matches!(self.topology, TopologySpec::RandomGeometric { .. })
        {
            return bad("[mobility] needs a random_geometric topology (nodes need positions)");
        }
        if let Some(a) = &self.adversary {
            if a.fractions.iter().any(|f| !(0.0..1.0).contains(f)) {
                return bad("adversary fractions are between 0 and 1");
            }
        }
        if let TopologySpec::EdgeList { path, edges } = &self.topology {
            if path.is_none() && edges.is_none() {
                return bad("an edge_list topology needs `path` or `edges`");
            }
        }
        if self.router.peer_type().is_none() {
            return bad("router.peer_type is one of pipe, multicast, bonjour, remote, bluetooth");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_toml() {
        let s = Scenario::from_toml(
            r#"
            name = "tiny"
            duration = 60
            [topology]
            kind = "line"
            nodes = 5
            [[events]]
            at = 10
            action = "link_down"
            a = "1"
            b = "2"
            "#,
        )
        .unwrap();
        assert_eq!(s.topology, TopologySpec::Line { nodes: 5 });
        assert!(s.router.signatures);
        assert_eq!(s.events.len(), 1);
        // Round trip through TOML.
        assert_eq!(Scenario::from_toml(&s.to_toml()).unwrap(), s);
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(Scenario::from_toml(
            "name='x'\nduration=1\nbogus=1\n[topology]\nkind='line'\nnodes=2"
        )
        .is_err());
    }
}
