//! Authorization cases (power levels, bans racing joins) and /sync.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn power_levels_bound_what_members_may_do() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat", "power_level_content_override": { "users": { ann.user_id.clone(): 100, bob.user_id.clone(): 50 } } }))
        .await;
    s.join(&bob, &room).await;
    let r = enc(&room);
    let pl_path = format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels");
    let (_, pl) = s.get(&pl_path, &ann.token).await;
    // Bob (50) may not raise himself to 100, nor lower Ann, nor change power levels at all (needs 100).
    let mut raise = pl.clone();
    raise["users"][&bob.user_id] = json!(100);
    assert_eq!(s.put(&pl_path, &bob.token, raise).await.0, 403);
    // Bob may set the name (50) but not history visibility (100).
    assert_eq!(
        s.put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.name"),
            &bob.token,
            json!({ "name": "x" })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.history_visibility"),
            &bob.token,
            json!({ "history_visibility": "joined" })
        )
        .await
        .0,
        403
    );
    // Ann lowers Bob to 0; the old and new power levels conflict no more: the new ones rule.
    let mut lower = pl.clone();
    lower["users"][&bob.user_id] = json!(0);
    assert_eq!(s.put(&pl_path, &ann.token, lower).await.0, 200);
    assert_eq!(
        s.put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.name"),
            &bob.token,
            json!({ "name": "y" })
        )
        .await
        .0,
        403
    );
    // Redacting someone else's event needs the redact level.
    let (_, e) = s.send_text(&ann, &room, "mine").await;
    let path = format!(
        "/_matrix/client/v3/rooms/{r}/redact/{}/r1",
        enc(e["event_id"].as_str().unwrap())
    );
    assert_eq!(s.put(&path, &bob.token, json!({})).await.0, 403);
}

#[tokio::test]
async fn a_ban_racing_a_join_leaves_one_consistent_outcome() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    for i in 0..10 {
        let bob = s.register(&format!("bob{i}")).await;
        let ban_path = format!("/_matrix/client/v3/rooms/{}/ban", enc(&room));
        let ban = s.post(&ban_path, &ann.token, json!({ "user_id": bob.user_id }));
        let join = s.join(&bob, &room);
        let ((ban_status, _), (join_status, _)) = tokio::join!(ban, join);
        assert_eq!(ban_status, 200, "a ban always succeeds");
        let (_, member) = s
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                    enc(&room),
                    enc(&bob.user_id)
                ),
                &ann.token,
            )
            .await;
        // Whatever the order, the ban wins in the end and a banned user cannot talk.
        assert_eq!(member["membership"], "ban", "join status {join_status}");
        assert_eq!(s.send_text(&bob, &room, "hi").await.0, 403);
    }
}

#[tokio::test]
async fn sync_initial_incremental_and_long_poll() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat", "name": "n" }))
        .await;
    s.join(&bob, &room).await;
    s.send_text(&ann, &room, "one").await;
    let first = s.sync(&bob, None, 0).await;
    assert!(timeline_bodies(&first, &room).contains(&"one".to_owned()));
    let state = first["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let timeline = first["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let all: Vec<&Value> = state.iter().chain(timeline.iter()).collect();
    assert!(
        all.iter().any(|e| e["type"] == "m.room.create"),
        "the room's state reaches a new client"
    );
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: the long-poll waits for the timeout.
    let t = Instant::now();
    let idle = s.sync(&bob, Some(&since), 300).await;
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert!(idle["rooms"]["join"].as_object().unwrap().is_empty());

    // A message wakes a waiting long-poll at once.
    let waiter = async {
        let t = Instant::now();
        (s.sync(&bob, Some(&since), 10_000).await, t.elapsed())
    };
    let sender = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.send_text(&ann, &room, "two").await
    };
    let ((woke, waited), _) = tokio::join!(waiter, sender);
    assert!(waited < Duration::from_secs(5), "long-poll took {waited:?}");
    assert_eq!(timeline_bodies(&woke, &room), vec!["two".to_owned()]);
    assert_eq!(woke["rooms"]["join"][&room]["timeline"]["limited"], false);
}

