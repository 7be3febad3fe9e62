//! What clients are told: the base URL and the shapes of device lists.

mod common;
use common::*;
use serde_json::json;

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

/// `GET /devices`: every device carries the four keys clients read, as
/// Synapse sends them (matrix-nio refuses a device without `last_seen_ip`);
/// what is not known is `null`.
#[tokio::test]
async fn devices_carry_the_keys_clients_expect() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, body) = s.get("/_matrix/client/v3/devices", &ann.token).await;
    assert_eq!(status, 200);
    for d in body["devices"].as_array().unwrap() {
        for key in ["device_id", "display_name", "last_seen_ip", "last_seen_ts"] {
            assert!(d.get(key).is_some(), "{key} missing: {d}");
        }
        assert!(d["device_id"].is_string());
    }
}
