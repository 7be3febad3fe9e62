//! User-interactive authentication sessions take bounded memory. Alone in
//! its own test binary: the session table is shared by every homeserver in
//! a process, and this test fills it.

mod common;
use common::*;
use serde_json::json;

/// The server's cap on remembered UIA sessions (`UIA_SESSION_CAP`).
const CAP: usize = 10_000;

/// Spec: "`session`: This is a session identifier that the client must pass
/// back to the homeserver, if one is provided, in subsequent attempts to
/// authenticate in the same API call." The spec does not say how long a
/// session lives; every unauthenticated `/register` starts one, so the
/// server remembers a bounded number and forgets the least recently used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_cap_forget_the_least_recently_used() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let path = "/_matrix/client/v3/account/password";
    let (_, challenge) = s.post(path, &ann.token, json!({})).await;
    let session = challenge["session"].as_str().unwrap().to_owned();
    let auth = json!({
        "type": "m.login.password", "session": session, "password": "secret-password",
        "identifier": { "type": "m.id.user", "user": "ann" },
    });
    // The stage completes; the call fails for want of a new password.
    let (status, body) = s.post(path, &ann.token, json!({ "auth": auth })).await;
    assert_eq!(status, 400, "{body}");

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (http, url) = (s.http.clone(), s.url.clone());
        tasks.spawn(async move {
            for _ in (worker..CAP + 100).step_by(8) {
                let r = http
                    .post(format!("{url}/_matrix/client/v3/register"))
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 401);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    // The session is forgotten: only the session key no longer completes.
    let (status, body) = s
        .post(
            path,
            &ann.token,
            json!({ "new_password": "x", "auth": { "session": session } }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_ne!(body["session"], session.as_str());
    assert_eq!(body["completed"], json!([]));
}
