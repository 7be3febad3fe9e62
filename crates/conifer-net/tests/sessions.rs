//! QUIC sessions over the overlay, with HTTP/1.1 on each stream.

use std::time::Duration;

use axum::routing::{get, post};
use bytes::Bytes;
use conifer_net::session::{certificate_der, http_request, serve_router, Sessions};
use conifer_net::Node;
use conifer_overlay::router::RouterConfig;
use conifer_overlay::Identity;
use http_body_util::Full;
use hyper::Request;

const ALPN: &[u8] = b"conifer-test";

fn start(seed: u8) -> (Node, Sessions) {
    let id = Identity::from_seed([seed; 32]);
    let (node, rx) = Node::start(id.clone(), RouterConfig::default());
    let (sessions, _app) = Sessions::start(&node, &id, rx, &[ALPN]).unwrap();
    std::mem::forget(_app);
    (node, sessions)
}

fn app(name: String) -> axum::Router {
    axum::Router::new()
        .route(
            "/hello",
            get(move || async move { format!("hello from {name}") }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
}

async fn link(a: &Node, b: &Node) {
    let addr = b.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    a.connect_tcp(&addr.to_string(), "t").await.unwrap();
}

/// Retries while SNEK paths form (a bootstrap round or two).
async fn get_hello(s: &Sessions, to: &Node) -> String {
    for _ in 0..40 {
        let req = Request::get("/hello")
            .header("host", "x")
            .body(Full::default())
            .unwrap();
        let res = tokio::time::timeout(
            Duration::from_secs(2),
            http_request(s, to.public_key(), ALPN, req),
        )
        .await;
        if let Ok(Ok(res)) = res {
            assert_eq!(res.status(), 200);
            return String::from_utf8(res.body().to_vec()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no HTTP answer over the session");
}

#[tokio::test]
async fn http_over_a_session_between_two_nodes() {
    let (a, sa) = start(21);
    let (b, sb) = start(22);
    serve_router(&sb, ALPN, app(b.public_key().to_hex()));
    link(&a, &b).await;
    assert_eq!(
        get_hello(&sa, &b).await,
        format!("hello from {}", b.public_key())
    );

    // Many streams, concurrently, on the one cached connection.
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (sa, key) = (sa.clone(), b.public_key());
        tasks.push(tokio::spawn(async move {
            let body = vec![i; 1000 + i as usize * 100];
            let req = Request::post("/echo")
                .header("host", "x")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let res = http_request(&sa, key, ALPN, req).await.unwrap();
            assert_eq!(res.body().as_ref(), &body[..]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // And the other direction, over its own connection.
    serve_router(&sa, ALPN, app(a.public_key().to_hex()));
    assert_eq!(
        get_hello(&sb, &a).await,
        format!("hello from {}", a.public_key())
    );
}

#[tokio::test]
async fn a_large_body_crosses_a_relay() {
    let (a, sa) = start(31);
    let (m, _sm) = start(32);
    let (c, sc) = start(33);
    serve_router(&sc, ALPN, app("c".into()));
    link(&a, &m).await;
    link(&m, &c).await;
    assert_eq!(get_hello(&sa, &c).await, "hello from c");
    let body: Vec<u8> = (0..512 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let req = Request::post("/echo")
        .header("host", "x")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        http_request(&sa, c.public_key(), ALPN, req),
    )
    .await
    .expect("finishes")
    .unwrap();
    assert_eq!(res.body().len(), body.len());
    assert!(res.body().as_ref() == &body[..]);
}

#[tokio::test]
async fn dialling_ourselves_is_refused() {
    let (a, sa) = start(41);
    assert!(sa.dial(a.public_key(), ALPN).await.is_err());
}

#[tokio::test]
async fn certificate_parses_under_go_strict_x509() {
    let id = Identity::from_seed([9; 32]);
    let der = certificate_der(&id).unwrap();
    let dir = std::env::temp_dir().join(format!("conifer-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cert.der");
    std::fs::write(&path, &der).unwrap();
    let checker = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/x509check");
    let out = std::process::Command::new("go")
        .args(["run", "."])
        .arg(&path)
        .current_dir(checker)
        .env("GOFLAGS", "-mod=mod")
        .output()
        .expect("Go is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = id.public_key().to_hex();
    assert_eq!(
        text.trim(),
        format!("ok {hex} {hex} {hex} 1 1"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
