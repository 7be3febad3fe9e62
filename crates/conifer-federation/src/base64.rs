//! Unpadded standard base64, the encoding Matrix uses for keys and signatures,
//! through Ruma's `Base64` type.

use conifer_rooms::ruma::serde::Base64;

pub fn encode(bytes: &[u8]) -> String {
    Base64::<conifer_rooms::ruma::serde::base64::Standard, _>::new(bytes.to_vec()).encode()
}

pub fn decode(s: &str) -> Option<Vec<u8>> {
    Base64::<conifer_rooms::ruma::serde::base64::Standard, Vec<u8>>::parse(s)
        .ok()
        .map(|b| b.into_inner())
}
