//! `/sync` cost against the number of rooms a user is in (issue 18:
//! "Incremental `/sync` touches only rooms that changed since the token").
//!
//! For each room count N: a user in N rooms (each with a few messages) takes
//! an initial sync, then, again and again, one message is sent to one room
//! and the user syncs incrementally. Reports the median and p90 of each, the
//! cost per room, and the incremental cost at the largest N over the smallest
//! (1.0 = flat in the number of rooms).
//!
//! `cargo bench -p conifer-homeserver --bench sync_rooms -- [N...]`
//! (default 100 1000).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{enc, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn measure(rooms: usize) -> (Duration, Duration, Duration, Duration) {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let mut ids = Vec::with_capacity(rooms);
    for n in 0..rooms {
        let room = s
            .create_room(
                &ann,
                json!({ "preset": "private_chat", "name": format!("room {n}") }),
            )
            .await;
        for m in 0..3 {
            s.send_text(&ann, &room, &format!("hello {m}")).await;
        }
        ids.push(room);
    }
    let mut initial = Vec::new();
    let mut token = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = s.sync(&ann, None, 0).await;
        initial.push(t.elapsed());
        token = r["next_batch"].as_str().unwrap().to_owned();
        assert_eq!(r["rooms"]["join"].as_object().unwrap().len(), rooms);
    }
    let mut incremental = Vec::new();
    for i in 0..60 {
        let room = &ids[(i * 7919) % rooms];
        let (status, _) = s
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/b{i}",
                    enc(room)
                ),
                &ann.token,
                json!({ "msgtype": "m.text", "body": "one more" }),
            )
            .await;
        assert_eq!(status, 200);
        let t = Instant::now();
        let r = s.sync(&ann, Some(&token), 0).await;
        incremental.push(t.elapsed());
        token = r["next_batch"].as_str().unwrap().to_owned();
        assert_eq!(r["rooms"]["join"].as_object().unwrap().len(), 1, "{r}");
    }
    (
        quantile(&mut initial, 0.5),
        quantile(&mut initial, 0.9),
        quantile(&mut incremental, 0.5),
        quantile(&mut incremental, 0.9),
    )
}

#[tokio::main]
async fn main() {
    let mut counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if counts.is_empty() {
        counts = vec![100, 1000];
    }
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>14} {:>16}",
        "rooms", "initial p50", "initial p90", "incr. p50", "incr. p90", "incr. µs/room"
    );
    let mut first = None;
    let mut last = Duration::ZERO;
    for &n in &counts {
        let (i50, i90, d50, d90) = measure(n).await;
        println!(
            "{n:>6} {:>14.2?} {:>14.2?} {:>14.2?} {:>14.2?} {:>16.2}",
            i50,
            i90,
            d50,
            d90,
            d50.as_secs_f64() * 1e6 / n as f64
        );
        first.get_or_insert(d50);
        last = d50;
    }
    if let Some(first) = first {
        println!(
            "incremental p50 at {} rooms / at {} rooms: {:.2}",
            counts.last().unwrap(),
            counts[0],
            last.as_secs_f64() / first.as_secs_f64()
        );
    }
}
