//! Homeserver load benchmark: N users share a room and every one of them
//! long-polls `/sync`. Two phases: first the users send at a fixed total rate
//! (open loop, `--rate` messages per second for `--seconds`), which gives the
//! send→sync latency of a server that keeps up; then all of them send as fast
//! as the server answers (closed loop, `--messages` each), which gives the
//! throughput and the latency under saturation. Prints one JSON line for the
//! server at `--url` (process `--pid`), CPU seconds and memory included.
//! `bench/homeserver-load.sh` runs it against Conifer and Synapse in one run.

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
    rate: f64,
    seconds: f64,
    /// Extra users in no room, each long-polling `/sync` the whole time.
    idle: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        pid: 0,
        label: "server".into(),
        users: 10,
        messages: 50,
        rate: 20.0,
        seconds: 10.0,
        idle: 0,
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
            "--rate" => a.rate = v().parse().unwrap(),
            "--seconds" => a.seconds = v().parse().unwrap(),
            "--idle" => a.idle = v().parse().unwrap(),
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
    // Body → (send time, sender index); deliveries → (body, latency in ms).
    let sent: Arc<Mutex<HashMap<String, (Instant, usize)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<(String, f64)>>> = Arc::default();
    let filter = json!({ "room": { "timeline": { "limit": 200 } }, "presence": { "types": [] } })
        .to_string();
    let mut syncers = Vec::new();
    // Idle clients: registered, in no room, long-polling all along. A
    // server whose long-polls all wake for every message pays for each.
    for i in 0..a.idle {
        let (_, token) = register(&http, &url, &format!("load{run}idle{i}")).await;
        let (http, url, filter) = (http.clone(), url.clone(), filter.clone());
        let (_, first) = call(
            &http,
            reqwest::Method::GET,
            format!("{url}/_matrix/client/v3/sync?filter={}", enc(&filter)),
            Some(&token),
            None,
        )
        .await;
        let mut since = first["next_batch"].as_str().unwrap_or("").to_owned();
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
                if s == 200 {
                    since = r["next_batch"].as_str().unwrap_or(&since).to_owned();
                }
            }
        }));
    }
    for (i, (_, token)) in users.iter().enumerate() {
        let (http, url, token, sent, latencies, filter) = (
            http.clone(),
            url.clone(),
            token.clone(),
            sent.clone(),
            latencies.clone(),
            filter.clone(),
        );
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
                                let seen = sent.lock().unwrap().get(body).copied();
                                if let Some((t, sender)) = seen.filter(|(_, sender)| *sender != i) {
                                    let _ = sender;
                                    let ms = now.duration_since(t).as_secs_f64() * 1000.0;
                                    latencies.lock().unwrap().push((body.to_owned(), ms));
                                }
                            }
                        }
                    }
                }
                since = r["next_batch"].as_str().unwrap_or(&since).to_owned();
            }
        }));
    }

    let tokens: Arc<Vec<String>> = Arc::new(users.iter().map(|(_, t)| t.clone()).collect());
    let send = {
        let (http, url, sent, room_path) =
            (http.clone(), url.clone(), sent.clone(), room_path.clone());
        move |i: usize, body: String| {
            let (http, url, token, sent, room_path) = (
                http.clone(),
                url.clone(),
                tokens[i].clone(),
                sent.clone(),
                room_path.clone(),
            );
            async move {
                sent.lock()
                    .unwrap()
                    .insert(body.clone(), (Instant::now(), i));
                let path =
                    format!("{url}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{body}");
                let (s, r) = call(
                    &http,
                    reqwest::Method::PUT,
                    path,
                    Some(&token),
                    Some(json!({ "msgtype": "m.text", "body": body })),
                )
                .await;
                assert_eq!(s, 200, "send: {r}");
            }
        }
    };
    let wait_for = |n: usize| {
        let latencies = latencies.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while latencies.lock().unwrap().len() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Phase 1: a fixed offered rate, round-robin over the users.
    let (cpu_paced0, _, _) = proc_stats(a.pid);
    let paced = (a.rate * a.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let mut tick = tokio::time::interval(interval);
    let mut pending = Vec::new();
    for j in 0..paced {
        tick.tick().await;
        pending.push(tokio::spawn(send(
            j % a.users,
            format!("p{}-{j}", j % a.users),
        )));
    }
    for p in pending {
        p.await.unwrap();
    }
    wait_for(paced * (a.users - 1)).await;
    let (cpu_paced1, _, _) = proc_stats(a.pid);

    // Phase 2: everyone sends back to back.
    let (cpu0, _, _) = proc_stats(a.pid);
    let start = Instant::now();
    let mut senders = Vec::new();
    for i in 0..a.users {
        let send = send.clone();
        let n = a.messages;
        senders.push(tokio::spawn(async move {
            for j in 0..n {
                send(i, format!("u{i}-{j}")).await;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let send_secs = start.elapsed().as_secs_f64();
    wait_for(paced * (a.users - 1) + a.users * a.messages * (a.users - 1)).await;
    let (cpu1, _, peak_rss) = proc_stats(a.pid);
    for s in syncers {
        s.abort();
    }
    let all = latencies.lock().unwrap().clone();
    let sorted = |prefix: char| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|(b, _)| b.starts_with(prefix))
            .map(|(_, l)| *l)
            .collect();
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v
    };
    let (paced_lat, loaded_lat) = (sorted('p'), sorted('u'));
    let total = a.users * a.messages;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "server": a.label, "users": a.users,
            "paced_rate": a.rate, "paced_messages": paced,
            "paced_deliveries": paced_lat.len(), "paced_expected": paced * (a.users - 1),
            "paced_send_to_sync_ms_p50": r2(percentile(&paced_lat, 0.5)),
            "paced_send_to_sync_ms_p99": r2(percentile(&paced_lat, 0.99)),
            "messages": total,
            "messages_per_s": (total as f64 / send_secs * 10.0).round() / 10.0,
            "deliveries": loaded_lat.len(), "expected_deliveries": total * (a.users - 1),
            "loaded_send_to_sync_ms_p50": r2(percentile(&loaded_lat, 0.5)),
            "loaded_send_to_sync_ms_p99": r2(percentile(&loaded_lat, 0.99)),
            "cpu_s_saturated_phase": r2(cpu1 - cpu0),
            "idle_syncers": a.idle,
            "cpu_ms_per_paced_message": r2((cpu_paced1 - cpu_paced0) * 1000.0 / paced.max(1) as f64),
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
