//! Scrolling back after joining a room through another server.
//!
//! Client-Server API, `GET /rooms/{roomId}/messages`: "This API returns a
//! list of message and state events for a room. It uses pagination query
//! parameters to paginate history in the room." and `end`: "If no further
//! events are available (either because we have reached the start of the
//! timeline, or because the user does not have permission to see any more
//! events), this property is omitted from the response." A user who joins
//! a room with earlier history must page back through all of it, fetched
//! from the room's other servers by backfill, before `end` disappears.

mod common;
use common::enc;
use common::federation::{public_room, server, InProcess};
use conifer_homeserver::client;
use conifer_rooms::EventTemplate;
use serde_json::{json, Value};

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let resp = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_remote_join_then_paging_back_returns_every_earlier_message() {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    one.hs.start_federation_sender();
    two.hs.start_federation_sender();
    let ann = "@ann:one.test";
    one.hs.store.create_user(ann, None, false, 0).unwrap();
    let room = public_room(&one.hs, ann, Some("History")).await;
    for i in 0..30 {
        let t = EventTemplate {
            kind: "m.room.message".into(),
            state_key: None,
            content: json!({ "msgtype": "m.text", "body": format!("m{i}") }),
            redacts: None,
        };
        one.hs.send_event(&room, ann, t, None).await.unwrap();
    }

    let bob = "@bob:two.test";
    two.hs.store.create_user(bob, None, false, 0).unwrap();
    two.hs
        .store
        .create_device(bob, "BOB", None, "bob-token", 0)
        .unwrap();
    two.hs
        .join_remote(&room, bob, &["one.test".into()])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = client::router(two.hs.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    // The client's first sync, then back from its prev_batch, ten at a
    // time (the default page size of the common clients).
    let sync = get(&http, &format!("{url}/_matrix/client/v3/sync"), "bob-token").await;
    let mut from = sync["rooms"]["join"][room.as_str()]["timeline"]["prev_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bodies: Vec<String> = sync["rooms"]["join"][room.as_str()]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut saw_create = false;
    for page in 0.. {
        assert!(page < 40, "paging did not end");
        let body = get(
            &http,
            &format!(
                "{url}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&from={}",
                enc(&room),
                enc(&from)
            ),
            "bob-token",
        )
        .await;
        let chunk = body["chunk"].as_array().unwrap();
        for e in chunk {
            assert!(
                ids.insert(e["event_id"].as_str().unwrap().to_owned()),
                "an event came twice: {e}"
            );
            saw_create |= e["type"] == "m.room.create";
            if let Some(b) = e["content"]["body"].as_str() {
                bodies.push(b.to_owned());
            }
        }
        match body["end"].as_str() {
            Some(end) => {
                assert!(
                    !chunk.is_empty(),
                    "a page with an `end` but no events: {body}"
                );
                from = end.to_owned();
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "every message, newest first, once");
    assert!(saw_create, "paging ends at the start of the room");
}
