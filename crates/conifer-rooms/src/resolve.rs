//! State resolution v2 (through Ruma) over states keyed by plain strings.

use crate::{versions::rules_for, BuildError, Pdu};
use ruma::events::StateEventType;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A room state: `(type, state_key) → event ID`.
pub type StateIdMap = HashMap<(String, String), OwnedEventId>;

/// Resolves the states of several forks of a room into one, by the rules of
/// the room's version. `fetch` must know every event of the forks and their
/// auth chains.
pub fn resolve_state(
    version: &str,
    forks: &[StateIdMap],
    fetch: impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> Result<StateIdMap, BuildError> {
    let (_, rules) =
        rules_for(version).ok_or_else(|| BuildError::UnsupportedVersion(version.to_owned()))?;
    let state_res_rules = rules
        .state_res
        .v2_rules()
        .ok_or_else(|| BuildError::UnsupportedVersion(version.to_owned()))?;
    let maps: Vec<StateMap<OwnedEventId>> = forks
        .iter()
        .map(|f| {
            f.iter()
                .map(|((t, k), id)| ((StateEventType::from(t.as_str()), k.clone()), id.clone()))
                .collect()
        })
        .collect();
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = forks
        .iter()
        .map(|f| auth_chain(f.values(), &fetch).into_iter().collect())
        .collect();
    let subgraph = |conflicted: &StateMap<Vec<OwnedEventId>>| {
        let ids: Vec<OwnedEventId> = conflicted.values().flatten().cloned().collect();
        Some(conflicted_subgraph(&ids, &fetch).into_iter().collect())
    };
    let resolved = ruma::state_res::resolve(
        &rules.authorization,
        state_res_rules,
        &maps,
        auth_chains,
        |id| fetch(id),
        subgraph,
    )
    .map_err(|e| BuildError::Invalid(format!("state resolution failed: {e}")))?;
    Ok(resolved
        .into_iter()
        .map(|((t, k), id)| ((t.to_string(), k), id))
        .collect())
}

/// Every event reachable through `auth_events` from the given ones (not
/// including them).
pub fn auth_chain<'a>(
    from: impl IntoIterator<Item = &'a OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> HashSet<OwnedEventId> {
    let mut seen = HashSet::new();
    let mut todo: Vec<OwnedEventId> = from
        .into_iter()
        .filter_map(|id| fetch(id))
        .flat_map(|e| e.auth_events.clone())
        .collect();
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            if let Some(e) = fetch(&id) {
                todo.extend(e.auth_events.iter().cloned());
            }
        }
    }
    seen
}

/// The conflicted state subgraph (room version 12): events that descend,
/// through auth events, from one conflicted event and lead to another.
fn conflicted_subgraph(
    conflicted: &[OwnedEventId],
    fetch: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
) -> HashSet<OwnedEventId> {
    let targets: HashSet<&OwnedEventId> = conflicted.iter().collect();
    let mut out: HashSet<OwnedEventId> = conflicted.iter().cloned().collect();
    for start in conflicted {
        // Walk back from each conflicted event; keep the paths that reach another conflicted event.
        let mut path_to_target: HashMap<OwnedEventId, bool> = HashMap::new();
        fn reaches(
            id: &OwnedEventId,
            targets: &HashSet<&OwnedEventId>,
            fetch: &impl Fn(&EventId) -> Option<Arc<Pdu>>,
            memo: &mut HashMap<OwnedEventId, bool>,
        ) -> bool {
            if let Some(r) = memo.get(id) {
                return *r;
            }
            memo.insert(id.clone(), false);
            let r = fetch(id).is_some_and(|e| {
                e.auth_events
                    .iter()
                    .any(|a| targets.contains(a) || reaches(a, targets, fetch, memo))
            });
            memo.insert(id.clone(), r);
            r
        }
        reaches(start, &targets, fetch, &mut path_to_target);
        out.extend(
            path_to_target
                .into_iter()
                .filter(|(_, r)| *r)
                .map(|(id, _)| id),
        );
    }
    out
}
