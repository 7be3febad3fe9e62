//! Property-based fuzzing of the wire codec, bounded so it runs in CI in a few
//! seconds (debug build, 2 cores). `PROPTEST_CASES=N` overrides every test's
//! case count for a longer soak; `fuzz/` holds the coverage-guided cargo-fuzz
//! targets for the same decoders.
//!
//! * (a) arbitrary bytes never panic any decoder;
//! * (b) whatever decodes as a frame re-encodes canonically and re-decodes equal;
//! * (c) the deframer gives the same frames however the stream is split;
//! * (d) generated valid frames of every type round-trip byte for byte;
//! * (e) mutated captured vectors never panic.

use conifer_overlay::wire::{
    decode_handshake, varint, Bootstrap, Coordinates, DecodeError, Deframer, Frame, FrameTooLarge,
    Hop, Root, SignedPayload, SwitchAnnouncement, Traffic, WakeupBroadcast, Watermark, HEADER_LEN,
    MAGIC,
};
use conifer_overlay::PublicKey;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// `cases` unless `PROPTEST_CASES` is set.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Shrinking a rare failure must not turn a CI run into a long one.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// The captured vectors.

/// Every frame and handshake in the vectors file; the timestamped ones get a
/// zero signature, which decodes fine (it just does not verify).
fn vector_messages() -> Vec<Vec<u8>> {
    let v: Value =
        serde_json::from_str(include_str!("data/pinecone-vectors.json")).expect("vectors JSON");
    let mut out = Vec::new();
    for f in v["frames"].as_array().unwrap() {
        let raw = match f["hex"].as_str() {
            Some(h) => hex::decode(h).unwrap(),
            None => {
                let mut raw = hex::decode(f["hex_without_signature"].as_str().unwrap()).unwrap();
                raw.extend_from_slice(&[0u8; 64]);
                raw
            }
        };
        out.push(raw);
    }
    for n in v["negative"].as_array().unwrap() {
        out.push(hex::decode(n["hex"].as_str().unwrap()).unwrap());
    }
    out
}

/// Only the frames (not handshakes, not negative cases).
fn vector_frames() -> Vec<Vec<u8>> {
    vector_messages()
        .into_iter()
        .filter(|m| m.starts_with(&MAGIC) && Frame::decode(m).is_ok())
        .collect()
}

// ---------------------------------------------------------------------------
// Shared checks.

/// Decodes with every decoder, touching every accessor; must never panic.
fn exercise_all_decoders(bytes: &[u8]) {
    if let Ok(frame) = Frame::decode(bytes) {
        check_frame_round_trip(bytes, &frame);
    }
    let _ = decode_handshake(bytes);
    if let Ok(ann) = SwitchAnnouncement::decode(bytes) {
        let _ = ann.sanity_check(PublicKey::default());
        let _ = (ann.coords(), ann.peer_coords(), ann.encoded_len());
    }
    if let Ok(p) = SignedPayload::decode(bytes) {
        assert_eq!(p.encoded_len(), bytes.len());
    }
    if let Ok((c, used)) = Coordinates::decode(bytes) {
        assert!(used <= bytes.len());
        assert_eq!(c.encoded_len(), used);
    }
    if let Ok((v, used)) = varint::get_varint(bytes) {
        assert!((1..=varint::MAX_VARINT_LEN).contains(&used));
        assert_eq!(varint::varint_len(v), used, "only minimal varints decode");
    }
    let mut d = Deframer::new();
    d.push(bytes);
    while let Ok(Some(f)) = d.next_frame() {
        let _ = Frame::decode(f);
    }
}