#[tokio::test]
async fn sync_limits_lazy_members_invites_leaves_and_ephemera() {
    let s = TestServer::start().await;
    let (ann, bob, cat) = (
        s.register("ann").await,
        s.register("bob").await,
        s.register("cat").await,
    );
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.join(&cat, &room).await;
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..8 {
        s.send_text(&ann, &room, &format!("x{i}")).await;
    }
    // Timeline limit 3: the newest three, flagged limited, with a prev_batch to page from.
    let filter = enc(
        &json!({ "room": { "timeline": { "limit": 3 }, "state": { "lazy_load_members": true } } })
            .to_string(),
    );
    let (_, limited) = s
        .get(
            &format!("/_matrix/client/v3/sync?since={since}&filter={filter}"),
            &bob.token,
        )
        .await;
    assert_eq!(timeline_bodies(&limited, &room), vec!["x5", "x6", "x7"]);
    assert_eq!(limited["rooms"]["join"][&room]["timeline"]["limited"], true);
    assert!(limited["rooms"]["join"][&room]["timeline"]["prev_batch"].is_string());

    // Lazy members on an initial sync: only the senders of the timeline (and ourselves).
    let (_, lazy) = s
        .get(
            &format!("/_matrix/client/v3/sync?filter={filter}"),
            &bob.token,
        )
        .await;
    let members: Vec<String> = lazy["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        members.contains(&ann.user_id) && !members.contains(&cat.user_id),
        "{members:?}"
    );

    // Invites, typing, receipts, account data.
    let since = s.sync(&cat, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = s
        .create_room(
            &ann,
            json!({ "invite": [cat.user_id.clone()], "name": "secret" }),
        )
        .await;
    s.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            enc(&room),
            enc(&ann.user_id)
        ),
        &ann.token,
        json!({ "typing": true, "timeout": 5000 }),
    )
    .await;
    let (_, e) = s.send_text(&ann, &room, "read me").await;
    s.post(
        &format!(
            "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
            enc(&room),
            enc(e["event_id"].as_str().unwrap())
        ),
        &ann.token,
        json!({}),
    )
    .await;
    s.put(
        &format!(
            "/_matrix/client/v3/user/{}/account_data/org.example.prefs",
            enc(&cat.user_id)
        ),
        &cat.token,
        json!({ "dark": true }),
    )
    .await;
    let inc = s.sync(&cat, Some(&since), 0).await;
    let invite = &inc["rooms"]["invite"][&private]["invite_state"]["events"];
    assert!(invite
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "secret"));
    let ephemeral = inc["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    assert!(ephemeral
        .iter()
        .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"][0] == ann.user_id.as_str()));
    assert!(ephemeral.iter().any(|e| e["type"] == "m.receipt"
        && e["content"][e["content"].as_object().unwrap().keys().next().unwrap()]["m.read"]
            [&ann.user_id]
            .is_object()));
    assert!(inc["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "org.example.prefs"));

    // Leaving shows up under rooms.leave.
    let since = inc["next_batch"].as_str().unwrap().to_owned();
    s.post(
        &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
        &cat.token,
        json!({}),
    )
    .await;
    let after = s.sync(&cat, Some(&since), 0).await;
    assert!(after["rooms"]["leave"][&room].is_object());
    assert!(after["rooms"]["join"].get(&room).is_none());
}

#[tokio::test]
async fn notification_counts_follow_push_rules_and_receipts() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    s.send_text(&ann, &room, "a").await;
    let (_, last) = s
        .put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/m2", enc(&room)), &ann.token, json!({ "msgtype": "m.text", "body": "hey bob", "m.mentions": { "user_ids": [bob.user_id.clone()] } }))
        .await;
    let sync = s.sync(&bob, None, 0).await;
    let counts = &sync["rooms"]["join"][&room]["unread_notifications"];
    assert_eq!(counts["notification_count"], 2);
    assert_eq!(counts["highlight_count"], 1);
    s.post(
        &format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room)),
        &bob.token,
        json!({ "m.read": last["event_id"], "m.fully_read": last["event_id"] }),
    )
    .await;
    let sync = s.sync(&bob, None, 0).await;
    assert_eq!(
        sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        0
    );
    // Disabling the mention rule stops highlights.
    let path = "/_matrix/client/v3/pushrules/global/override/.m.rule.is_user_mention/enabled";
    assert_eq!(
        s.put(path, &bob.token, json!({ "enabled": false })).await.0,
        200
    );
    let (_, en) = s.get(path, &bob.token).await;
    assert_eq!(en["enabled"], false);
    s.put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/m3", enc(&room)), &ann.token, json!({ "msgtype": "m.text", "body": "bob?", "m.mentions": { "user_ids": [bob.user_id.clone()] } }))
        .await;
    let sync = s.sync(&bob, None, 0).await;
    assert_eq!(
        sync["rooms"]["join"][&room]["unread_notifications"]["highlight_count"],
        0
    );
}

#[tokio::test]
async fn a_since_token_from_ahead_of_the_server_is_answered_at_once() {
    let s = TestServer::start().await;
    let u = s.register("ahead").await;
    let started = std::time::Instant::now();
    let r = s.sync(&u, Some("s999999999_0"), 30_000).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the long-poll waited"
    );
    assert!(r["next_batch"].as_str().is_some(), "{r}");
}
