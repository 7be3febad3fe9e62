//! Wire codec benchmarks over the captured Go Pinecone vectors.
//!
//! ```text
//! cargo bench -p conifer-overlay --bench codec -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `decode/<vector>`, `encode/<vector>`: one frame per iteration (elements/s);
//! * `handshake/*`: the 104-byte handshake, which signs or verifies;
//! * `deframer/*`: splitting a 1 MiB stream of mixed frames (bytes/s);
//! * `announcement/*`: checking every hop signature, and appending a signed hop.

use std::hint::black_box;

use conifer_overlay::wire::{
    decode_handshake, encode_handshake, Deframer, Frame, Root, SwitchAnnouncement,
};
use conifer_overlay::Identity;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::Value;

struct Vectors {
    /// `(id, bytes)` of every frame, the timestamped ones signed with their
    /// sender's seed as the capture describes.
    frames: Vec<(String, Vec<u8>)>,
    handshake: Vec<u8>,
}

fn vectors() -> Vectors {
    let v: Value = serde_json::from_str(include_str!("../tests/data/pinecone-vectors.json"))
        .expect("vectors JSON");
    let node = |name: &str| {
        let seed = hex::decode(v["nodes"][name]["seed_hex"].as_str().unwrap()).unwrap();
        Identity::from_seed(seed.try_into().unwrap())
    };
    let mut frames = Vec::new();
    let mut handshake = None;
    for f in v["frames"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap().to_owned();
        let raw = match f["hex"].as_str() {
            Some(h) => hex::decode(h).unwrap(),
            None => {
                let mut raw = hex::decode(f["hex_without_signature"].as_str().unwrap()).unwrap();
                let input = hex::decode(f["signature_input_hex"].as_str().unwrap()).unwrap();
                raw.extend_from_slice(&node(f["sender"].as_str().unwrap()).sign(&input));
                raw
            }
        };
        if id.starts_with("handshake") {
            handshake.get_or_insert(raw);
        } else {
            frames.push((id, raw));
        }
    }
    Vectors {
        frames,
        handshake: handshake.expect("a handshake vector"),
    }
}

fn frames(c: &mut Criterion) {
    let v = vectors();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (id, raw) in &v.frames {
        group.bench_with_input(BenchmarkId::from_parameter(id), raw, |b, raw| {
            b.iter(|| Frame::decode(black_box(raw)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (id, raw) in &v.frames {
        let frame = Frame::decode(raw).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(id), &frame, |b, frame| {
            b.iter(|| black_box(frame).encode().unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_and_verify", |b| {
        b.iter(|| decode_handshake(black_box(&v.handshake)).unwrap())
    });
    let identity = Identity::from_seed([0; 32]);
    group.bench_function("encode_and_sign", |b| {
        b.iter(|| encode_handshake(black_box(&identity)))
    });
    group.finish();
}

/// 1 MiB of the vector frames back to back, in a fixed shuffled order.
fn mixed_stream(v: &Vectors) -> Vec<u8> {
    let mut stream = Vec::with_capacity(1 << 20);
    let mut i = 0usize;
    while stream.len() < 1 << 20 {
        // A fixed stride over the frames so neighbours differ in type and size.
        stream.extend_from_slice(&v.frames[(i * 5) % v.frames.len()].1);
        i += 1;
    }
    stream
}

fn deframer(c: &mut Criterion) {
    let v = vectors();
    let stream = mixed_stream(&v);
    let mut group = c.benchmark_group("deframer");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(20);
    // Whole-stream push, 1500-byte reads (an Ethernet MTU), and the same with
    // every frame decoded as the router would.
    for (name, chunk, decode) in [
        ("split_1MiB_whole", stream.len(), false),
        ("split_1MiB_1500B_reads", 1500, false),
        ("split_and_decode_1MiB_1500B_reads", 1500, true),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut d = Deframer::new();
                let mut n = 0usize;
                for piece in black_box(&stream).chunks(chunk) {
                    d.push(piece);
                    while let Some(f) = d.next_frame().unwrap() {
                        if decode {
                            black_box(Frame::decode(f).unwrap());
                        }
                        n += 1;
                    }
                }
                n
            })
        });
    }
    group.finish();
}

/// An announcement from a root through `hops` signers (the root signs first).
fn announcement(hops: usize) -> (SwitchAnnouncement, Identity) {
    let ids: Vec<Identity> = (0..=hops as u8)
        .map(|i| Identity::from_seed([i + 1; 32]))
        .collect();
    let mut ann = SwitchAnnouncement::new(Root {
        key: ids[0].public_key(),
        seq: 42,
    });
    for (port, id) in ids[..hops].iter().enumerate() {
        ann = ann.with_hop(port as u64 + 1, id, true);
    }
    ann.verify_signatures().expect("built correctly");
    (ann, ids[hops].clone())
}

fn announcements(c: &mut Criterion) {
    let mut group = c.benchmark_group("announcement");
    group.throughput(Throughput::Elements(1));
    for hops in [1, 5] {
        let (ann, next) = announcement(hops);
        group.bench_function(format!("verify_signatures_{hops}_hop"), |b| {
            b.iter(|| black_box(&ann).verify_signatures().unwrap())
        });
        group.bench_function(format!("with_hop_resign_{hops}_hop"), |b| {
            b.iter(|| black_box(&ann).with_hop(7, &next, true))
        });
    }
    group.finish();
}

criterion_group!(benches, frames, deframer, announcements);
criterion_main!(benches);
