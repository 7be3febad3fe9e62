//! Registration, login, tokens, devices, passwords, admin registration.

mod common;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;

#[tokio::test]
async fn registration_needs_dummy_auth_and_rejects_bad_or_taken_names() {
    let s = TestServer::start().await;
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({ "username": "ann" })),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["flows"][0]["stages"][0], "m.login.dummy");
    assert!(body["session"].is_string());

    s.register("ann").await;
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({ "username": "ann", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_USER_IN_USE"))
    );
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({ "username": "Bad Name!", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_INVALID_USERNAME"))
    );
    let (status, _) = s
        .request(
            "GET",
            "/_matrix/client/v3/register/available?username=ann",
            None,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = s
        .request(
            "GET",
            "/_matrix/client/v3/register/available?username=zed",
            None,
            None,
        )
        .await;
    assert_eq!((status, body["available"].as_bool()), (200, Some(true)));
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/register?kind=guest",
            None,
            Some(json!({ "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_GUEST_ACCESS_FORBIDDEN"))
    );
}

#[tokio::test]
async fn closed_registration_is_forbidden() {
    let s = TestServer::start_with(|c| c.registration.open = false).await;
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({ "username": "x", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
}

#[tokio::test]
async fn login_whoami_logout_and_login_tokens() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, body) = s
        .request("POST", "/_matrix/client/r0/login", None, Some(json!({
            "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "wrong"
        })))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let (status, login) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({
                "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" },
                "password": "secret-password", "device_id": "PHONE"
            })),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["device_id"], "PHONE");
    let token = login["access_token"].as_str().unwrap();
    let (_, who) = s.get("/_matrix/client/v3/account/whoami", token).await;
    assert_eq!(
        (who["user_id"].as_str(), who["device_id"].as_str()),
        (Some(ann.user_id.as_str()), Some("PHONE"))
    );

    // A login token logs in once.
    let (status, lt) = s
        .post("/_matrix/client/v1/login/get_token", token, json!({}))
        .await;
    assert_eq!(status, 200);
    let lt = lt["login_token"].as_str().unwrap().to_owned();
    let body = json!({ "type": "m.login.token", "token": lt });
    let (status, _) = s
        .request("POST", "/_matrix/client/v3/login", None, Some(body.clone()))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .request("POST", "/_matrix/client/v3/login", None, Some(body))
        .await;
    assert_eq!(status, 403);

    let (status, _) = s.post("/_matrix/client/v3/logout", token, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = s.get("/_matrix/client/v3/account/whoami", token).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );
    // The other session is untouched until logout/all.
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", &ann.token)
            .await
            .0,
        200
    );
    s.post("/_matrix/client/v3/logout/all", &ann.token, json!({}))
        .await;
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", &ann.token)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn devices_rename_and_delete_with_password_auth() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let path = format!("/_matrix/client/v3/devices/{}", ann.device_id);
    assert_eq!(
        s.put(&path, &ann.token, json!({ "display_name": "laptop" }))
            .await
            .0,
        200
    );
    let (_, list) = s.get("/_matrix/client/v3/devices", &ann.token).await;
    assert_eq!(list["devices"][0]["display_name"], "laptop");

    let (status, challenge) = s
        .request("DELETE", &path, Some(&ann.token), Some(json!({})))
        .await;
    assert_eq!(status, 401);
    assert_eq!(challenge["flows"][0]["stages"][0], "m.login.password");
    let bad = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "nope" } });
    assert_eq!(
        s.request("DELETE", &path, Some(&ann.token), Some(bad))
            .await
            .0,
        401
    );
    let good = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "secret-password" } });
    assert_eq!(
        s.request("DELETE", &path, Some(&ann.token), Some(good))
            .await
            .0,
        200
    );
    // Deleting the device ends its session.
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", &ann.token)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn password_change_logs_out_other_devices() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (_, other) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(
                json!({ "type": "m.login.password", "user": "ann", "password": "secret-password" }),
            ),
        )
        .await;
    let other = other["access_token"].as_str().unwrap().to_owned();
    let body = json!({
        "new_password": "new-secret",
        "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "ann" }, "password": "secret-password" }
    });
    assert_eq!(
        s.post("/_matrix/client/v3/account/password", &ann.token, body)
            .await
            .0,
        200
    );
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", &other).await.0,
        401
    );
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", &ann.token)
            .await
            .0,
        200
    );
    let (status, _) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({ "type": "m.login.password", "user": "ann", "password": "new-secret" })),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shared_secret_admin_registration() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.enabled = false;
        c.registration.shared_secret = Some("s3cret".into());
    })
    .await;
    let (_, n) = s
        .request("GET", "/_synapse/admin/v1/register", None, None)
        .await;
    let nonce = n["nonce"].as_str().unwrap().to_owned();
    let mac_for = |user: &str| {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{nonce}\0{user}\0pw\0admin").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let bad = json!({ "nonce": nonce, "username": "root", "password": "pw", "admin": true, "mac": mac_for("other") });
    assert_eq!(
        s.request("POST", "/_synapse/admin/v1/register", None, Some(bad))
            .await
            .0,
        403
    );
    let (_, n) = s
        .request("GET", "/_synapse/admin/v1/register", None, None)
        .await;
    let nonce2 = n["nonce"].as_str().unwrap().to_owned();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{nonce2}\0root\0pw\0admin").as_bytes());
    let good = json!({ "nonce": nonce2, "username": "root", "password": "pw", "admin": true, "mac": hex::encode(mac.finalize().into_bytes()) });
    let (status, body) = s
        .request("POST", "/_synapse/admin/v1/register", None, Some(good))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], format!("@root:{SERVER}"));
}
