//! Any bytes as an `Authorization` header into the X-Matrix parser: no panic,
//! and a header rebuilt from the parsed fields (quoted, escaped) parses back
//! to the same fields. Seeds: fuzz/seeds/x_matrix/.
#![no_main]

use conifer_federation::parse_x_matrix;
use libfuzzer_sys::fuzz_target;

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    // The homeserver only parses headers that are visible ASCII text.
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(x) = parse_x_matrix(header) else {
        return;
    };
    let mut rebuilt = format!(
        "X-Matrix origin={},key={},sig={}",
        quote(&x.origin),
        quote(&x.key),
        quote(&x.sig)
    );
    if let Some(d) = &x.destination {
        rebuilt.push_str(&format!(",destination={}", quote(d)));
    }
    assert_eq!(parse_x_matrix(&rebuilt).as_ref(), Ok(&x), "{rebuilt:?}");
});