/// (b) A decoded frame re-encodes to the input with the unpreserved header
/// bytes normalised, and that re-decodes to the same frame.
fn check_frame_round_trip(input: &[u8], frame: &Frame) {
    assert_eq!(frame.encoded_len(), input.len(), "encoded_len of {frame:?}");
    if let Frame::Unknown { length, .. } = frame {
        assert_eq!(*length, input.len());
        // Unknown frames are only ever dropped and encode as nothing.
        assert_eq!(frame.encode(), Ok(Vec::new()));
        return;
    }
    let encoded = frame
        .encode()
        .expect("a decoded frame fits the length field");
    assert_eq!(Frame::decode(&encoded).as_ref(), Ok(frame), "re-decode");

    // Byte-for-byte, except version (4) and extra (6) are written as 0 and the
    // hop limit (7) only survives on traffic and broadcasts.
    let mut expected = input.to_vec();
    expected[4] = 0;
    expected[6] = 0;
    if !matches!(frame, Frame::Traffic(_) | Frame::WakeupBroadcast(_)) {
        expected[7] = 0;
    }
    assert_eq!(encoded, expected, "canonical re-encoding of {frame:?}");
}

/// Frames the deframer yields (decoded), and how it stopped.
#[derive(Debug, PartialEq)]
struct DeframerRun {
    frames: Vec<Vec<u8>>,
    error: Option<DecodeError>,
    buffered: usize,
}

/// Drains every complete frame; an error ends the stream for good.
fn drain(d: &mut Deframer, run: &mut DeframerRun) -> bool {
    loop {
        match d.next_frame() {
            Ok(Some(f)) => run.frames.push(f.to_vec()),
            Ok(None) => return true,
            Err(e) => {
                run.error = Some(e);
                return false;
            }
        }
    }
}

fn deframe_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> DeframerRun {
    let mut d = Deframer::new();
    let mut run = DeframerRun {
        frames: Vec::new(),
        error: None,
        buffered: 0,
    };
    for chunk in chunks {
        d.push(chunk);
        if !drain(&mut d, &mut run) {
            break;
        }
    }
    run.buffered = d.buffered();
    run
}

/// Cuts `stream` at the given (sorted, de-duplicated) fractions of its length.
fn split_at<'a>(stream: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points {
        out.push(&stream[prev..p]);
        prev = p;
    }
    out.push(&stream[prev..]);
    out
}

fn check_deframer_splits(stream: &[u8], cuts: &[Index]) {
    let whole = deframe_chunks([stream]);
    let pieces = split_at(stream, cuts);
    let split = deframe_chunks(pieces.iter().copied());
    let bytewise = deframe_chunks(stream.chunks(1));
    // Frames are contiguous prefixes of the stream.
    let consumed: usize = whole.frames.iter().map(Vec::len).sum();
    assert_eq!(whole.frames.concat(), stream[..consumed]);
    if whole.error.is_none() {
        assert_eq!(whole.buffered, stream.len() - consumed);
    }
    // An error stops the reader, so what is left buffered may differ; the
    // frames and the verdict may not.
    assert_eq!(split.frames, whole.frames);
    assert_eq!(split.error, whole.error);
    assert_eq!(bytewise.frames, whole.frames);
    assert_eq!(bytewise.error, whole.error);
    if whole.error.is_none() {
        assert_eq!(split.buffered, whole.buffered);
        assert_eq!(bytewise.buffered, whole.buffered);
    }
}

// ---------------------------------------------------------------------------
// Strategies.

/// Bytes that look like a frame: the magic, a type in 0..=5 (5 is unknown), a
/// length that usually matches, then a random body. Raw random bytes almost
/// never get past the magic.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 4]>(),
        0u8..=5,
        vec(any::<u8>(), 0..300),
        prop_oneof![4 => Just(None), 1 => any::<u16>().prop_map(Some)],
    )
        .prop_map(|([version, extra, hop, _], ty, body, length)| {
            let len = length.unwrap_or((HEADER_LEN + body.len()) as u16);
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&[version, ty, extra, hop]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
            out
        })
}

fn key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(PublicKey),
        Just(PublicKey::MAX),
        Just(PublicKey::default()),
    ]
}

fn signature() -> impl Strategy<Value = [u8; 64]> {
    prop::array::uniform::<_, 64>(any::<u8>())
}

/// Varint values across every encoded length, including the extremes.
fn varint_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=300,
        (0u32..64).prop_flat_map(|bits| (1u64 << bits)..=(1u64 << bits).saturating_mul(2) - 1),
        Just(u64::MAX),
        Just(u64::MAX >> 1),
        any::<u64>(),
    ]
}

/// Ports: usually small, sometimes any u64 (the type allows it).
fn port() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 1u64..=253, 1 => varint_value()]
}

