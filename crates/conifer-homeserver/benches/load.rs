//! Homeserver load benchmark: N users share a room, every one of them
//! long-polls `/sync` while all of them send messages as fast as the server
//! takes them. Prints one JSON line of figures for the server at `--url`
//! (process `--pid`): messages per second, send→sync latency, CPU seconds
//! and memory. `bench/homeserver-load.sh` runs it against Conifer and
//! Synapse in the same run.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    pid: u32,
    label: String,
    users: usize,
    messages: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        pid: 0,
        label: "server".into(),
        users: 10,
        messages: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().expect("flag needs a value");
        match k.as_str() {
            "--url" => a.url = v(),
            "--pid" => a.pid = v().parse().unwrap(),
            "--label" => a.label = v(),
            "--users" => a.users = v().parse().unwrap(),
            "--messages" => a.messages = v().parse().unwrap(),
            "--bench" => {}
            _ => {}
        }
    }
    assert!(
        !a.url.is_empty() && a.pid != 0,
        "usage: load --url URL --pid PID [--label L] [--users N] [--messages M]"
    );
    a
}

/// (user + system CPU seconds, resident MiB, peak resident MiB) of a process.
fn proc_stats(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (ticks / 100.0, kb("VmRSS:"), kb("VmHWM:"))
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Registers through the user-interactive flow both servers speak.
async fn register(http: &reqwest::Client, url: &str, name: &str) -> (String, String) {
    let endpoint = format!("{url}/_matrix/client/v3/register");
    let (_, challenge) = call(
        http,
        reqwest::Method::POST,
        endpoint.clone(),
        None,
        Some(json!({ "username": name, "password": "bench-password-1" })),
    )
    .await;
    let session = challenge["session"].clone();
    let (status, r) = call(http, reqwest::Method::POST, endpoint, None, Some(json!({
        "username": name, "password": "bench-password-1", "auth": { "type": "m.login.dummy", "session": session }
    })))
    .await;
    assert_eq!(status, 200, "register {name}: {r}");
    (
        r["user_id"].as_str().unwrap().to_owned(),
        r["access_token"].as_str().unwrap().to_owned(),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = a.url.trim_end_matches('/').to_owned();
    let run = format!(
        "{}{}",
        a.label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase(),
        std::process::id()
    );
    let (_, idle_rss, _) = proc_stats(a.pid);

    let mut users = Vec::new();
    for i in 0..a.users {
        users.push(register(&http, &url, &format!("load{run}u{i}")).await);
    }
    let (_, room) = call(
        &http,
        reqwest::Method::POST,
        format!("{url}/_matrix/client/v3/createRoom"),
        Some(&users[0].1),
        Some(json!({ "preset": "public_chat" })),
    )
    .await;
    let room = room["room_id"].as_str().unwrap().to_owned();
    let room_path: String = room
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    for (_, token) in &users[1..] {
        let (s, r) = call(
            &http,
            reqwest::Method::POST,
            format!("{url}/_matrix/client/v3/join/{room_path}"),
            Some(token),
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 200, "join: {r}");
    }

    // Everyone long-polls; deliveries are matched to send times by body.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let expected = a.users * a.messages * (a.users - 1);
    let filter = json!({ "room": { "timeline": { "limit": 200 } }, "presence": { "types": [] } })
        .to_string();
    let mut syncers = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let (http, url, token, sent, latencies, filter) = (
            http.clone(),
            url.clone(),
            token.clone(),
            sent.clone(),
            latencies.clone(),
            filter.clone(),
        );
        let me = format!("u{i}-");
        let (_, first) = call(
            &http,
            reqwest::Method::GET,
            format!("{url}/_matrix/client/v3/sync?filter={}", enc(&filter)),
            Some(&token),
            None,
        )
        .await;
        let mut since = first["next_batch"].as_str().unwrap().to_owned();
        syncers.push(tokio::spawn(async move {
            loop {
                let (s, r) = call(
                    &http,
                    reqwest::Method::GET,
                    format!(
                        "{url}/_matrix/client/v3/sync?timeout=30000&since={since}&filter={}",
                        enc(&filter)
                    ),
                    Some(&token),
                    None,
                )
                .await;
                if s != 200 {
                    continue;
                }
                let now = Instant::now();
                if let Some(rooms) = r["rooms"]["join"].as_object() {
                    for room in rooms.values() {
                        for e in room["timeline"]["events"].as_array().into_iter().flatten() {
                            if let Some(body) = e["content"]["body"].as_str() {
                                if body.starts_with(&me) {
                                    continue;
                                }
                                if let Some(t) = sent.lock().unwrap().get(body) {
                                    latencies
                                        .lock()
                                        .unwrap()
                                        .push(now.duration_since(*t).as_secs_f64() * 1000.0);
                                }
                            }
                        }
                    }
                }
                since = r["next_batch"].as_str().unwrap_or(&since).to_owned();
            }
        }));
    }

    let (cpu0, _, _) = proc_stats(a.pid);
    let start = Instant::now();
    let mut senders = Vec::new();
    for (i, (_, token)) in users.iter().enumerate() {
        let (http, url, token, sent, room_path, n) = (
            http.clone(),
            url.clone(),
            token.clone(),
            sent.clone(),
            room_path.clone(),
            a.messages,
        );
        senders.push(tokio::spawn(async move {
            for j in 0..n {
                let body = format!("u{i}-{j}");
                sent.lock().unwrap().insert(body.clone(), Instant::now());
                let (s, r) = call(
                    &http,
                    reqwest::Method::PUT,
                    format!("{url}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{body}"),
                    Some(&token),
                    Some(json!({ "msgtype": "m.text", "body": body })),
                )
                .await;
                assert_eq!(s, 200, "send: {r}");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let send_secs = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, _, peak_rss) = proc_stats(a.pid);
    for s in syncers {
        s.abort();
    }
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let total = a.users * a.messages;
    println!(
        "{}",
        json!({
            "server": a.label, "users": a.users, "messages": total,
            "messages_per_s": (total as f64 / send_secs * 10.0).round() / 10.0,
            "deliveries": lat.len(), "expected_deliveries": expected,
            "send_to_sync_ms_p50": (percentile(&lat, 0.5) * 100.0).round() / 100.0,
            "send_to_sync_ms_p99": (percentile(&lat, 0.99) * 100.0).round() / 100.0,
            "cpu_s": ((cpu1 - cpu0) * 100.0).round() / 100.0,
            "idle_rss_mib": (idle_rss * 10.0).round() / 10.0,
            "peak_rss_mib": (peak_rss * 10.0).round() / 10.0,
        })
    );
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
