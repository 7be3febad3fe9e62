//! Topology generators: line, ring, grid, random geometric (radio range or
//! the k globally nearest pairs), Barabási–Albert, and the Go simulator's
//! edge-list files.
//!
//! A [`Graph`] is a node count and a sorted, duplicate-free edge list, plus
//! positions for the geometric kinds (the mobility model moves them).

use std::collections::BTreeMap;

use rand::Rng;

pub type Pos = (f64, f64);

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub n: usize,
    /// `(a, b)` with `a < b`, sorted.
    pub edges: Vec<(usize, usize)>,
    pub positions: Option<Vec<Pos>>,
    /// Node names from an edge-list file.
    pub names: Option<Vec<String>>,
}

impl Graph {
    pub fn from_edges(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut edges: Vec<_> = edges
            .into_iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        edges.sort_unstable();
        edges.dedup();
        Graph {
            n,
            edges,
            positions: None,
            names: None,
        }
    }

    pub fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.n];
        for &(a, b) in &self.edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        adj
    }

    /// Connected components, each sorted, in order of their lowest node.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let adj = self.adjacency();
        let mut seen = vec![false; self.n];
        let mut out = Vec::new();
        for s in 0..self.n {
            if seen[s] {
                continue;
            }
            seen[s] = true;
            let mut comp = vec![s];
            let mut i = 0;
            while i < comp.len() {
                for &m in &adj[comp[i]] {
                    if !seen[m] {
                        seen[m] = true;
                        comp.push(m);
                    }
                }
                i += 1;
            }
            comp.sort_unstable();
            out.push(comp);
        }
        out
    }

    pub fn is_connected(&self) -> bool {
        self.components().len() <= 1
    }

    pub fn mean_degree(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            2.0 * self.edges.len() as f64 / self.n as f64
        }
    }

    /// Joins every component to the largest through its geometrically closest
    /// pair of nodes (or lowest ids, without positions). Returns edges added.
    pub fn patch_connected(&mut self) -> usize {
        let mut added = 0;
        loop {
            let comps = self.components();
            if comps.len() <= 1 {
                return added;
            }
            let main = comps
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (c.len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
                .expect("non-empty");
            let other = if main == 0 { 1 } else { 0 };
            let (a, b) = match &self.positions {
                Some(pos) => {
                    let mut best = (f64::INFINITY, 0, 0);
                    for &x in &comps[other] {
                        for &y in &comps[main] {
                            let d = dist(pos[x], pos[y]);
                            if d < best.0 {
                                best = (d, x, y);
                            }
                        }
                    }
                    (best.1, best.2)
                }
                None => (comps[other][0], comps[main][0]),
            };
            self.edges.push((a.min(b), a.max(b)));
            self.edges.sort_unstable();
            added += 1;
        }
    }
}

pub fn dist(a: Pos, b: Pos) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

pub fn line(n: usize) -> Graph {
    Graph::from_edges(n, (1..n).map(|i| (i - 1, i)))
}

pub fn ring(n: usize) -> Graph {
    let mut g = line(n);
    if n > 2 {
        g = Graph::from_edges(n, g.edges.into_iter().chain([(0, n - 1)]));
    }
    g
}

/// A `w × h` grid, each node linked to its right and lower neighbour.
pub fn grid(w: usize, h: usize) -> Graph {
    let mut edges = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w {
                edges.push((i, i + 1));
            }
            if y + 1 < h {
                edges.push((i, i + w));
            }
        }
    }
    Graph::from_edges(w * h, edges)
}

pub fn random_positions<R: Rng>(n: usize, width: f64, height: f64, rng: &mut R) -> Vec<Pos> {
    (0..n)
        .map(|_| (rng.gen::<f64>() * width, rng.gen::<f64>() * height))
        .collect()
}

/// Every pair within `range` of each other (a unit-disk radio model).
/// Sorting by x first keeps this near-linear for large networks.
pub fn within_range(pos: &[Pos], range: f64) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..pos.len()).collect();
    order.sort_by(|&a, &b| pos[a].0.total_cmp(&pos[b].0).then(a.cmp(&b)));
    let mut edges = Vec::new();
    for (i, &a) in order.iter().enumerate() {
        for &b in &order[i + 1..] {
            if pos[b].0 - pos[a].0 > range {
                break;
            }
            if dist(pos[a], pos[b]) <= range {
                edges.push((a.min(b), a.max(b)));
            }
        }
    }
    edges.sort_unstable();
    edges
}

