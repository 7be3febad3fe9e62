//! Sliding sync (MSC4186) against `/v3/sync` for a user in many rooms: a
//! homeserver on a loopback port with its SQLite file in a temporary
//! directory; a user in `--rooms` rooms (150) with `--messages` messages
//! (5) each, some from a second user. Measures, over `--runs` rounds (15),
//! the round trip of
//!
//! * an initial `/v3/sync` (timeline limit 1) and an incremental one after
//!   one new message;
//! * an initial sliding sync (one list, range 0–19, timeline limit 1,
//!   Element X's kind of `required_state`) and an incremental one (with
//!   `pos`) after one new message;
//!
//! and prints the medians, the 90th percentiles and the ratios as one JSON
//! object. `cargo bench -p conifer-homeserver --bench sliding [-- --rooms N]`.

use conifer_homeserver::{client, Config, Homeserver, OwnedServerName};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    async fn register(&self, name: &str) -> String {
        let r = self
            .call(
                "POST",
                "/_matrix/client/v3/register",
                None,
                Some(json!({ "username": name, "password": "bench-password", "auth": { "type": "m.login.dummy" } })),
            )
            .await;
        r["access_token"].as_str().unwrap().to_owned()
    }

    async fn send(&self, token: &str, room: &str, n: u64, text: &str) {
        self.call(
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/b{n}",
                enc(room)
            ),
            Some(token),
            Some(json!({ "msgtype": "m.text", "body": text })),
        )
        .await;
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, 90th percentile) in milliseconds.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (
        (at(0.5) * 100.0).round() / 100.0,
        (at(0.9) * 100.0).round() / 100.0,
    )
}

#[tokio::main]
async fn main() {
    let mut rooms_n = 150usize;
    let mut messages = 5u64;
    let mut runs = 15usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--rooms" => rooms_n = it.next().unwrap().parse().unwrap(),
            "--messages" => messages = it.next().unwrap().parse().unwrap(),
            "--runs" => runs = it.next().unwrap().parse().unwrap(),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.rate_limits.enabled = false;
    let name = OwnedServerName::try_from("bench.local").unwrap();
    let hs = Homeserver::open(config, &name, "bench", &[9; 32]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = client::router(hs.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = Client {
        http: reqwest::Client::new(),
        url,
    };

    let setup = Instant::now();
    let ann = c.register("ann").await;
    let bob = c.register("bob").await;
    let mut rooms = Vec::with_capacity(rooms_n);
    let mut txn = 0;
    for i in 0..rooms_n {
        let r = c
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&ann),
                Some(json!({ "preset": "public_chat", "name": format!("room {i}") })),
            )
            .await;
        let room = r["room_id"].as_str().unwrap().to_owned();
        c.call(
            "POST",
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            Some(&bob),
            Some(json!({})),
        )
        .await;
        for m in 0..messages {
            txn += 1;
            let who = if m % 2 == 0 { &ann } else { &bob };
            c.send(who, &room, txn, &format!("message {m} in room {i}"))
                .await;
        }
        rooms.push(room);
    }
    let setup_s = setup.elapsed().as_secs_f64();

    let filter = enc(&json!({ "room": { "timeline": { "limit": 1 } } }).to_string());
    let ss_body = json!({
        "lists": { "all": {
            "ranges": [[0, 19]],
            "timeline_limit": 1,
            "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]]
        } },
        "extensions": { "to_device": { "enabled": true }, "e2ee": { "enabled": true } }
    });

    let (mut v3_initial, mut v3_incr, mut ss_initial, mut ss_incr) =
        (vec![], vec![], vec![], vec![]);
    let (mut v3_bytes, mut ss_bytes) = (0usize, 0usize);
    for run in 0..runs {
        let room = &rooms[run * 7 % rooms.len()];
        // /v3/sync: initial, then incremental after one message.
        let t = Instant::now();
        let initial = c
            .call(
                "GET",
                &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"),
                Some(&ann),
                None,
            )
            .await;
        v3_initial.push(ms(t.elapsed()));
        v3_bytes = initial.to_string().len();
        let since = initial["next_batch"].as_str().unwrap().to_owned();
        txn += 1;
        c.send(&bob, room, txn, "new for v3").await;
        let t = Instant::now();
        let incr = c
            .call(
                "GET",
                &format!(
                    "/_matrix/client/v3/sync?timeout=0&filter={filter}&since={}",
                    enc(&since)
                ),
                Some(&ann),
                None,
            )
            .await;
        v3_incr.push(ms(t.elapsed()));
        assert!(incr["rooms"]["join"].get(room.as_str()).is_some());

        // Sliding sync: a new connection, then incremental after one message.
        let t = Instant::now();
        let initial = c
            .call(
                "POST",
                &format!("{SS}?timeout=0"),
                Some(&ann),
                Some(ss_body.clone()),
            )
            .await;
        ss_initial.push(ms(t.elapsed()));
        ss_bytes = initial.to_string().len();
        assert_eq!(initial["rooms"].as_object().unwrap().len(), 20.min(rooms_n));
        let pos = initial["pos"].as_str().unwrap().to_owned();
        txn += 1;
        c.send(&bob, room, txn, "new for sliding sync").await;
        let t = Instant::now();
        let incr = c
            .call(
                "POST",
                &format!("{SS}?timeout=0&pos={}", enc(&pos)),
                Some(&ann),
                Some(ss_body.clone()),
            )
            .await;
        ss_incr.push(ms(t.elapsed()));
        assert_eq!(incr["rooms"].as_object().unwrap().len(), 1, "{incr}");
    }
    let (v3i, v3i90) = stats(v3_initial);
    let (v3n, v3n90) = stats(v3_incr);
    let (ssi, ssi90) = stats(ss_initial);
    let (ssn, ssn90) = stats(ss_incr);
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "rooms": rooms_n,
            "messages_per_room": messages,
            "runs": runs,
            "setup_s": (setup_s * 10.0).round() / 10.0,
            "v3_sync_initial_ms_p50": v3i, "v3_sync_initial_ms_p90": v3i90,
            "v3_sync_incremental_ms_p50": v3n, "v3_sync_incremental_ms_p90": v3n90,
            "sliding_initial_ms_p50": ssi, "sliding_initial_ms_p90": ssi90,
            "sliding_incremental_ms_p50": ssn, "sliding_incremental_ms_p90": ssn90,
            "initial_v3_over_sliding": ratio(v3i, ssi),
            "incremental_v3_over_sliding": ratio(v3n, ssn),
            "v3_initial_bytes": v3_bytes,
            "sliding_initial_bytes": ss_bytes,
        })
    );
}