fn coords() -> impl Strategy<Value = Coordinates> {
    vec(port(), 0..10).prop_map(Coordinates)
}

fn root() -> impl Strategy<Value = Root> {
    (key(), varint_value()).prop_map(|(key, seq)| Root { key, seq })
}

fn signed_payload() -> impl Strategy<Value = SignedPayload> {
    (varint_value(), root(), signature()).prop_map(|(sequence, root, signature)| SignedPayload {
        sequence,
        root,
        signature,
    })
}

fn announcement() -> impl Strategy<Value = SwitchAnnouncement> {
    let hop = (port(), key(), signature()).prop_map(|(port, key, signature)| Hop {
        port,
        key,
        signature,
    });
    (root(), vec(hop, 0..8)).prop_map(|(root, hops)| SwitchAnnouncement { root, hops })
}

fn traffic() -> impl Strategy<Value = Traffic> {
    (
        any::<u8>(),
        coords(),
        coords(),
        key(),
        key(),
        (key(), varint_value()),
        vec(any::<u8>(), 0..1300),
    )
        .prop_map(
            |(hop_limit, dst, src, destination, source, (wk, ws), payload)| {
                // Tree traffic carries no watermark; decoding gives it NONE.
                let watermark = if dst.is_empty() {
                    Watermark { key: wk, seq: ws }
                } else {
                    Watermark::NONE
                };
                Traffic {
                    hop_limit,
                    destination_coords: dst,
                    source_coords: src,
                    destination,
                    source,
                    watermark,
                    payload,
                }
            },
        )
}

fn valid_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        Just(Frame::Keepalive),
        announcement().prop_map(Frame::TreeAnnouncement),
        (key(), key(), varint_value(), signed_payload()).prop_map(
            |(destination, wk, ws, payload)| {
                Frame::Bootstrap(Bootstrap {
                    destination,
                    watermark: Watermark { key: wk, seq: ws },
                    payload,
                })
            }
        ),
        traffic().prop_map(Frame::Traffic),
        (any::<u8>(), key(), signed_payload()).prop_map(|(hop_limit, source, payload)| {
            Frame::WakeupBroadcast(WakeupBroadcast {
                hop_limit,
                source,
                payload,
            })
        }),
    ]
}

