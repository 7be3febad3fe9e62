//! Helpers shared by the WebSocket hardening tests: nodes, pings, and a raw
//! WebSocket client and server that write whatever frame headers they like.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use conifer_net::{Delivery, Node};
use conifer_overlay::router::RouterConfig;
use conifer_overlay::{Identity, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

pub const LOOPBACK: &str = "127.0.0.1:0";

/// Opcodes of the WebSocket frames the tests write.
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_BINARY: u8 = 0x2;

pub fn node(seed: u8) -> (Node, mpsc::Receiver<Delivery>) {
    Node::start(Identity::from_seed([seed; 32]), RouterConfig::default())
}

/// Polls `f` every 50 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Pings until one gets through (SNEK paths take a bootstrap round to form).
pub async fn can_ping(from: &Node, rx: &mut mpsc::Receiver<Delivery>, to: PublicKey) -> bool {
    for seq in 0..40 {
        if from
            .ping(rx, to, seq, Duration::from_millis(250))
            .await
            .rtt
            .is_some()
        {
            return true;
        }
    }
    false
}

/// Answers pings in the background, like `conifer overlay` does.
pub fn echo(node: &Node, mut rx: mpsc::Receiver<Delivery>) {
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            node.answer_ping(&d);
        }
    });
}

/// Connects to `to` from `from` (any 127/8 address is loopback on Linux, so
/// tests can play several sources without root).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Reads an HTTP head (up to the blank line, at most 8 KiB).
pub async fn read_http_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too long",
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Sends a WebSocket upgrade request for `path` and returns the response head.
pub async fn request_upgrade(stream: &mut TcpStream, path: &str) -> io::Result<String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    read_http_head(stream).await
}

/// Connects from `from` and upgrades; fails unless the answer is 101.
pub async fn upgraded_from(from: IpAddr, to: SocketAddr, path: &str) -> io::Result<TcpStream> {
    let mut stream = connect_from(from, to).await?;
    let head = request_upgrade(&mut stream, path).await?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("upgrade refused: {head}")));
    }
    Ok(stream)
}

/// A WebSocket frame header declaring `len` payload bytes. Masked (as a
/// client must) with the all-zero key, so the payload goes out as written.
pub fn frame_header(fin: bool, opcode: u8, len: u64, masked: bool) -> Vec<u8> {
    let mut h = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        h.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(mask_bit | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(mask_bit | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        h.extend_from_slice(&[0, 0, 0, 0]);
    }
    h
}

/// Reads one whole WebSocket request head from a client and answers 101.
pub async fn accept_upgrade(stream: &mut TcpStream) -> io::Result<()> {
    let head = read_http_head(stream).await?;
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await
}

/// Whether the other end closes `stream` (EOF or reset) within `within`,
/// discarding whatever it sends first.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let drain = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, drain).await.is_ok()
}
