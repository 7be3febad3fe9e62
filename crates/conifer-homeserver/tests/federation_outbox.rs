//! The outbound federation queue: transactions within the spec's limits, in
//! order, retried after failures, restarted at once by a wake-up, and
//! resumed from the database after a restart.

use axum::body::Body;
use axum::extract::State;
use axum::routing::put;
use axum::Router;
use conifer_federation::{
    FederationRequest, FederationResponse, Transport, TransportError, TransportFuture,
};
use conifer_homeserver::{Config, Homeserver, OwnedServerName};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// A destination that fails its first `fail_first` transactions, then
/// records every transaction body it accepts.
#[derive(Clone, Default)]
struct Receiver {
    fail_first: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<Value>>>,
}

async fn receive(
    State(r): State<Receiver>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, &'static str) {
    let attempt = r.attempts.fetch_add(1, Ordering::SeqCst);
    if attempt < r.fail_first.load(Ordering::SeqCst) {
        return (axum::http::StatusCode::BAD_GATEWAY, "{}");
    }
    r.accepted
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    (axum::http::StatusCode::OK, "{}")
}

struct ToReceiver(Router);

impl Transport for ToReceiver {
    fn send(&self, r: FederationRequest) -> TransportFuture<'_> {
        Box::pin(async move {
            if r.destination != "two.test" {
                return Err(TransportError::Unreachable(r.destination));
            }
            let req = axum::http::Request::builder()
                .method(r.method.as_str())
                .uri(&r.uri)
                .body(Body::from(r.body.unwrap_or_default()))
                .unwrap();
            let resp = self
                .0
                .clone()
                .oneshot(req)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            Ok(FederationResponse {
                status: resp.status().as_u16(),
                body: vec![],
            })
        })
    }
}

fn open(dir: &std::path::Path, receiver: &Receiver) -> Arc<Homeserver> {
    let config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    let hs = Homeserver::open(
        config,
        &OwnedServerName::try_from("one.test").unwrap(),
        "k1",
        &[1; 32],
    )
    .unwrap();
    let router = Router::new()
        .route("/_matrix/federation/v1/send/:txn", put(receive))
        .with_state(receiver.clone());
    let _ = hs.transport.set(Arc::new(ToReceiver(router)));
    hs
}

async fn drained(hs: &Homeserver) {
    for _ in 0..200 {
        if hs.queued_for("two.test") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} items still queued", hs.queued_for("two.test"));
}

#[tokio::test]
async fn queued_items_go_out_in_order_in_bounded_transactions_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver {
        fail_first: Arc::new(AtomicUsize::new(1)),
        ..Default::default()
    };
    let hs = open(dir.path(), &receiver);
    let to = vec!["two.test".to_owned()];
    for i in 0..120 {
        hs.store.outbox_push(&to, true, &json!({ "n": i })).unwrap();
    }
    for i in 0..5 {
        hs.store
            .outbox_push(&to, false, &json!({ "edu": i }))
            .unwrap();
    }
    hs.start_federation_sender();
    // The first attempt fails and the queue backs off (2 s or more); a
    // wake-up for the destination retries at once.
    for _ in 0..100 {
        if receiver.attempts.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hs.wake_destination("two.test");
    tokio::time::timeout(Duration::from_millis(1_800), drained(&hs))
        .await
        .expect("a wake-up cuts the back-off short");

    let accepted = receiver.accepted.lock().unwrap().clone();
    let pdus: Vec<i64> = accepted
        .iter()
        .flat_map(|t| {
            t["pdus"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["n"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        pdus,
        (0..120).collect::<Vec<_>>(),
        "every PDU once, in order"
    );
    assert!(accepted
        .iter()
        .all(|t| t["pdus"].as_array().unwrap().len() <= 50
            && t["edus"].as_array().unwrap().len() <= 100));
    assert_eq!(accepted[0]["edus"].as_array().unwrap().len(), 5);
    assert_eq!(accepted[0]["origin"], "one.test");
}

#[tokio::test]
async fn the_outbox_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    {
        // Queued while the sender never ran (say, the process was killed).
        let hs = open(dir.path(), &receiver);
        hs.store
            .outbox_push(&["two.test".to_owned()], true, &json!({ "n": 1 }))
            .unwrap();
    }
    let hs = open(dir.path(), &receiver);
    assert_eq!(hs.queued_for("two.test"), 1);
    hs.start_federation_sender();
    tokio::time::timeout(Duration::from_secs(5), drained(&hs))
        .await
        .unwrap();
    assert_eq!(receiver.accepted.lock().unwrap()[0]["pdus"][0]["n"], 1);
}
