//! User-interactive authentication (spec: Client-Server API, "User-Interactive
//! Authentication API") and registration (`POST /register`).

mod common;
use common::*;
use serde_json::{json, Value};

const REGISTER: &str = "/_matrix/client/v3/register";

fn password_auth(user: &str, password: &str, session: Option<&str>) -> Value {
    let mut auth = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
    });
    if let Some(s) = session {
        auth["session"] = json!(s);
    }
    auth
}

/// Spec: "A client should first make a request with no `auth` parameter. The
/// homeserver returns an HTTP 401 response, with a JSON body, as follows" —
/// the example body holds `flows`, `params` and `session` and no `errcode`;
/// only "If the homeserver decides that an attempt on a stage was
/// unsuccessful ... it returns the same HTTP status 401 response as above,
/// with the addition of the standard `errcode` and `error` fields".
#[tokio::test]
async fn a_plain_challenge_has_flows_and_session_but_no_errcode() {
    let s = TestServer::start().await;
    let (status, body) = s
        .request("POST", REGISTER, None, Some(json!({ "username": "ann" })))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.get("errcode").is_none(), "{body}");
    assert!(body.get("error").is_none(), "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    assert!(body["params"].is_object(), "{body}");
    assert!(body["session"].as_str().is_some_and(|s| !s.is_empty()));

    let ann = s.register("ann").await;
    let path = format!("/_matrix/client/v3/devices/{}", ann.device_id);
    let (status, body) = s
        .request("DELETE", &path, Some(&ann.token), Some(json!({})))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.get("errcode").is_none(), "{body}");
    assert!(body.get("error").is_none(), "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.password"] }]));
    assert!(body["session"].is_string());
}

/// Spec: "If the homeserver decides that an attempt on a stage was
/// unsuccessful, but the client may make a second attempt, it returns the
/// same HTTP status 401 response as above, with the addition of the standard
/// `errcode` and `error` fields" (the example: `"errcode": "M_FORBIDDEN",
/// "error": "Invalid password"` beside `completed`, `flows`, `params` and
/// `session`).
#[tokio::test]
async fn a_wrong_password_stage_is_401_forbidden_with_flows_and_session_on_every_endpoint() {
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
    let other_device = other["device_id"].as_str().unwrap().to_owned();
    // A first master key needs no authentication; replacing it does.
    let master = |k: &str| json!({ "user_id": ann.user_id, "usage": ["master"], "keys": { format!("ed25519:{k}"): k } });
    let (status, body) = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            &ann.token,
            json!({ "master_key": master("first") }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let endpoints: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/_matrix/client/v3/account/password".into(),
            json!({ "new_password": "another" }),
        ),
        (
            "POST",
            "/_matrix/client/v3/delete_devices".into(),
            json!({ "devices": [other_device] }),
        ),
        (
            "DELETE",
            format!("/_matrix/client/v3/devices/{other_device}"),
            json!({}),
        ),
        (
            "POST",
            "/_matrix/client/v3/account/deactivate".into(),
            json!({}),
        ),
        (
            "POST",
            "/_matrix/client/v3/keys/device_signing/upload".into(),
            json!({ "master_key": master("second") }),
        ),
    ];
    for (method, path, body) in endpoints {
        // The challenge first: its session is sent back with the attempt.
        let (status, challenge) = s
            .request(method, &path, Some(&ann.token), Some(body.clone()))
            .await;
        assert_eq!(status, 401, "{method} {path}: {challenge}");
        assert!(challenge.get("errcode").is_none(), "{path}: {challenge}");
        let session = challenge["session"].as_str().unwrap().to_owned();

        let mut attempt = body.clone();
        attempt["auth"] = password_auth("ann", "wrong", Some(&session));
        let (status, failed) = s
            .request(method, &path, Some(&ann.token), Some(attempt))
            .await;
        assert_eq!(status, 401, "{method} {path}: {failed}");
        assert_eq!(failed["errcode"], "M_FORBIDDEN", "{path}: {failed}");
        assert!(failed["error"].is_string(), "{path}: {failed}");
        assert_eq!(
            failed["flows"],
            json!([{ "stages": ["m.login.password"] }]),
            "{path}"
        );
        assert_eq!(failed["session"], session.as_str(), "{path}");
        assert_eq!(failed["completed"], json!([]), "{path}");
    }
    // Nothing above happened: the password, the device and the account stand.
    let (status, _) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(
                json!({ "type": "m.login.password", "user": "ann", "password": "secret-password" }),
            ),
        )
        .await;
    assert_eq!(status, 200);
    let (_, devices) = s.get("/_matrix/client/v3/devices", &ann.token).await;
    assert!(devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["device_id"] == other_device.as_str()));
}

