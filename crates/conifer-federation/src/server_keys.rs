//! `GET /_matrix/key/v2/server`: a server's verify keys, signed by itself.

use crate::{base64, AuthError, VerifyKey};
use conifer_rooms::ruma::canonical_json::try_from_json_map;
use conifer_rooms::ruma::serde::Base64;
use conifer_rooms::ruma::signatures::{sign_json, verify_json, PublicKeyMap};
use conifer_rooms::ServerKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Our key response, valid until `valid_until_ts` (ms since the epoch).
pub fn server_key_response(key: &ServerKey, valid_until_ts: u64) -> Result<Value, AuthError> {
    let v = json!({
        "server_name": key.server_name.as_str(),
        "valid_until_ts": valid_until_ts,
        "verify_keys": { key.key_id(): { "key": base64::encode(&key.public) } },
        "old_verify_keys": {},
    });
    let Value::Object(map) = v else {
        unreachable!("built as an object")
    };
    let mut object =
        try_from_json_map(map).map_err(|e| AuthError::BadKeyResponse(e.to_string()))?;
    sign_json(key.server_name.as_str(), &key.pair, &mut object)
        .map_err(|e| AuthError::BadKeyResponse(e.to_string()))?;
    serde_json::to_value(&object).map_err(|e| AuthError::BadKeyResponse(e.to_string()))
}

/// Adds our signature to another server's (already verified) key response,
/// as a notary answering `/_matrix/key/v2/query` does.
pub fn notary_sign(key: &ServerKey, response: &Value) -> Result<Value, AuthError> {
    let Value::Object(map) = response.clone() else {
        return Err(AuthError::BadKeyResponse("not an object".into()));
    };
    let mut object =
        try_from_json_map(map).map_err(|e| AuthError::BadKeyResponse(e.to_string()))?;
    sign_json(key.server_name.as_str(), &key.pair, &mut object)
        .map_err(|e| AuthError::BadKeyResponse(e.to_string()))?;
    serde_json::to_value(&object).map_err(|e| AuthError::BadKeyResponse(e.to_string()))
}

/// Checks a key response from `server` (its name, its self-signature by one
/// of the keys it lists, and that it has not expired at `now_ms`) and
/// returns its current keys.
pub fn verify_server_key_response(
    server: &str,
    response: &Value,
    now_ms: u64,
) -> Result<Vec<VerifyKey>, AuthError> {
    let bad = |m: &str| AuthError::BadKeyResponse(m.to_owned());
    if response.get("server_name").and_then(Value::as_str) != Some(server) {
        return Err(bad("server_name does not match the server asked"));
    }
    let valid_until_ts = response
        .get("valid_until_ts")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("missing valid_until_ts"))?;
    if valid_until_ts <= now_ms {
        return Err(bad("the key response has expired"));
    }
    let listed = response
        .get("verify_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("missing verify_keys"))?;
    let mut keys = Vec::new();
    let mut set = BTreeMap::new();
    for (key_id, k) in listed {
        let b = k
            .get("key")
            .and_then(Value::as_str)
            .and_then(base64::decode)
            .ok_or_else(|| bad("a verify key is not base64"))?;
        let key: [u8; 32] = b
            .try_into()
            .map_err(|_| bad("a verify key is not 32 bytes"))?;
        set.insert(key_id.clone(), Base64::new(key.to_vec()));
        keys.push(VerifyKey {
            server: server.to_owned(),
            key_id: key_id.clone(),
            key,
            valid_until_ts,
        });
    }
    // Only the server's own signature counts here; notaries are not trusted.
    let mut own = response.clone();
    let sig = response
        .pointer(&format!(
            "/signatures/{}",
            server.replace('~', "~0").replace('/', "~1")
        ))
        .cloned()
        .ok_or_else(|| bad("not signed by the server itself"))?;
    own["signatures"] = json!({ server: sig });
    let Value::Object(map) = own else {
        return Err(bad("not an object"));
    };
    let object = try_from_json_map(map).map_err(|e| AuthError::BadKeyResponse(e.to_string()))?;
    let mut public: PublicKeyMap = BTreeMap::new();
    public.insert(server.to_owned(), set);
    verify_json(&public, &object).map_err(|e| AuthError::BadSignature(e.to_string()))?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conifer_rooms::ruma::OwnedServerName;

    #[test]
    fn our_key_response_verifies_and_forgeries_do_not() {
        let key = ServerKey::from_seed(
            &OwnedServerName::try_from("a.example:8448").unwrap(),
            "k1",
            &[3; 32],
        );
        let response = server_key_response(&key, 2_000).unwrap();
        let keys = verify_server_key_response("a.example:8448", &response, 1_000).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0].key_id.as_str(), keys[0].key, keys[0].valid_until_ts),
            ("ed25519:k1", key.public, 2_000)
        );

        assert!(
            verify_server_key_response("b.example", &response, 1_000).is_err(),
            "wrong server"
        );
        assert!(
            verify_server_key_response("a.example:8448", &response, 2_000).is_err(),
            "expired"
        );
        let mut tampered = response.clone();
        tampered["valid_until_ts"] = json!(9_999_999);
        assert!(
            verify_server_key_response("a.example:8448", &tampered, 1_000).is_err(),
            "changed after signing"
        );
        // A different key swapped in, still "signed" with the old signature.
        let mut swapped = response.clone();
        swapped["verify_keys"]["ed25519:k1"]["key"] = json!(base64::encode(&[9u8; 32]));
        assert!(
            verify_server_key_response("a.example:8448", &swapped, 1_000).is_err(),
            "swapped key"
        );
    }
}
