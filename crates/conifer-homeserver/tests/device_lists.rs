//! Device-list tracking in `/sync` and `/keys/changes`.
//!
//! Client-Server API, "Tracking the device list for a user": `changed`
//! lists "users who have updated their device identity or cross-signing
//! keys, or who now share an encrypted room with the client since the
//! previous sync"; `left` lists "users with whom we do not share any
//! encrypted rooms anymore since the previous sync".

mod common;
use common::*;
use serde_json::{json, Value};

fn list(sync: &Value, key: &str) -> Vec<String> {
    sync["device_lists"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn token(sync: &Value) -> String {
    sync["next_batch"].as_str().unwrap().to_owned()
}

async fn login(s: &TestServer, user: &str) -> Value {
    let (status, body) = s
        .request(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": "secret-password" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn new_renamed_and_deleted_devices_and_room_mates_are_tracked() {
    let s = TestServer::start().await;
    let (ann, bob, carol) = s.three_users().await;
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    let mut since = token(&s.sync(&ann, None, 0).await);

    // A new room-mate: "who now share an encrypted room with the client".
    assert_eq!(s.join(&bob, &room).await.0, 200);
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert!(list(&sync, "changed").contains(&bob.user_id), "{sync}");
    since = token(&sync);

    // Bob logs in on a new device, without uploading any key.
    let second = login(&s, "bob").await;
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert!(list(&sync, "changed").contains(&bob.user_id), "{sync}");
    since = token(&sync);
    let from = since.clone();

    // Bob renames it.
    let device = second["device_id"].as_str().unwrap();
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/devices/{device}"),
            &bob.token,
            json!({ "display_name": "phone" }),
        )
        .await;
    assert_eq!(status, 200);
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert!(list(&sync, "changed").contains(&bob.user_id), "{sync}");
    since = token(&sync);

    // Bob logs that device out: deleted.
    let (status, _) = s
        .post(
            "/_matrix/client/v3/logout",
            second["access_token"].as_str().unwrap(),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert!(list(&sync, "changed").contains(&bob.user_id), "{sync}");
    since = token(&sync);

    // Carol never shares a room with Ann: her new device is not Ann's business.
    login(&s, "carol").await;
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert!(!list(&sync, "changed").contains(&carol.user_id), "{sync}");
    since = token(&sync);

    // Bob leaves the last room he shares with Ann: "left".
    s.leave(&bob, &room).await;
    let sync = s.sync(&ann, Some(&since), 0).await;
    assert_eq!(list(&sync, "left"), vec![bob.user_id.clone()], "{sync}");
    let to = token(&sync);

    // /keys/changes over the same span says the same.
    let (status, changes) = s
        .get(
            &format!(
                "/_matrix/client/v3/keys/changes?from={}&to={}",
                enc(&from),
                enc(&to)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changes["left"], json!([bob.user_id]), "{changes}");
    assert!(
        !changes["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == bob.user_id.as_str()),
        "a user who left is not also changed: {changes}"
    );
}