/// Spec: "`session`: This is a session identifier that the client must pass
/// back to the homeserver, if one is provided, in subsequent attempts to
/// authenticate in the same API call." and "If the client has completed all
/// stages of a flow, the homeserver performs the API call and returns the
/// result as normal. Completed stages cannot be retried by clients,
/// therefore servers must return either a 401 response with the completed
/// stages, or the result of the API call if all stages were completed when a
/// client retries a stage." — a completed session for `/register` answers
/// with the same registration, not a second account.
#[tokio::test]
async fn a_finished_register_session_replays_the_same_user() {
    let s = TestServer::start().await;
    // No username: the server picks one, so a second account would differ.
    let (status, challenge) = s.request("POST", REGISTER, None, Some(json!({}))).await;
    assert_eq!(status, 401);
    let session = challenge["session"].as_str().unwrap().to_owned();
    let body = json!({
        "password": "pw-one",
        "auth": { "type": "m.login.dummy", "session": session }
    });
    let (status, first) = s.request("POST", REGISTER, None, Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    let user_id = first["user_id"].as_str().unwrap().to_owned();

    let (status, again) = s.request("POST", REGISTER, None, Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user_id"], user_id.as_str());
    assert_eq!(again["device_id"], first["device_id"]);
    assert_eq!(again["access_token"], first["access_token"]);
    // Only the session key, as after a stage completed out of band.
    let (status, again) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(json!({ "auth": { "session": session } })),
        )
        .await;
    assert_eq!((status, &again["user_id"]), (200, &json!(user_id)));

    // With a username: the replay is not M_USER_IN_USE.
    let (_, challenge) = s
        .request("POST", REGISTER, None, Some(json!({ "username": "bea" })))
        .await;
    let body = json!({
        "username": "bea", "password": "pw",
        "auth": { "type": "m.login.dummy", "session": challenge["session"] }
    });
    let (status, first) = s.request("POST", REGISTER, None, Some(body.clone())).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = s.request("POST", REGISTER, None, Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user_id"], format!("@bea:{SERVER}"));
    // A fresh registration of the same name still is.
    let (status, taken) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(json!({ "username": "bea", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(
        (status, taken["errcode"].as_str()),
        (400, Some("M_USER_IN_USE"))
    );
}

/// Spec: "Some authentication types may be completed by means other than
/// through the Matrix client ... In this case, the client retries the request
/// with an auth dict containing only the session key. The response to this
/// will be the same as if the client were attempting to complete an auth
/// state normally, i.e. the request will either complete or request auth,
/// with the presence or absence of that auth type in the 'completed' array
/// indicating whether that stage is complete." — the server remembers the
/// stages completed under a session, for that API call only.
#[tokio::test]
async fn completed_stages_are_remembered_under_the_session_for_that_call() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let password = "/_matrix/client/v3/account/password";
    let (_, challenge) = s.post(password, &ann.token, json!({})).await;
    let session = challenge["session"].as_str().unwrap().to_owned();
    // The stage passes; the call then fails for another reason.
    let (status, body) = s
        .post(
            password,
            &ann.token,
            json!({ "auth": password_auth("ann", "secret-password", Some(&session)) }),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Another user cannot borrow the session.
    let (status, body) = s
        .post(
            password,
            &bob.token,
            json!({ "new_password": "x", "auth": { "session": session } }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(body["session"], session.as_str());
    assert_eq!(body["completed"], json!([]));
    // Nor does it carry over to another API call.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/deactivate",
            &ann.token,
            json!({ "auth": { "session": session } }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.get("errcode").is_none(), "{body}");
    assert_eq!(body["completed"], json!([]));
    assert_ne!(body["session"], session.as_str());

    // The same call with only the session key completes.
    let (status, body) = s
        .post(
            password,
            &ann.token,
            json!({ "new_password": "fresh-pw", "auth": { "session": session } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({ "type": "m.login.password", "user": "ann", "password": "fresh-pw" })),
        )
        .await;
    assert_eq!(status, 200);
}

/// Spec: "The client is free to choose which flow it follows, however the
/// flow's stages must be completed in order. Failing to follow the flows in
/// order must result in an HTTP 401 response" — a stage no offered flow has
/// is refused with the challenge and an error, and completes nothing.
#[tokio::test]
async fn a_stage_outside_the_offered_flows_is_refused_with_401() {
    let s = TestServer::start().await;
    let (status, body) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(json!({ "username": "cat", "auth": { "type": "m.login.recaptcha" } })),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["errcode"].is_string(), "{body}");
    assert_eq!(body["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    assert_eq!(body["completed"], json!([]));
    // A password stage is not offered for registration either.
    let (status, body) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(
                json!({ "username": "cat", "auth": password_auth("ann", "secret-password", None) }),
            ),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["errcode"].is_string(), "{body}");
    let (status, _) = s
        .request(
            "GET",
            "/_matrix/client/v3/register/available?username=cat",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "no account was made");
}

/// Spec (`POST /register`, `inhibit_login`): "If true, an `access_token` and
/// `device_id` should not be returned from this call, therefore preventing
/// an automatic login."
#[tokio::test]
async fn inhibit_login_registers_without_a_token_or_device() {
    let s = TestServer::start().await;
    let (status, body) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(json!({
                "username": "dan", "password": "dan-pw", "inhibit_login": true,
                "device_id": "DANPHONE", "auth": { "type": "m.login.dummy" }
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], format!("@dan:{SERVER}"));
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("device_id").is_none(), "{body}");
    // No device was made for the registration: the first login has the only one.
    let (status, login) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({ "type": "m.login.password", "user": "dan", "password": "dan-pw" })),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let (_, devices) = s
        .get(
            "/_matrix/client/v3/devices",
            login["access_token"].as_str().unwrap(),
        )
        .await;
    let devices = devices["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_ne!(devices[0]["device_id"], "DANPHONE");
}

/// Spec: "Homeservers may allow requests that don't require auth by offering
/// a stage with only the `m.login.dummy` auth type, but they must still give
/// a 401 response to requests with no auth data." — an account registered
/// without a password has no password stage to pass; its access token is its
/// only credential, so it is offered the dummy stage.
#[tokio::test]
async fn an_account_without_a_password_is_offered_the_dummy_stage() {
    let s = TestServer::start().await;
    let (status, reg) = s
        .request(
            "POST",
            REGISTER,
            None,
            Some(json!({ "username": "eve", "auth": { "type": "m.login.dummy" } })),
        )
        .await;
    assert_eq!(status, 200, "{reg}");
    let token = reg["access_token"].as_str().unwrap();
    let path = format!(
        "/_matrix/client/v3/devices/{}",
        reg["device_id"].as_str().unwrap()
    );
    let (status, challenge) = s
        .request("DELETE", &path, Some(token), Some(json!({})))
        .await;
    assert_eq!(status, 401, "{challenge}");
    assert!(challenge.get("errcode").is_none());
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    let body = json!({ "auth": { "type": "m.login.dummy", "session": challenge["session"] } });
    let (status, body) = s.request("DELETE", &path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{body}");
}
