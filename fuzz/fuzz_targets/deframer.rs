//! A byte stream into the deframer, whole and in chunks whose sizes come from
//! the first input bytes: no panic, and the same frames and verdict either way.
#![no_main]

use conifer_overlay::wire::{DecodeError, Deframer, Frame};
use libfuzzer_sys::fuzz_target;

/// Feeds `chunks`, draining after each; an error ends the stream.
fn run<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, Option<DecodeError>) {
    let mut d = Deframer::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let whole = run(std::iter::once(stream));
    let chunk = usize::from(split % 64) + 1;
    let chunked = run(stream.chunks(chunk));
    assert_eq!(whole, chunked);
    // The frames tile a prefix of the stream, and each is one decodable unit
    // (or a decode error), never a panic.
    let consumed: usize = whole.0.iter().map(Vec::len).sum();
    assert_eq!(whole.0.concat(), stream[..consumed]);
    for f in &whole.0 {
        let _ = Frame::decode(f);
    }
});
