//! The limits that keep anonymous peers cheap: WebSocket message size, and
//! the cap on connections that have not finished the handshake.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use conifer_net::{
    Delivery, Node, HANDSHAKE_TIMEOUT, MAX_PENDING_PER_IP, MAX_PENDING_TOTAL, MAX_WS_MESSAGE,
};
use conifer_overlay::router::SendError;
use conifer_overlay::wire::{encode_handshake, HANDSHAKE_LEN, MAX_FRAME_LEN};
use conifer_overlay::{Identity, PublicKey};
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn peers_with(node: &Node, key: PublicKey) -> bool {
    node.status().peers.iter().any(|p| p.key == key)
}

/// Answers pings and hands every other delivery to the test.
fn echo_and_forward(node: &Node, mut rx: mpsc::Receiver<Delivery>) -> mpsc::Receiver<Delivery> {
    let (tx, out) = mpsc::channel(16);
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            if !node.answer_ping(&d) {
                let _ = tx.send(d).await;
            }
        }
    });
    out
}

/// Waits for `node` to count exactly `n` pending handshakes.
async fn pending_is(node: &Node, n: usize) -> bool {
    eventually(5, || node.pending_handshakes() == n).await
}

#[tokio::test]
async fn oversize_message_closes_only_that_peering() {
    let (b, brx) = node(0x61);
    let mut b_other = echo_and_forward(&b, brx);
    let addr = b.listen_ws(LOOPBACK.parse().unwrap(), "/ws").await.unwrap();
    let url = format!("ws://{addr}/ws");
    let (a, mut arx) = node(0x62);
    a.connect_ws(&url).await.unwrap();
    assert!(can_ping(&a, &mut arx, b.public_key()).await);

    // The largest payload the router frames still crosses a WebSocket: the
    // cap leaves room for a whole Pinecone frame.
    let mut len = MAX_FRAME_LEN;
    while let Err(SendError::TooLarge(_)) = a.send(b.public_key(), vec![0x5a; len]) {
        len -= 1;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), b_other.recv())
        .await
        .expect("largest payload delivered in time")
        .expect("delivery channel open");
    assert_eq!(got.payload.len(), len);
    assert_eq!(got.source, a.public_key());

    // Hostile 1 peers properly, then sends one message a byte over the cap.
    let h1 = Identity::from_seed([0x63; 32]);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::Binary(encode_handshake(&h1).to_vec()))
        .await
        .unwrap();
    assert!(eventually(5, || peers_with(&b, h1.public_key())).await);

    // Hostile 2 peers over a raw socket, then sends a message in 4 KiB
    // fragments (each well under the frame cap) that outgrows the message cap.
    let h2 = Identity::from_seed([0x64; 32]);
    let mut raw = upgraded_from(source(1), addr, "/ws").await.unwrap();
    let mut hello = frame_header(true, OP_BINARY, HANDSHAKE_LEN as u64, true);
    hello.extend_from_slice(&encode_handshake(&h2));
    raw.write_all(&hello).await.unwrap();
    assert!(eventually(5, || peers_with(&b, h2.public_key())).await);

    let _ = ws.send(Message::Binary(vec![0; MAX_WS_MESSAGE + 1])).await;
    let fragment = [0u8; 4096];
    let mut opcode = OP_BINARY;
    for _ in 0..=MAX_WS_MESSAGE / fragment.len() {
        let mut f = frame_header(false, opcode, fragment.len() as u64, true);
        f.extend_from_slice(&fragment);
        opcode = OP_CONTINUATION;
        if raw.write_all(&f).await.is_err() {
            break;
        }
    }

    assert!(eventually(5, || !peers_with(&b, h1.public_key())).await);
    assert!(eventually(5, || !peers_with(&b, h2.public_key())).await);
    assert!(closed_within(&mut raw, Duration::from_secs(5)).await);
    // The honest peering is untouched.
    assert!(peers_with(&b, a.public_key()));
    assert!(can_ping(&a, &mut arx, b.public_key()).await);
}

/// Opens `n` connections from `from` that send nothing, and checks each was
/// admitted: the TCP listener answers with its handshake at once.
async fn idle_tcp(from: IpAddr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut s = connect_from(from, to).await.unwrap();
        let mut theirs = [0u8; HANDSHAKE_LEN];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut theirs))
            .await
            .expect("admitted connection gets the handshake")
            .unwrap();
        out.push(s);
    }
    out
}

