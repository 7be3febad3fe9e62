//! `Authorization: X-Matrix origin=…,destination=…,key=…,sig=…`: an Ed25519
//! signature by the origin over the canonical JSON of
//! `{method, uri, origin, destination, content}`.

use crate::AuthError;
use conifer_rooms::ruma::canonical_json::try_from_json_map;
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{sign_json, verify_json, PublicKeyMap};
use conifer_rooms::ruma::CanonicalJsonObject;
use conifer_rooms::ServerKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The parameters of an X-Matrix header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: String,
    pub destination: Option<String>,
    pub key: String,
    pub sig: String,
}

fn request_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&Value>,
) -> Result<CanonicalJsonObject, AuthError> {
    let mut v =
        json!({ "method": method, "uri": uri, "origin": origin, "destination": destination });
    if let Some(c) = content {
        v["content"] = c.clone();
    }
    let Value::Object(map) = v else {
        unreachable!("built as an object")
    };
    try_from_json_map(map)
        .map_err(|e| AuthError::BadSignature(format!("content is not canonical JSON: {e}")))
}

/// The `Authorization` header value for a request from `key`'s server.
pub fn sign_request(
    key: &ServerKey,
    method: &str,
    uri: &str,
    destination: &str,
    content: Option<&Value>,
) -> Result<String, AuthError> {
    let origin = key.server_name.as_str();
    let mut object = request_object(method, uri, origin, destination, content)?;
    sign_json(origin, &key.pair, &mut object)
        .map_err(|e| AuthError::BadSignature(e.to_string()))?;
    let sig = object
        .get("signatures")
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(origin))
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(&key.key_id()))
        .and_then(|s| s.as_str())
        .ok_or_else(|| AuthError::BadSignature("signing produced no signature".into()))?
        .to_owned();
    Ok(format!(
        r#"X-Matrix origin="{origin}",destination="{destination}",key="{}",sig="{sig}""#,
        key.key_id()
    ))
}

/// The longest `Authorization` header read: an origin and a destination of
/// at most 255 bytes, a key ID and an 86-character signature fit many times.
pub const MAX_X_MATRIX_LEN: usize = 4096;

/// Parses `X-Matrix k=v,k="v",…` (values may be quoted; keys are case-insensitive).
/// Longer than [`MAX_X_MATRIX_LEN`] is refused before anything is split.
pub fn parse_x_matrix(header: &str) -> Result<XMatrix, AuthError> {
    if header.len() > MAX_X_MATRIX_LEN {
        return Err(AuthError::MalformedHeader(format!(
            "longer than {MAX_X_MATRIX_LEN} bytes"
        )));
    }
    let rest = header
        .strip_prefix("X-Matrix ")
        .ok_or_else(|| AuthError::MalformedHeader("not an X-Matrix authorization".into()))?;
    let mut fields = BTreeMap::new();
    for part in split_params(rest) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| AuthError::MalformedHeader(format!("no '=' in {part:?}")))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        fields.insert(
            k.trim().to_ascii_lowercase(),
            v.replace("\\\"", "\"").replace("\\\\", "\\"),
        );
    }
    let mut take = |k: &str| fields.remove(k);
    Ok(XMatrix {
        origin: take("origin")
            .ok_or_else(|| AuthError::MalformedHeader("missing origin".into()))?,
        destination: take("destination"),
        key: take("key").ok_or_else(|| AuthError::MalformedHeader("missing key".into()))?,
        sig: take("sig").ok_or_else(|| AuthError::MalformedHeader("missing sig".into()))?,
    })
}

