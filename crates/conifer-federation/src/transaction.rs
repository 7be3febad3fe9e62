//! Packing queued PDUs and EDUs into transactions: at most 50 PDUs and 100
//! EDUs each, oldest first (the spec's limits).

use serde_json::{json, Value};

pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;

/// One queued item, as the outbox stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: u64,
    pub is_pdu: bool,
    pub json: Value,
}

/// Takes the next transaction's items from the front of `queue` (oldest
/// first); returns the body and the IDs it carries.
pub fn next_transaction(origin: &str, now_ms: u64, queue: &[Queued]) -> Option<(Value, Vec<u64>)> {
    let (mut pdus, mut edus, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for q in queue {
        if q.is_pdu && pdus.len() < MAX_PDUS {
            pdus.push(q.json.clone());
        } else if !q.is_pdu && edus.len() < MAX_EDUS {
            edus.push(q.json.clone());
        } else {
            continue;
        }
        ids.push(q.id);
    }
    if ids.is_empty() {
        return None;
    }
    Some((
        json!({ "origin": origin, "origin_server_ts": now_ms, "pdus": pdus, "edus": edus }),
        ids,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_respect_the_limits_and_keep_order() {
        let queue: Vec<Queued> = (0..130)
            .map(|i| Queued {
                id: i,
                is_pdu: i % 2 == 0,
                json: json!(i),
            })
            .collect();
        let (body, ids) = next_transaction("a.example", 5, &queue).unwrap();
        assert_eq!(body["pdus"].as_array().unwrap().len(), MAX_PDUS);
        assert_eq!(body["edus"].as_array().unwrap().len(), 65);
        assert_eq!(body["pdus"][0], 0);
        assert_eq!(body["pdus"][49], 98);
        assert_eq!(ids.len(), 115);
        assert!(next_transaction("a.example", 5, &[]).is_none());
    }
}