/// Whether a fresh connection from `from` is closed at once, without a byte.
async fn refused_at_once(from: IpAddr, to: SocketAddr) -> bool {
    let Ok(mut s) = connect_from(from, to).await else {
        return true;
    };
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn tcp_listener_caps_pending_handshakes_per_source_and_in_total() {
    let (b, brx) = node(0x71);
    echo(&b, brx);
    let addr = b.listen_tcp(LOOPBACK.parse().unwrap()).await.unwrap();

    let first = idle_tcp(source(1), addr, MAX_PENDING_PER_IP).await;
    assert!(pending_is(&b, MAX_PENDING_PER_IP).await);
    assert!(refused_at_once(source(1), addr).await, "per-source cap");
    // Other sources fill the node up to its total.
    let mut others = Vec::new();
    let mut n = 2;
    while MAX_PENDING_PER_IP * (others.len() + 1) < MAX_PENDING_TOTAL {
        others.push(idle_tcp(source(n), addr, MAX_PENDING_PER_IP).await);
        n += 1;
    }
    let rest = MAX_PENDING_TOTAL - MAX_PENDING_PER_IP * (others.len() + 1);
    others.push(idle_tcp(source(n), addr, rest).await);
    assert!(pending_is(&b, MAX_PENDING_TOTAL).await);
    assert!(refused_at_once(source(n + 1), addr).await, "total cap");

    // Freeing slots lets an honest peer in; once peered it holds none.
    drop(first);
    assert!(pending_is(&b, MAX_PENDING_TOTAL - MAX_PENDING_PER_IP).await);
    let (a, mut arx) = node(0x72);
    a.connect_tcp(&addr.to_string(), "tcp").await.unwrap();
    assert!(can_ping(&a, &mut arx, b.public_key()).await);
    assert!(pending_is(&b, MAX_PENDING_TOTAL - MAX_PENDING_PER_IP).await);
    drop(others);
    assert!(pending_is(&b, 0).await);
}

#[tokio::test]
async fn websocket_listener_caps_pending_handshakes() {
    let (b, brx) = node(0x81);
    echo(&b, brx);
    let addr = b.listen_ws(LOOPBACK.parse().unwrap(), "/ws").await.unwrap();

    // Not 127.0.0.1, where the honest node dials from.
    let hostile = source(2);
    // Some upgrade and stay silent, the rest never send a request: both count.
    let mut held = Vec::new();
    for i in 0..MAX_PENDING_PER_IP {
        if i % 2 == 0 {
            held.push(upgraded_from(hostile, addr, "/ws").await.unwrap());
        } else {
            held.push(connect_from(hostile, addr).await.unwrap());
        }
    }
    assert!(pending_is(&b, MAX_PENDING_PER_IP).await);
    assert!(refused_at_once(hostile, addr).await);
    // Another source is not affected, and its upgrade counts once, not twice.
    let (a, mut arx) = node(0x82);
    a.connect_ws(&format!("ws://{addr}/ws")).await.unwrap();
    assert!(can_ping(&a, &mut arx, b.public_key()).await);
    assert!(pending_is(&b, MAX_PENDING_PER_IP).await);
    drop(held);
    assert!(pending_is(&b, 0).await);
}

#[tokio::test]
async fn http_routes_under_another_server_refuse_excess_upgrades() {
    let (b, brx) = node(0x91);
    echo(&b, brx);
    // As `conifer run` serves them: merged into its own axum server.
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = b
        .http_routes("/ws")
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut held = Vec::new();
    for _ in 0..MAX_PENDING_PER_IP {
        held.push(upgraded_from(source(1), addr, "/ws").await.unwrap());
    }
    assert!(pending_is(&b, MAX_PENDING_PER_IP).await);
    let mut excess = connect_from(source(1), addr).await.unwrap();
    let head = request_upgrade(&mut excess, "/ws").await.unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(closed_within(&mut excess, Duration::from_secs(2)).await);
    // The manhole is no upgrade and is not limited.
    let mut manhole = connect_from(source(1), addr).await.unwrap();
    manhole
        .write_all(b"GET /manhole HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_http_head(&mut manhole).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(held);
    assert!(pending_is(&b, 0).await);
}

#[tokio::test]
async fn silent_connections_are_dropped_within_the_handshake_timeout() {
    let (b, _brx) = node(0xa1);
    let tcp = b.listen_tcp(LOOPBACK.parse().unwrap()).await.unwrap();
    let ws = b.listen_ws(LOOPBACK.parse().unwrap(), "/ws").await.unwrap();
    let mut silent_tcp = connect_from(source(1), tcp).await.unwrap();
    let mut silent_http = connect_from(source(1), ws).await.unwrap();
    let mut silent_upgrade = upgraded_from(source(1), ws, "/ws").await.unwrap();
    assert!(pending_is(&b, 3).await);
    let within = HANDSHAKE_TIMEOUT + Duration::from_secs(3);
    let (t, h, u) = tokio::join!(
        closed_within(&mut silent_tcp, within),
        closed_within(&mut silent_http, within),
        closed_within(&mut silent_upgrade, within),
    );
    assert!(t, "silent TCP connection kept");
    assert!(h, "connection that never sent its HTTP request kept");
    assert!(u, "silent WebSocket upgrade kept");
    assert!(pending_is(&b, 0).await);
}
