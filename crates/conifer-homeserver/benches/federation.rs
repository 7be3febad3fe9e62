//! Federation benchmarks, two Conifer servers in one process joined by an
//! in-process transport (the federation routers are called exactly as over
//! the network, X-Matrix and all; only sockets and TLS are left out):
//!
//! 1. **Ingest**: server B's user sends N messages into A's room; their PDUs
//!    are taken from B's outbox and delivered to A's `/send` in transactions
//!    of 50. A checks format, signatures, hashes, auth against auth events
//!    and state, and persists each. Reports events per second and per
//!    CPU-second of the process.
//! 2. **Join**: A's room has M members; B's user joins it (make_join,
//!    send_join, checking every state and auth-chain event, storing the
//!    room). Reports the time the join takes.
//!
//! `cargo bench -p conifer-homeserver --bench federation -- [N] [M]`
//! (defaults 20 000 and 1 000).

#[path = "../tests/common/federation.rs"]
#[allow(dead_code)]
mod common;

use common::{public_room, server, InProcess};
use conifer_federation::{sign_request, FederationRequest, Transport, MAX_PDUS};
use conifer_rooms::EventTemplate;
use serde_json::json;
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn member(user: &str) -> EventTemplate {
    EventTemplate {
        kind: "m.room.member".into(),
        state_key: Some(user.into()),
        content: json!({ "membership": "join" }),
        redacts: None,
    }
}

async fn ingest(n: usize) {
    let net = InProcess::default();
    let a = server("a.bench", "a", 1, &net);
    let b = server("b.bench", "b", 2, &net);
    let room = public_room(&a.hs, "@alice:a.bench", None).await;
    b.hs.join_remote(&room, "@bob:b.bench", &["a.bench".into()])
        .await
        .unwrap();
    for i in 0..n {
        let msg = EventTemplate {
            kind: "m.room.message".into(),
            state_key: None,
            content: json!({ "msgtype": "m.text", "body": format!("message {i}") }),
            redacts: None,
        };
        b.hs.send_event(&room, "@bob:b.bench", msg, None)
            .await
            .unwrap();
    }
    let pdus = b.hs.store.outbox_peek("a.bench", n + 10).unwrap();
    let pdus: Vec<serde_json::Value> = pdus
        .into_iter()
        .filter(|q| q.is_pdu)
        .map(|q| q.json)
        .collect();
    assert_eq!(pdus.len(), n, "B queued one PDU per message");

    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for (t, chunk) in pdus.chunks(MAX_PDUS).enumerate() {
        let body = json!({ "origin": "b.bench", "origin_server_ts": 0, "pdus": chunk });
        let uri = format!("/_matrix/federation/v1/send/bench-{t}");
        let auth = sign_request(&b.hs.key, "PUT", &uri, "a.bench", Some(&body)).unwrap();
        let r = net
            .send(FederationRequest {
                destination: "a.bench".into(),
                method: "PUT".into(),
                uri,
                body: Some(serde_json::to_vec(&body).unwrap()),
                authorization: Some(auth),
            })
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let errors = answer["pdus"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.get("error").is_some())
            .count();
        assert_eq!(errors, 0, "A rejected PDUs: {answer}");
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let last = pdus.last().unwrap()["content"]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored =
        a.hs.store
            .room_events(&room, 0, u64::MAX >> 1, true, 1)
            .unwrap();
    assert!(
        stored[0].json.contains(&last),
        "A's newest event is B's last message"
    );
    println!(
        "ingest  {n} PDUs in {wall:.2} s wall, {cpu:.2} CPU-s: {:.0} events/s, {:.0} events per CPU-second",
        n as f64 / wall,
        n as f64 / cpu
    );
}

async fn join(members: usize) {
    let net = InProcess::default();
    let a = server("a.bench", "a", 1, &net);
    let b = server("b.bench", "b", 2, &net);
    let room = public_room(&a.hs, "@alice:a.bench", None).await;
    for i in 1..members {
        let user = format!("@member{i}:a.bench");
        a.hs.send_event(&room, &user, member(&user), None)
            .await
            .unwrap();
    }
    let state = a.hs.store.current_state(&room).unwrap().len();
    let started = Instant::now();
    b.hs.join_remote(&room, "@bob:b.bench", &["a.bench".into()])
        .await
        .unwrap();
    let took = started.elapsed();
    let joined = b.hs.store.room_members(&room, Some("join")).unwrap().len();
    assert_eq!(joined, members + 1, "B sees every member after its join");
    println!(
        "join    a room of {members} members ({state} state events) in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let m = args.get(1).copied().unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        ingest(n).await;
        join(m).await;
    });
}
