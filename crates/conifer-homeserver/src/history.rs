//! History from before this server joined a room, for `/messages`.
//!
//! Such events are stored outside the timeline (stream position 0): the
//! state and auth chain a join brought, and whatever backfill fetched. A
//! page of older history is read by walking the room graph back along
//! `prev_events` from the earliest timeline event, deepest first, so it is
//! exactly the events that came before, in order; join-time state appears
//! at its place in the graph and never stands in for messages that were
//! not fetched yet. Whenever the walk reaches an event whose predecessors
//! this server does not hold, it backfills from there first (Server-Server
//! API, "Backfilling and retrieving missing events": "When a server ...
//! wishes to retrieve history ... it may use the /backfill API").

use crate::error::ApiResult;
use crate::Homeserver;
use conifer_store::StoredEvent;
use std::collections::{BinaryHeap, HashSet};

/// Most events one walk visits (a bound on the work of one request).
const MAX_WALK: usize = 20_000;
/// Backfill rounds one page may trigger.
const BACKFILL_ROUNDS: usize = 3;

/// A page of older history.
pub struct HistoryPage {
    /// Deepest first.
    pub events: Vec<StoredEvent>,
    /// The token for the next page, if there may be more.
    pub next: Option<i64>,
}

struct Walk {
    events: Vec<StoredEvent>,
    /// Events whose predecessors are not stored.
    edge: Vec<String>,
    /// Whether the walk stopped with more left to read.
    cut: bool,
}

fn prev_events(e: &StoredEvent) -> Vec<String> {
    e.value()["prev_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            // Room versions 1 and 2 list `[id, hashes]` pairs.
            p.as_str()
                .or_else(|| p.get(0).and_then(|v| v.as_str()))
                .map(str::to_owned)
        })
        .collect()
}

impl Homeserver {
    /// Up to `limit` events from before the timeline with depth below
    /// `below`, whole depths at a time (events sharing a depth are never
    /// split across pages), backfilling from other servers where the graph
    /// has holes.
    pub(crate) async fn older_history_page(
        &self,
        room: &str,
        below: i64,
        limit: usize,
    ) -> ApiResult<HistoryPage> {
        let mut tried: HashSet<String> = HashSet::new();
        let mut rounds = 0;
        loop {
            let walk = self.walk_history(room, below, limit)?;
            let fresh: Vec<String> = walk
                .edge
                .iter()
                .filter(|id| !tried.contains(*id))
                .cloned()
                .collect();
            if !fresh.is_empty() && rounds < BACKFILL_ROUNDS {
                rounds += 1;
                tried.extend(fresh.iter().cloned());
                if self.backfill_from(room, &fresh).await {
                    continue;
                }
            }
            let at_start = walk
                .events
                .last()
                .is_some_and(|e| e.value()["type"] == "m.room.create");
            let more = !at_start && (walk.cut || !walk.edge.is_empty());
            let next = walk.events.last().map(|e| e.depth).filter(|_| more);
            return Ok(HistoryPage {
                events: walk.events,
                next,
            });
        }
    }

    fn walk_history(&self, room: &str, below: i64, limit: usize) -> ApiResult<Walk> {
        let mut heap: BinaryHeap<(i64, String)> = BinaryHeap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let start = self.store.room_events(room, 0, u64::MAX >> 1, false, 1)?;
        for e in start {
            seen.insert(e.event_id.clone());
            heap.push((e.depth, e.event_id));
        }
        let mut out: Vec<StoredEvent> = Vec::new();
        let mut edge = Vec::new();
        let mut cut = false;
        let mut steps = 0;
        while let Some((depth, id)) = heap.pop() {
            if out.len() >= limit && out.last().is_some_and(|l| depth < l.depth) {
                cut = true;
                break;
            }
            steps += 1;
            if steps > MAX_WALK {
                cut = true;
                break;
            }
            let Some(e) = self.store.event(&id)? else {
                continue;
            };
            let mut lacking = false;
            for prev in prev_events(&e) {
                if !seen.insert(prev.clone()) {
                    continue;
                }
                match self.store.event(&prev)? {
                    Some(p) if p.room_id == room => heap.push((p.depth, prev)),
                    Some(_) => {}
                    None => lacking = true,
                }
            }
            if lacking {
                edge.push(e.event_id.clone());
            }
            if e.stream_pos == 0 && e.depth < below {
                out.push(e);
            }
        }
        Ok(Walk {
            events: out,
            edge,
            cut,
        })
    }
}