/// The `k` globally shortest pairs (meshnet-lab's "N nearest links").
pub fn nearest_links(pos: &[Pos], k: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(pos.len() * pos.len() / 2);
    for a in 0..pos.len() {
        for b in a + 1..pos.len() {
            pairs.push((dist(pos[a], pos[b]), a, b));
        }
    }
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let mut edges: Vec<_> = pairs.into_iter().take(k).map(|(_, a, b)| (a, b)).collect();
    edges.sort_unstable();
    edges
}

/// Radio range that gives `mean_degree` on average in a `width × height`
/// area (ignoring border effects).
pub fn range_for_degree(n: usize, width: f64, height: f64, mean_degree: f64) -> f64 {
    (mean_degree * width * height / (std::f64::consts::PI * n.max(1) as f64)).sqrt()
}

/// Preferential attachment: start from a clique of `m + 1` nodes; each new
/// node links to `m` distinct existing nodes chosen with probability
/// proportional to their degree.
pub fn barabasi_albert<R: Rng>(n: usize, m: usize, rng: &mut R) -> Graph {
    let m = m.max(1);
    let seed = (m + 1).min(n);
    let mut edges = Vec::new();
    // Each edge end appears once here, so a uniform pick is degree-weighted.
    let mut ends = Vec::new();
    for a in 0..seed {
        for b in a + 1..seed {
            edges.push((a, b));
            ends.extend([a, b]);
        }
    }
    for v in seed..n {
        let mut targets: Vec<usize> = Vec::with_capacity(m);
        while targets.len() < m.min(v) {
            let t = ends[rng.gen_range(0..ends.len())];
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
        for t in targets {
            edges.push((t, v));
            ends.extend([t, v]);
        }
    }
    Graph::from_edges(n, edges)
}

/// The Go simulator's format: each line is a whitespace-separated chain of
/// node names, consecutive names linked. `#` starts a comment. Nodes are
/// numbered in order of first appearance.
pub fn parse_edge_list(text: &str) -> Result<Graph, String> {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut names = Vec::new();
    let mut edges = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut prev: Option<usize> = None;
        for name in line.split_whitespace() {
            let id = *ids.entry(name.to_string()).or_insert_with(|| {
                names.push(name.to_string());
                names.len() - 1
            });
            if let Some(p) = prev {
                edges.push((p, id));
            }
            prev = Some(id);
        }
    }
    if names.is_empty() {
        return Err("the edge list names no nodes".into());
    }
    let mut g = Graph::from_edges(names.len(), edges);
    g.names = Some(names);
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shapes() {
        assert_eq!(line(5).edges, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(ring(4).edges.len(), 4);
        assert_eq!(grid(3, 3).edges.len(), 12);
        assert!(grid(4, 5).is_connected());
    }

    #[test]
    fn edge_list_chains() {
        let g = parse_edge_list("a b c\n# comment\nc d\nb d # tail").unwrap();
        assert_eq!(g.n, 4);
        assert_eq!(g.edges, vec![(0, 1), (1, 2), (1, 3), (2, 3)]);
        assert_eq!(g.names.unwrap()[3], "d");
    }

    #[test]
    fn ba_degree_and_connectivity() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let g = barabasi_albert(200, 2, &mut rng);
        assert!(g.is_connected());
        // m edges per new node plus the seed clique.
        assert_eq!(g.edges.len(), 3 + 2 * 197);
    }

    #[test]
    fn geometric_matches_brute_force() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let pos = random_positions(80, 100.0, 100.0, &mut rng);
        let fast = within_range(&pos, 20.0);
        let mut slow = Vec::new();
        for a in 0..80 {
            for b in a + 1..80 {
                if dist(pos[a], pos[b]) <= 20.0 {
                    slow.push((a, b));
                }
            }
        }
        assert_eq!(fast, slow);
        assert_eq!(nearest_links(&pos, 10).len(), 10);
    }

    #[test]
    fn patching_connects() {
        let mut g = Graph::from_edges(6, [(0, 1), (2, 3), (4, 5)]);
        assert_eq!(g.patch_connected(), 2);
        assert!(g.is_connected());
    }
}