/// An encoded valid frame with one or two mutations.
fn near_valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (valid_frame(), vec(mutation(), 1..3)).prop_map(|(frame, mutations)| {
        let mut bytes = frame.encode().unwrap();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        bytes
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, Vec<u8>),
    Remove(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..40).prop_map(Mutation::Extend),
        1 => (any::<Index>(), vec(any::<u8>(), 1..20)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Remove(a, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) if n > 0 => bytes[i.index(n)] ^= 1 << bit,
        Mutation::SetByte(i, v) if n > 0 => bytes[i.index(n)] = *v,
        Mutation::Truncate(i) => bytes.truncate(i.index(n + 1)),
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
        Mutation::Insert(i, b) => {
            let at = i.index(n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(a, b) => {
            let (a, b) = (a.index(n + 1), b.index(n + 1));
            bytes.drain(a.min(b)..a.max(b));
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// (a) and (b): arbitrary input.

proptest! {
    #![proptest_config(config(4_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        exercise_all_decoders(&bytes);
    }

    #[test]
    fn frame_like_bytes_never_panic_and_round_trip(bytes in frame_like()) {
        exercise_all_decoders(&bytes);
    }

    /// Valid frames with a few bytes changed: most still parse, so this is
    /// where the re-encoding property (b) gets its work.
    #[test]
    fn near_valid_frames_never_panic_and_round_trip(bytes in near_valid_frame()) {
        exercise_all_decoders(&bytes);
    }

    /// Short inputs hit every early-exit path of the varint and coordinate readers.
    #[test]
    fn short_inputs_never_panic(bytes in vec(any::<u8>(), 0..14)) {
        exercise_all_decoders(&bytes);
    }

    #[test]
    fn handshake_sized_bytes_never_panic(mut bytes in vec(any::<u8>(), 104..=104), v in 0u8..3) {
        bytes[0] = v;
        let _ = decode_handshake(&bytes);
    }
}

// ---------------------------------------------------------------------------
// (c) the deframer.

/// A stream of real and generated frames, sometimes followed by garbage.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let frames = vector_frames();
    let piece = prop_oneof![
        3 => (0..frames.len()).prop_map(move |i| frames[i].clone()),
        2 => valid_frame().prop_map(|f| f.encode().unwrap()),
        1 => frame_like(),
    ];
    (vec(piece, 0..12), vec(any::<u8>(), 0..12)).prop_map(|(pieces, tail)| {
        let mut s = pieces.concat();
        s.extend_from_slice(&tail);
        s
    })
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn deframer_is_split_invariant(s in stream(), cuts in vec(any::<Index>(), 0..30)) {
        check_deframer_splits(&s, &cuts);
    }

    #[test]
    fn deframer_on_garbage_never_panics(
        s in vec(any::<u8>(), 0..600),
        cuts in vec(any::<Index>(), 0..20),
    ) {
        check_deframer_splits(&s, &cuts);
    }
}

/// More than the 64 KiB reclaim threshold of well-formed frames, in chunks that
/// never line up with frame boundaries: the buffer compaction must not lose or
/// duplicate a byte.
#[test]
fn deframer_survives_buffer_compaction() {
    let frames = vector_frames();
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut i = 0;
    while stream.len() < 300 * 1024 {
        let f = &frames[i % frames.len()];
        stream.extend_from_slice(f);
        expected.push(f.clone());
        i += 1;
    }
    for chunk in [7, 97, 1000, 4093, 65_537] {
        let run = deframe_chunks(stream.chunks(chunk));
        assert_eq!(run.error, None, "chunk {chunk}");
        assert_eq!(run.frames.len(), expected.len(), "chunk {chunk}");
        assert!(run.frames == expected, "chunk {chunk}: frames differ");
        assert_eq!(run.buffered, 0);
    }
}

// ---------------------------------------------------------------------------
// (d) structured generation.

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn generated_frames_round_trip_exactly(frame in valid_frame()) {
        let bytes = frame.encode().expect("generated frames are small");
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let decoded = Frame::decode(&bytes).expect("a generated frame decodes");
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(decoded.encode().unwrap(), bytes);
    }

    #[test]
    fn generated_parts_round_trip(
        ann in announcement(),
        payload in signed_payload(),
        c in coords(),
        v in varint_value(),
    ) {
        let mut buf = Vec::new();
        ann.encode_into(&mut buf);
        prop_assert_eq!(buf.len(), ann.encoded_len());
        prop_assert_eq!(SwitchAnnouncement::decode(&buf), Ok(ann));

        let mut buf = Vec::new();
        payload.encode_into(&mut buf);
        prop_assert_eq!(buf.len(), payload.encoded_len());
        prop_assert_eq!(SignedPayload::decode(&buf), Ok(payload));

        let mut buf = Vec::new();
        c.encode_into(&mut buf);
        buf.extend_from_slice(b"rest");
        prop_assert_eq!(Coordinates::decode(&buf), Ok((c.clone(), c.encoded_len())));

        let mut buf = Vec::new();
        varint::put_varint(&mut buf, v);
        prop_assert_eq!(buf.len(), varint::varint_len(v));
        buf.push(0xff);
        prop_assert_eq!(varint::get_varint(&buf), Ok((v, varint::varint_len(v))));
    }

    /// Cutting a valid frame anywhere, with the length field fixed up to match,
    /// is an error, never a panic and never a different frame.
    #[test]
    fn truncated_generated_frames_are_rejected(frame in valid_frame(), cut in any::<Index>()) {
        let bytes = frame.encode().unwrap();
        let keep = HEADER_LEN + cut.index(bytes.len() - HEADER_LEN + 1);
        if keep < bytes.len() {
            let mut short = bytes[..keep].to_vec();
            short[8..10].copy_from_slice(&(keep as u16).to_be_bytes());
            prop_assert!(Frame::decode(&short).is_err(), "{:?} cut to {}", frame, keep);
        }
    }
}

#[test]
fn oversized_frames_refuse_to_encode() {
    let traffic = |len: usize| {
        Frame::Traffic(Traffic {
            hop_limit: 10,
            destination_coords: Coordinates(vec![1]),
            source_coords: Coordinates::root(),
            destination: PublicKey::default(),
            source: PublicKey::default(),
            watermark: Watermark::NONE,
            payload: vec![0; len],
        })
    };
    // Header 10 + payload length 2 + coordinates 3 + 2 + keys 64 = 81 bytes.
    let max = u16::MAX as usize - 81;
    let bytes = traffic(max).encode().expect("exactly 65535 bytes fits");
    assert_eq!(bytes.len(), u16::MAX as usize);
    assert_eq!(Frame::decode(&bytes), Ok(traffic(max)));
    assert_eq!(traffic(max + 1).encode(), Err(FrameTooLarge(65_536)));
}

// ---------------------------------------------------------------------------
// (e) mutated vectors.

proptest! {
    #![proptest_config(config(4_000))]

    #[test]
    fn mutated_vectors_never_panic(
        which in any::<Index>(),
        mutations in vec(mutation(), 1..5),
    ) {
        let messages = vector_messages();
        let mut bytes = which.get(&messages).clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        exercise_all_decoders(&bytes);
    }
}

proptest! {
    // Signature checks are slow in a debug build: fewer cases.
    #![proptest_config(config(300))]

    /// A mutated frame that still decodes can be verified without panicking,
    /// and a mutated announcement or handshake never verifies unless only
    /// unsigned bytes changed.
    #[test]
    fn mutated_vectors_verify_without_panicking(
        which in any::<Index>(),
        mutations in vec(mutation(), 1..3),
    ) {
        let messages = vector_messages();
        let original = which.get(&messages);
        let mut bytes = original.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        match Frame::decode(&bytes) {
            Ok(Frame::TreeAnnouncement(ann)) => {
                let ok = ann.verify_signatures().is_ok();
                if ok && !ann.hops.is_empty() {
                    // Only the last hop's port and key are unsigned, along
                    // with the header bytes around the payload.
                    let Ok(Frame::TreeAnnouncement(orig)) = Frame::decode(original) else {
                        panic!("a vector announcement verified after becoming one: {bytes:02x?}");
                    };
                    // (A prefix of the hops verifies on its own, so fewer
                    // hops are fine.)
                    prop_assert_eq!(ann.root, orig.root);
                    prop_assert!(ann.hops.len() <= orig.hops.len());
                    let signed = ann.hops.len() - 1;
                    prop_assert_eq!(&ann.hops[..signed], &orig.hops[..signed]);
                }
            }
            Ok(Frame::Bootstrap(b)) => {
                let _ = b.payload.verify(&b.destination);
            }
            Ok(Frame::WakeupBroadcast(b)) => {
                let _ = b.payload.verify(&b.source);
            }
            _ => {}
        }
        if let Ok(key) = decode_handshake(&bytes) {
            // Only the three unused bytes after the version are unsigned... and
            // they are covered by the signature too, so nothing may change.
            prop_assert_eq!(&bytes, original);
            prop_assert_eq!(&bytes[8..40], &key.0[..]);
        }
    }
}

// ---------------------------------------------------------------------------
// The generators must actually reach the decoders' success paths, or the
// properties above would pass vacuously.

#[test]
fn generators_reach_every_frame_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let near = near_valid_frame();
    let mut decoded = [0usize; 6];
    let mut rejected = 0;
    for _ in 0..2_000 {
        let bytes = near.new_tree(&mut runner).unwrap().current();
        match Frame::decode(&bytes) {
            Ok(frame) => {
                let slot = frame.frame_type().map_or(5, |t| t as usize);
                decoded[slot] += 1;
            }
            Err(_) => rejected += 1,
        }
    }
    // Every type decodes at least sometimes after mutation (unknown types come
    // from mutated type bytes), and mutation rejects a good share.
    for (ty, n) in decoded.iter().enumerate() {
        assert!(
            *n >= 5,
            "type slot {ty} decoded only {n} times: {decoded:?}"
        );
    }
    assert!(rejected >= 200, "only {rejected} rejections: {decoded:?}");
}
