//! Any bytes as the `filter` query parameter of `/sync` (an inline filter
//! definition or a stored filter's ID), and as a stored definition: no panic,
//! the limit stays within 1..=1000, and a filter read inline decides like the
//! same definition read from storage. Seeds: fuzz/seeds/sync_filter/.
#![no_main]

use conifer_homeserver::{SyncFilter, SyncFilterParam};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn decisions(f: &SyncFilter) -> Vec<bool> {
    let mut out = Vec::new();
    for kind in ["m.room.message", "m.room.member", "m.reaction", ""] {
        out.push(f.wants_timeline(kind));
        out.push(f.wants_state(kind));
    }
    for room in ["!a:a.test", "!b:a.test"] {
        out.push(f.wants_room(room));
    }
    out.extend([
        f.lazy_load_members,
        f.include_leave,
        f.presence_enabled,
        f.account_data_enabled,
    ]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(param) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(SyncFilterParam::Inline(f, _)) = SyncFilterParam::parse(param) {
        assert!((1..=1000).contains(&f.timeline_limit));
        let stored: Value = serde_json::from_str(param).expect("parsed inline, so JSON");
        let again = SyncFilter::from_json(&stored);
        assert_eq!(decisions(&f), decisions(&again));
        assert_eq!(f.timeline_limit, again.timeline_limit);
    }
    if let Ok(v) = serde_json::from_str::<Value>(param) {
        let f = SyncFilter::from_json(&v);
        assert!((1..=1000).contains(&f.timeline_limit));
        let _ = decisions(&f);
    }
});
