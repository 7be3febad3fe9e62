//! User directory privacy.
//!
//! Client-Server API, "User directory": "The homeserver MUST at a minimum
//! consider users who are visible to the requester based on their
//! membership in rooms known to the homeserver. This means: users that
//! share a room with the requesting user; users who are joined to rooms
//! known to the homeserver that have a `public` join rule." Conifer
//! searches that set and no more (Synapse's default): a user who shares no
//! room with the searcher and is in no public room is not found.

mod common;
use common::*;
use serde_json::{json, Value};

async fn search(s: &TestServer, user: &User, term: &str) -> Vec<String> {
    let (status, body) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            &user.token,
            json!({ "search_term": term }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for r in body["results"].as_array().unwrap() {
        assert!(
            !r.as_object().unwrap().values().any(Value::is_null),
            "absent fields are omitted, not null: {r}"
        );
    }
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_room_mates_and_members_of_public_rooms_are_found() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let dave = s.register("dave").await;

    // Ann and Bob share a private room.
    let private = s
        .create_room(
            &ann,
            json!({ "preset": "private_chat", "invite": [bob.user_id] }),
        )
        .await;
    assert_eq!(s.join(&bob, &private).await.0, 200);
    assert_eq!(search(&s, &ann, "bob").await, vec![bob.user_id.clone()]);
    assert!(
        search(&s, &carol, "bob").await.is_empty(),
        "carol shares no room with bob, and bob is in no public room"
    );
    assert!(search(&s, &carol, "ann").await.is_empty());

    // Dave is in a public room: anyone finds him.
    let public = s
        .create_room(&dave, json!({ "preset": "public_chat" }))
        .await;
    assert_eq!(search(&s, &carol, "dave").await, vec![dave.user_id.clone()]);

    // The room stops being public: Dave is no longer found by strangers.
    let (status, _) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.join_rules",
                enc(&public)
            ),
            &dave.token,
            json!({ "join_rule": "invite" }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(search(&s, &carol, "dave").await.is_empty());

    // Membership changes are followed: Bob leaves, Ann no longer finds him.
    s.leave(&bob, &private).await;
    assert!(search(&s, &ann, "bob").await.is_empty());
}
