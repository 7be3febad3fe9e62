//! `/keys/query` and `/keys/claim` ask the remote servers at once, under one
//! deadline (the request's `timeout`): a server that fails or has not
//! answered by then is listed in `failures`, and the answer still holds the
//! keys of the local users and of every server that did answer.

mod common;
use common::federation::*;
use conifer_homeserver::Homeserver;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Posts `body` to the client API of `hs` as the device of `token`.
async fn post(hs: &Arc<Homeserver>, token: &str, path: &str, body: Value) -> (u16, Value) {
    let client = conifer_homeserver::client::router(hs.clone());
    let req = axum::http::Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = client.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A server that answers every request with `answer`, after `delay`.
fn slow_server(net: &InProcess, name: &str, delay: Duration, answer: Value) {
    let router = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move {
            tokio::time::sleep(delay).await;
            axum::Json(answer)
        }
    });
    net.servers.lock().unwrap().insert(name.to_owned(), router);
}

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { format!("ed25519:{device}"): "ed", format!("curve25519:{device}"): "curve" },
        "signatures": {},
    })
}

/// A user with one device and its keys (and one one-time key) on `hs`.
fn user_with_keys(hs: &Homeserver, user: &str, device: &str, token: &str) {
    hs.store.create_user(user, None, false, 0).unwrap();
    hs.store
        .create_device(user, device, None, token, 0)
        .unwrap();
    let one_time = vec![(
        "signed_curve25519:AAAA".to_owned(),
        json!({ "key": format!("otk-of-{user}"), "signatures": {} }),
    )];
    hs.store
        .upload_keys(
            user,
            device,
            Some(&device_keys(user, device)),
            &one_time,
            &[],
        )
        .unwrap();
}

#[tokio::test]
async fn a_silent_server_is_a_failure_and_the_others_keys_still_come() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    // silent.test takes the request and never answers within any deadline;
    // gone.test is not reachable at all.
    slow_server(&net, "silent.test", Duration::from_secs(600), json!({}));
    let (ann, bob, cat, dan) = (
        "@ann:one.test",
        "@bob:two.test",
        "@cat:silent.test",
        "@dan:gone.test",
    );
    user_with_keys(&one.hs, ann, "ANNDEV", "ann-token");
    user_with_keys(&two.hs, bob, "BOBDEV", "bob-token");

    let started = Instant::now();
    let (status, q) = post(
        &one.hs,
        "ann-token",
        "/_matrix/client/v3/keys/query",
        json!({ "device_keys": { ann: [], bob: [], cat: [], dan: [] }, "timeout": 1000 }),
    )
    .await;
    let took = started.elapsed();
    eprintln!("query with a silent server, timeout 1000: {took:?}");
    assert_eq!(status, 200, "{q}");
    assert!(
        took >= Duration::from_millis(900),
        "waited the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "gave up at the timeout: {took:?}"
    );
    assert_eq!(q["device_keys"][ann]["ANNDEV"]["user_id"], ann, "{q}");
    assert_eq!(q["device_keys"][bob]["BOBDEV"]["user_id"], bob, "{q}");
    assert!(q["device_keys"].get(cat).is_none(), "{q}");
    let failures = q["failures"].as_object().unwrap();
    let mut failed: Vec<&str> = failures.keys().map(String::as_str).collect();
    failed.sort();
    assert_eq!(failed, ["gone.test", "silent.test"], "{q}");
    for f in failures.values() {
        assert!(f.is_object(), "a failure is an object: {q}");
        assert_eq!(f["status"], 503, "{q}");
    }

    // The same for one-time keys: bob's is claimed, ann's too, silent.test fails.
    let started = Instant::now();
    let (status, c) = post(
        &one.hs,
        "ann-token",
        "/_matrix/client/v3/keys/claim",
        json!({
            "one_time_keys": {
                ann: { "ANNDEV": "signed_curve25519" },
                bob: { "BOBDEV": "signed_curve25519" },
                cat: { "CATDEV": "signed_curve25519" },
            },
            "timeout": 1000,
        }),
    )
    .await;
    let took = started.elapsed();
    eprintln!("claim with a silent server, timeout 1000: {took:?}");
    assert_eq!(status, 200, "{c}");
    assert!(
        took >= Duration::from_millis(900),
        "waited the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "gave up at the timeout: {took:?}"
    );
    assert_eq!(
        c["one_time_keys"][bob]["BOBDEV"]["signed_curve25519:AAAA"]["key"], "otk-of-@bob:two.test",
        "{c}"
    );
    assert_eq!(
        c["one_time_keys"][ann]["ANNDEV"]["signed_curve25519:AAAA"]["key"], "otk-of-@ann:one.test",
        "{c}"
    );
    let failed: Vec<&String> = c["failures"].as_object().unwrap().keys().collect();
    assert_eq!(failed, ["silent.test"], "{c}");
    assert!(c["failures"]["silent.test"].is_object(), "{c}");
}

