//! Any bytes into the frame decoder (and the decoders it is built from): no
//! panic, and whatever decodes re-encodes canonically and re-decodes equal.
#![no_main]

use conifer_overlay::wire::{varint, Coordinates, Frame, SignedPayload, SwitchAnnouncement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(frame.encoded_len(), data.len());
        if !matches!(frame, Frame::Unknown { .. }) {
            let encoded = frame.encode().expect("a decoded frame fits");
            assert_eq!(Frame::decode(&encoded).as_ref(), Ok(&frame));
            // Only version (4), extra (6) and, except on traffic and
            // broadcasts, the hop limit (7) are not preserved.
            let mut expected = data.to_vec();
            expected[4] = 0;
            expected[6] = 0;
            if !matches!(frame, Frame::Traffic(_) | Frame::WakeupBroadcast(_)) {
                expected[7] = 0;
            }
            assert_eq!(encoded, expected);
        }
    }
    // The component decoders on the same bytes are cheap; let them share the corpus.
    if let Ok(ann) = SwitchAnnouncement::decode(data) {
        let mut out = Vec::new();
        ann.encode_into(&mut out);
        assert_eq!(out, data);
    }
    if let Ok(p) = SignedPayload::decode(data) {
        let mut out = Vec::new();
        p.encode_into(&mut out);
        assert_eq!(out, data);
    }
    if let Ok((c, used)) = Coordinates::decode(data) {
        let mut out = Vec::new();
        c.encode_into(&mut out);
        assert_eq!(out, data[..used]);
    }
    if let Ok((v, used)) = varint::get_varint(data) {
        assert_eq!(varint::varint_len(v), used);
    }
});
