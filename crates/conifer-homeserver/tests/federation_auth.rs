//! Server keys and X-Matrix authentication between two homeservers, with
//! requests carried in-process (the transport is pluggable; TLS and the
//! overlay come with their own transports).

mod common;
use common::federation::*;

use conifer_federation::{
    sign_request, verify_server_key_response, FederationRequest, Transport, P2P_KEY_ID,
};
use conifer_homeserver::OwnedServerName;
use conifer_rooms::ServerKey;

#[tokio::test]
async fn keys_are_published_and_signed_requests_are_verified() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs
        .store
        .create_user("@ann:one.test", None, false, 0)
        .unwrap();
    one.hs
        .store
        .set_displayname("@ann:one.test", Some("Ann"))
        .unwrap();

    // Anyone can fetch and check a server's keys.
    let r = net
        .send(FederationRequest {
            destination: "one.test".into(),
            method: "GET".into(),
            uri: "/_matrix/key/v2/server".into(),
            body: None,
            authorization: None,
        })
        .await
        .unwrap();
    let keys = verify_server_key_response("one.test", &serde_json::from_slice(&r.body).unwrap(), 0)
        .unwrap();
    assert_eq!(keys[0].key, one.hs.key.public);

    // two asks one for a profile; one fetches two's key to verify the request.
    let uri = "/_matrix/federation/v1/query/profile?user_id=%40ann%3Aone.test";
    let (status, body) = signed(&net, &two.hs.key, "one.test", uri).await;
    assert_eq!(
        (status, body["displayname"].as_str()),
        (200, Some("Ann")),
        "{body}"
    );

    // An impostor signing as two.test with another key is refused.
    let impostor = ServerKey::from_seed(
        &OwnedServerName::try_from("two.test").unwrap(),
        "k2",
        &[9; 32],
    );
    let (status, body) = signed(&net, &impostor, "one.test", uri).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    // A request meant for another server is refused.
    let authorization = sign_request(&two.hs.key, "GET", uri, "three.test", None).unwrap();
    let r = net
        .send(FederationRequest {
            destination: "one.test".into(),
            method: "GET".into(),
            uri: uri.into(),
            body: None,
            authorization: Some(authorization),
        })
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // No signature at all.
    let r = net
        .send(FederationRequest {
            destination: "one.test".into(),
            method: "GET".into(),
            uri: uri.into(),
            body: None,
            authorization: None,
        })
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // An origin whose keys cannot be fetched.
    let stranger = ServerKey::from_seed(
        &OwnedServerName::try_from("nowhere.test").unwrap(),
        "k",
        &[5; 32],
    );
    let (status, body) = signed(&net, &stranger, "one.test", uri).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED"))
    );
}

#[tokio::test]
async fn p2p_names_are_verified_without_fetching_keys() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    one.hs
        .store
        .create_user("@ann:one.test", None, false, 0)
        .unwrap();
    // A P2P node: its name is the hex of its key, and it is not reachable at all.
    let seed = [7u8; 32];
    let probe = ServerKey::from_seed(&OwnedServerName::try_from("x.test").unwrap(), "k", &seed);
    let name = hex::encode(probe.public);
    let p2p = ServerKey::from_seed(
        &OwnedServerName::try_from(name.as_str()).unwrap(),
        P2P_KEY_ID.trim_start_matches("ed25519:"),
        &seed,
    );
    let (status, body) = signed(
        &net,
        &p2p,
        "one.test",
        "/_matrix/federation/v1/query/profile?user_id=%40ann%3Aone.test",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn remote_servers_read_device_lists_keys_and_aliases() {
    use serde_json::json;
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let store = &one.hs.store;
    store.create_user("@ann:one.test", None, false, 0).unwrap();
    store
        .create_device("@ann:one.test", "PHONE", Some("phone"), "tok", 0)
        .unwrap();
    let keys = json!({ "user_id": "@ann:one.test", "device_id": "PHONE", "keys": { "ed25519:PHONE": "e" } });
    store
        .upload_keys(
            "@ann:one.test",
            "PHONE",
            Some(&keys),
            &[("signed_curve25519:A".into(), json!({ "key": "otk" }))],
            &[],
        )
        .unwrap();
    let room = store.create_room("!r:one.test", "11").unwrap().room_id;
    store
        .put_alias("#pines:one.test", &room, "@ann:one.test")
        .unwrap();

    let (status, devices) = signed(
        &net,
        &two.hs.key,
        "one.test",
        "/_matrix/federation/v1/user/devices/%40ann%3Aone.test",
    )
    .await;
    assert_eq!(status, 200, "{devices}");
    assert_eq!(devices["devices"][0]["device_id"], "PHONE");
    assert_eq!(devices["devices"][0]["keys"]["keys"]["ed25519:PHONE"], "e");
    assert_eq!(devices["devices"][0]["device_display_name"], "phone");

    let query = json!({ "device_keys": { "@ann:one.test": [] } });
    let (_, q) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "POST",
        "/_matrix/federation/v1/user/keys/query",
        Some(query),
    )
    .await;
    assert_eq!(
        q["device_keys"]["@ann:one.test"]["PHONE"]["keys"]["ed25519:PHONE"],
        "e"
    );

    let claim = json!({ "one_time_keys": { "@ann:one.test": { "PHONE": "signed_curve25519" } } });
    let (_, c) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "POST",
        "/_matrix/federation/v1/user/keys/claim",
        Some(claim.clone()),
    )
    .await;
    assert_eq!(
        c["one_time_keys"]["@ann:one.test"]["PHONE"]["signed_curve25519:A"]["key"],
        "otk"
    );
    let (_, again) = signed_with(
        &net,
        &two.hs.key,
        "one.test",
        "POST",
        "/_matrix/federation/v1/user/keys/claim",
        Some(claim),
    )
    .await;
    assert!(
        again["one_time_keys"]["@ann:one.test"].is_null(),
        "a one-time key is claimed once: {again}"
    );

    let (_, d) = signed(
        &net,
        &two.hs.key,
        "one.test",
        "/_matrix/federation/v1/query/directory?room_alias=%23pines%3Aone.test",
    )
    .await;
    assert_eq!(d["room_id"], "!r:one.test");
    // A body changed after signing is refused.
    let authorization = sign_request(
        &two.hs.key,
        "POST",
        "/_matrix/federation/v1/user/keys/query",
        "one.test",
        Some(&json!({ "device_keys": {} })),
    )
    .unwrap();
    let r = net
        .send(FederationRequest {
            destination: "one.test".into(),
            method: "POST".into(),
            uri: "/_matrix/federation/v1/user/keys/query".into(),
            body: Some(br#"{"device_keys":{"@ann:one.test":[]}}"#.to_vec()),
            authorization: Some(authorization),
        })
        .await
        .unwrap();
    assert_eq!(r.status, 403);
}
