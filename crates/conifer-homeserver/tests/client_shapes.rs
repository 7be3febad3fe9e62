//! What clients are told: the base URL and the shapes of device lists.

mod common;
use common::*;
use serde_json::{json, Value};

/// `GET /.well-known/matrix/client`: "`m.homeserver` ... `base_url`: The
/// base URL for the homeserver for client-server connections." Behind a
/// reverse proxy that is the configured public URL, not the listen address;
/// the login response's `well_known` says the same.
#[tokio::test]
async fn the_configured_public_base_url_is_advertised() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.enabled = false;
        c.client.public_baseurl = Some("https://matrix.example.org/".into());
    })
    .await;
    let (status, wk) = s
        .request("GET", "/.well-known/matrix/client", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(wk["m.homeserver"]["base_url"], "https://matrix.example.org");
    s.register("ann").await;
    let (status, login) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "secret-password" })),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(
        login["well_known"]["m.homeserver"]["base_url"],
        "https://matrix.example.org"
    );
}

/// `GET /devices`: `display_name`, `last_seen_ip` and `last_seen_ts` are
/// optional; a device without them has them left out, not `null` (typed
/// clients reject a null where a string is expected).
#[tokio::test]
async fn device_fields_without_values_are_omitted() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, body) = s.get("/_matrix/client/v3/devices", &ann.token).await;
    assert_eq!(status, 200);
    for d in body["devices"].as_array().unwrap() {
        assert!(!d.as_object().unwrap().values().any(Value::is_null), "{d}");
    }
    let (_, one) = s
        .get(
            &format!("/_matrix/client/v3/devices/{}", ann.device_id),
            &ann.token,
        )
        .await;
    assert!(
        !one.as_object().unwrap().values().any(Value::is_null),
        "{one}"
    );
}