/// Splits on commas outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Checks a request's X-Matrix signature with the origin's verify key.
/// `our_name` is this server's name: a request for someone else is refused.
pub fn verify_request(
    x: &XMatrix,
    method: &str,
    uri: &str,
    our_name: &str,
    content: Option<&Value>,
    verify_key: &[u8; 32],
) -> Result<(), AuthError> {
    if let Some(d) = &x.destination {
        if d != our_name {
            return Err(AuthError::WrongDestination(d.clone()));
        }
    }
    let mut object = request_object(method, uri, &x.origin, our_name, content)?;
    let mut sigs = CanonicalJsonObject::new();
    let mut mine = CanonicalJsonObject::new();
    mine.insert(x.key.clone(), x.sig.clone().into());
    sigs.insert(x.origin.clone(), mine.into());
    object.insert("signatures".into(), sigs.into());
    let mut keys: PublicKeyMap = BTreeMap::new();
    keys.entry(x.origin.clone())
        .or_default()
        .insert(x.key.clone(), Base64::new(verify_key.to_vec()));
    verify_json(&keys, &object).map_err(|e| AuthError::BadSignature(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conifer_rooms::ruma::OwnedServerName;

    fn key(name: &str, seed: u8) -> ServerKey {
        ServerKey::from_seed(&OwnedServerName::try_from(name).unwrap(), "k1", &[seed; 32])
    }

    #[test]
    fn signed_requests_verify_and_tampering_is_caught() {
        let a = key("a.example", 1);
        let body = json!({ "pdus": [], "edus": [] });
        let header = sign_request(
            &a,
            "PUT",
            "/_matrix/federation/v1/send/1",
            "b.example",
            Some(&body),
        )
        .unwrap();
        let x = parse_x_matrix(&header).unwrap();
        assert_eq!(
            (x.origin.as_str(), x.key.as_str()),
            ("a.example", "ed25519:k1")
        );
        verify_request(
            &x,
            "PUT",
            "/_matrix/federation/v1/send/1",
            "b.example",
            Some(&body),
            &a.public,
        )
        .unwrap();

        let other = json!({ "pdus": [1], "edus": [] });
        assert!(matches!(
            verify_request(
                &x,
                "PUT",
                "/_matrix/federation/v1/send/1",
                "b.example",
                Some(&other),
                &a.public
            ),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            verify_request(
                &x,
                "GET",
                "/_matrix/federation/v1/send/1",
                "b.example",
                Some(&body),
                &a.public
            ),
            Err(AuthError::BadSignature(_))
        ));
        assert!(matches!(
            verify_request(
                &x,
                "PUT",
                "/_matrix/federation/v1/send/2",
                "b.example",
                Some(&body),
                &a.public
            ),
            Err(AuthError::BadSignature(_))
        ));
        assert_eq!(
            verify_request(
                &x,
                "PUT",
                "/_matrix/federation/v1/send/1",
                "c.example",
                Some(&body),
                &a.public
            ),
            Err(AuthError::WrongDestination("b.example".into()))
        );
        let impostor = key("a.example", 2);
        assert!(verify_request(
            &x,
            "PUT",
            "/_matrix/federation/v1/send/1",
            "b.example",
            Some(&body),
            &impostor.public
        )
        .is_err());
    }

    #[test]
    fn header_parsing_accepts_synapse_forms_and_rejects_junk() {
        let x = parse_x_matrix(
            r#"X-Matrix origin=origin.hs.example.com,key="ed25519:key1",sig="ABCDEF...""#,
        )
        .unwrap();
        assert_eq!(x.origin, "origin.hs.example.com");
        assert_eq!(x.destination, None);
        let x = parse_x_matrix(
            r#"X-Matrix ORIGIN="a:8448", Destination="b:8448",key="ed25519:x",sig="s""#,
        )
        .unwrap();
        assert_eq!(
            (x.origin.as_str(), x.destination.as_deref()),
            ("a:8448", Some("b:8448"))
        );
        assert!(parse_x_matrix("Bearer abc").is_err());
        assert!(parse_x_matrix("X-Matrix origin=a").is_err());
        assert!(parse_x_matrix("X-Matrix garbage").is_err());
    }
}