#[tokio::test]
async fn slow_servers_are_asked_in_parallel() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    user_with_keys(&one.hs, "@ann:one.test", "ANNDEV", "ann-token");
    // Four servers that each take a second: asked one after another they
    // would take at least four.
    let names = ["s1.test", "s2.test", "s3.test", "s4.test"];
    let mut wanted = serde_json::Map::new();
    for name in names {
        let user = format!("@u:{name}");
        slow_server(
            &net,
            name,
            Duration::from_secs(1),
            json!({
                "device_keys": { user.clone(): { "DEV": device_keys(&user, "DEV") } },
                "one_time_keys": { user.clone(): { "DEV": { "signed_curve25519:B": { "key": name } } } },
            }),
        );
        wanted.insert(user, json!([]));
    }

    let started = Instant::now();
    let (status, q) = post(
        &one.hs,
        "ann-token",
        "/_matrix/client/v3/keys/query",
        json!({ "device_keys": wanted, "timeout": 10_000 }),
    )
    .await;
    let took = started.elapsed();
    eprintln!("query of four 1 s servers: {took:?}");
    assert_eq!(status, 200, "{q}");
    assert!(took < Duration::from_millis(3000), "in parallel: {took:?}");
    assert_eq!(q["failures"], json!({}), "{q}");
    for name in names {
        let user = format!("@u:{name}");
        assert_eq!(
            q["device_keys"][&user]["DEV"]["user_id"],
            user.as_str(),
            "{q}"
        );
    }

    let claim: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (format!("@u:{n}"), json!({ "DEV": "signed_curve25519" })))
        .collect();
    let started = Instant::now();
    let (status, c) = post(
        &one.hs,
        "ann-token",
        "/_matrix/client/v3/keys/claim",
        json!({ "one_time_keys": claim }),
    )
    .await;
    let took = started.elapsed();
    eprintln!("claim of four 1 s servers: {took:?}");
    assert_eq!(status, 200, "{c}");
    assert!(took < Duration::from_millis(3000), "in parallel: {took:?}");
    assert_eq!(c["failures"], json!({}), "{c}");
    for name in names {
        let user = format!("@u:{name}");
        assert_eq!(
            c["one_time_keys"][&user]["DEV"]["signed_curve25519:B"]["key"], name,
            "{c}"
        );
    }
}

#[tokio::test]
async fn a_server_that_refuses_is_a_failure_with_its_status() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    user_with_keys(&one.hs, "@ann:one.test", "ANNDEV", "ann-token");
    // A server that answers at once, but not with keys.
    let router = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::FORBIDDEN,
            axum::Json(json!({ "errcode": "M_FORBIDDEN", "error": "no" })),
        )
    });
    net.servers
        .lock()
        .unwrap()
        .insert("grumpy.test".into(), router);
    let (status, q) = post(
        &one.hs,
        "ann-token",
        "/_matrix/client/v3/keys/query",
        json!({ "device_keys": { "@ann:one.test": [], "@g:grumpy.test": [] } }),
    )
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["failures"]["grumpy.test"]["status"], 403, "{q}");
    assert!(q["failures"]["grumpy.test"]["message"].is_string(), "{q}");
    assert!(
        q["device_keys"]["@ann:one.test"]["ANNDEV"].is_object(),
        "{q}"
    );
}

#[tokio::test]
async fn bad_timeouts_are_refused_and_good_ones_accepted() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let ann = "@ann:one.test";
    user_with_keys(&one.hs, ann, "ANNDEV", "ann-token");
    for bad in [json!(-1), json!("1000"), json!(1.5), json!(true), json!({})] {
        for (path, field, wanted) in [
            (
                "/_matrix/client/v3/keys/query",
                "device_keys",
                json!({ ann: [] }),
            ),
            (
                "/_matrix/client/v3/keys/claim",
                "one_time_keys",
                json!({ ann: { "ANNDEV": "signed_curve25519" } }),
            ),
        ] {
            let (status, body) = post(
                &one.hs,
                "ann-token",
                path,
                json!({ field: wanted, "timeout": bad }),
            )
            .await;
            assert_eq!(
                (status, body["errcode"].as_str()),
                (400, Some("M_INVALID_PARAM")),
                "{path} timeout {bad}: {body}"
            );
        }
    }
    // A refused claim gave out no key.
    assert_eq!(
        one.hs
            .store
            .one_time_key_counts(ann, "ANNDEV")
            .unwrap()
            .get("signed_curve25519")
            .copied(),
        Some(1)
    );
    // Absent, null, zero and huge (cut to the maximum) are all fine.
    for good in [
        None,
        Some(json!(null)),
        Some(json!(0)),
        Some(json!(u64::MAX)),
    ] {
        let mut body = json!({ "device_keys": { ann: [] } });
        if let Some(t) = good.clone() {
            body["timeout"] = t;
        }
        let (status, q) = post(&one.hs, "ann-token", "/_matrix/client/v3/keys/query", body).await;
        assert_eq!(status, 200, "timeout {good:?}: {q}");
        assert!(q["device_keys"][ann]["ANNDEV"].is_object(), "{q}");
    }
}
