//! The Client-Server families on Ruma's typed requests and responses:
//! parse failures are Matrix errors with the spec's codes (never a 500),
//! the legacy `r0` prefix is served by the same handlers, and the spec's
//! body defaults hold where Ruma's types require a key.

mod common;
use common::*;
use serde_json::{json, Value};

/// A request with a raw body.
async fn raw(s: &TestServer, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let resp = s
        .http
        .request(method.parse().unwrap(), format!("{}{path}", s.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn code(r: &(u16, Value)) -> (u16, Option<&str>) {
    (r.0, r.1["errcode"].as_str())
}

/// "`M_NOT_JSON` Request did not contain valid JSON"; "`M_BAD_JSON` Request
/// contained valid JSON, but it was malformed in some way, e.g. missing
/// required keys, invalid values for keys"; "`M_INVALID_PARAM` A parameter
/// that was specified has the wrong value".
#[tokio::test]
async fn typed_parse_failures_are_matrix_errors() {
    let s = TestServer::start_with(|c| c.client.max_request_bytes = 4096).await;
    let ann = s.register("ann").await;
    let me = enc(&ann.user_id);
    let presence = format!("/_matrix/client/v3/presence/{me}/status");
    let r = raw(&s, "PUT", &presence, &ann.token, "{not json").await;
    assert_eq!(code(&r), (400, Some("M_NOT_JSON")), "{}", r.1);
    let r = raw(
        &s,
        "PUT",
        &presence,
        &ann.token,
        "{\"presence\": \"online\"",
    )
    .await;
    assert_eq!(code(&r), (400, Some("M_NOT_JSON")), "{}", r.1);
    let r = raw(&s, "PUT", &presence, &ann.token, "{}").await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")), "{}", r.1);
    let r = raw(&s, "PUT", &presence, &ann.token, "[]").await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")), "{}", r.1);
    let r = raw(&s, "PUT", &presence, &ann.token, "{\"presence\": 5}").await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")), "{}", r.1);
    let r = raw(
        &s,
        "PUT",
        &presence,
        &ann.token,
        "{\"presence\": \"dancing\"}",
    )
    .await;
    assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")), "{}", r.1);
    // A path parameter that is not a user ID, a room ID or an alias.
    for path in [
        "/_matrix/client/v3/presence/not-a-user/status".to_owned(),
        "/_matrix/client/v3/profile/not-a-user".to_owned(),
        format!("/_matrix/client/v3/user/{me}/rooms/not-a-room/tags"),
        "/_matrix/client/v3/directory/room/not-an-alias".to_owned(),
        "/_matrix/client/v3/directory/list/room/nope".to_owned(),
    ] {
        let r = s.get(&path, &ann.token).await;
        assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")), "{path}: {}", r.1);
    }
    // A query parameter of the wrong type.
    let r = s
        .get("/_matrix/client/v3/publicRooms?limit=many", &ann.token)
        .await;
    assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")), "{}", r.1);
    // Bodies past the limit are refused before they are parsed.
    let big = format!(
        "{{\"presence\": \"online\", \"status_msg\": \"{}\"}}",
        "x".repeat(10_000)
    );
    let r = raw(&s, "PUT", &presence, &ann.token, &big).await;
    assert_eq!(code(&r), (413, Some("M_TOO_LARGE")), "{}", r.1);
    // A missing token is still the Auth extractor's answer.
    let (status, body) = s
        .request(
            "PUT",
            &presence,
            None,
            Some(json!({ "presence": "online" })),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
}

/// The legacy `r0` prefix is served by the same typed handlers.
#[tokio::test]
async fn r0_prefix_reaches_the_typed_handlers() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let me = enc(&ann.user_id);
    let (status, _) = s
        .put(
            &format!("/_matrix/client/r0/profile/{me}/displayname"),
            &ann.token,
            json!({ "displayname": "Ann" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .get(
            &format!("/_matrix/client/r0/profile/{me}/displayname"),
            &ann.token,
        )
        .await;
    assert_eq!((status, body), (200, json!({ "displayname": "Ann" })));
    let (status, body) = s
        .post(
            &format!("/_matrix/client/r0/user/{me}/filter"),
            &ann.token,
            json!({ "room": { "timeline": { "limit": 5 } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .get(
            &format!("/_matrix/client/r0/user/{me}/filter/{id}"),
            &ann.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room"]["timeline"]["limit"], 5);
}

/// Profiles: `null` (or no key) clears a field; other fields are not
/// stored; another user's profile is not ours to change.
#[tokio::test]
async fn profile_fields_set_clear_and_refuse() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let me = enc(&ann.user_id);
    let name = format!("/_matrix/client/v3/profile/{me}/displayname");
    let avatar = format!("/_matrix/client/v3/profile/{me}/avatar_url");
    assert_eq!(
        s.put(&name, &ann.token, json!({ "displayname": "Ann" }))
            .await
            .0,
        200
    );
    assert_eq!(
        s.put(
            &avatar,
            &ann.token,
            json!({ "avatar_url": "mxc://example.org/abc" })
        )
        .await
        .0,
        200
    );
    let (_, p) = s
        .get(&format!("/_matrix/client/v3/profile/{me}"), &bob.token)
        .await;
    assert_eq!(
        p,
        json!({ "displayname": "Ann", "avatar_url": "mxc://example.org/abc" })
    );
    assert_eq!(
        s.put(&name, &ann.token, json!({ "displayname": null }))
            .await
            .0,
        200
    );
    let r = s.get(&name, &ann.token).await;
    assert_eq!(code(&r), (404, Some("M_NOT_FOUND")));
    assert_eq!(s.put(&avatar, &ann.token, json!({})).await.0, 200);
    let (_, p) = s
        .get(&format!("/_matrix/client/v3/profile/{me}"), &bob.token)
        .await;
    assert_eq!(p, json!({}));
    let r = s
        .put(&name, &bob.token, json!({ "displayname": "evil" }))
        .await;
    assert_eq!(code(&r), (403, Some("M_FORBIDDEN")));
    let r = s
        .put(
            &format!("/_matrix/client/v3/profile/{me}/m.tz"),
            &ann.token,
            json!({ "m.tz": "Europe/Paris" }),
        )
        .await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")));
    let r = s
        .get(&format!("/_matrix/client/v3/profile/{me}/m.tz"), &ann.token)
        .await;
    assert_eq!(code(&r), (404, Some("M_NOT_FOUND")));
}

/// Account data and tags through the typed handlers: content round-trips,
/// server-managed types are refused, a tag is removed.
#[tokio::test]
async fn account_data_and_tags_round_trip() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let me = enc(&ann.user_id);
    let global = format!("/_matrix/client/v3/user/{me}/account_data/org.example.x");
    let content = json!({ "a": [1, 2, { "b": null }], "c": "d" });
    assert_eq!(s.put(&global, &ann.token, content.clone()).await.0, 200);
    assert_eq!(s.get(&global, &ann.token).await, (200, content.clone()));
    let in_room = format!(
        "/_matrix/client/v3/user/{me}/rooms/{}/account_data/org.example.y",
        enc(&room)
    );
    assert_eq!(s.put(&in_room, &ann.token, content.clone()).await.0, 200);
    assert_eq!(s.get(&in_room, &ann.token).await, (200, content));
    let r = s
        .put(
            &format!("/_matrix/client/v3/user/{me}/account_data/m.push_rules"),
            &ann.token,
            json!({}),
        )
        .await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")));
    let r = raw(&s, "PUT", &global, &ann.token, "[1]").await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")), "{}", r.1);
    let r = s
        .get(
            &format!("/_matrix/client/v3/user/{me}/account_data/org.none"),
            &ann.token,
        )
        .await;
    assert_eq!(code(&r), (404, Some("M_NOT_FOUND")));
    let tags = format!("/_matrix/client/v3/user/{me}/rooms/{}/tags", enc(&room));
    assert_eq!(
        s.put(
            &format!("{tags}/u.work"),
            &ann.token,
            json!({ "order": 0.25 })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(&format!("{tags}/m.lowpriority"), &ann.token, json!({}))
            .await
            .0,
        200
    );
    let (_, t) = s.get(&tags, &ann.token).await;
    assert_eq!(
        t,
        json!({ "tags": { "u.work": { "order": 0.25 }, "m.lowpriority": {} } })
    );
    let (status, _) = s
        .request("DELETE", &format!("{tags}/u.work"), Some(&ann.token), None)
        .await;
    assert_eq!(status, 200);
    let (_, t) = s.get(&tags, &ann.token).await;
    assert_eq!(t, json!({ "tags": { "m.lowpriority": {} } }));
    let bob = s.register("bob").await;
    let r = s.get(&tags, &bob.token).await;
    assert_eq!(code(&r), (403, Some("M_FORBIDDEN")));
}

/// "visibility: The new visibility setting for the room. Defaults to
/// `public`." Aliases: created, read, listed and deleted.
#[tokio::test]
async fn directory_visibility_default_and_aliases() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({ "name": "Pines" })).await;
    let vis = format!("/_matrix/client/v3/directory/list/room/{}", enc(&room));
    assert_eq!(
        s.get(&vis, &ann.token).await,
        (200, json!({ "visibility": "private" }))
    );
    assert_eq!(s.put(&vis, &ann.token, json!({})).await.0, 200);
    assert_eq!(
        s.get(&vis, &ann.token).await,
        (200, json!({ "visibility": "public" }))
    );
    let r = s
        .put(&vis, &ann.token, json!({ "visibility": "secret" }))
        .await;
    assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")));
    let (_, dir) = s
        .request("GET", "/_matrix/client/v3/publicRooms", None, None)
        .await;
    assert_eq!(dir["chunk"][0]["room_id"], room.as_str());
    assert_eq!(dir["chunk"][0]["name"], "Pines");
    assert_eq!(dir["total_room_count_estimate"], 1);
    let server = ann.user_id.split_once(':').unwrap().1;
    let alias = format!("#pines:{server}");
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(&alias));
    let r = s.put(&path, &ann.token, json!({})).await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")), "{}", r.1);
    assert_eq!(
        s.put(&path, &ann.token, json!({ "room_id": room })).await.0,
        200
    );
    let (status, body) = s.get(&path, &ann.token).await;
    assert_eq!(
        (status, body["room_id"].as_str()),
        (200, Some(room.as_str()))
    );
    let (_, list) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/aliases", enc(&room)),
            &ann.token,
        )
        .await;
    assert_eq!(list, json!({ "aliases": [alias] }));
    let (status, _) = s.request("DELETE", &path, Some(&ann.token), None).await;
    assert_eq!(status, 200);
    let r = s.get(&path, &ann.token).await;
    assert_eq!(code(&r), (404, Some("M_NOT_FOUND")));
}

/// Typing without `timeout` (only `typing` is required by the spec),
/// receipts and read markers with event IDs checked.
#[tokio::test]
async fn typing_receipts_and_markers() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await;
    let r_enc = enc(&room);
    let typing = format!(
        "/_matrix/client/v3/rooms/{r_enc}/typing/{}",
        enc(&ann.user_id)
    );
    assert_eq!(
        s.put(&typing, &ann.token, json!({ "typing": true }))
            .await
            .0,
        200
    );
    assert_eq!(
        s.put(
            &typing,
            &ann.token,
            json!({ "typing": true, "timeout": 5000 })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(&typing, &ann.token, json!({ "typing": false }))
            .await
            .0,
        200
    );
    let r = s.put(&typing, &ann.token, json!({})).await;
    assert_eq!(code(&r), (400, Some("M_BAD_JSON")));
    let (_, sent) = s.send_text(&ann, &room, "hello").await;
    let event = sent["event_id"].as_str().unwrap().to_owned();
    let receipt = format!(
        "/_matrix/client/v3/rooms/{r_enc}/receipt/m.read/{}",
        enc(&event)
    );
    assert_eq!(s.post(&receipt, &ann.token, json!({})).await.0, 200);
    let r = s
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{r_enc}/receipt/m.unknown/{}",
                enc(&event)
            ),
            &ann.token,
            json!({}),
        )
        .await;
    assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")));
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{r_enc}/receipt/m.read/not-an-event"),
            &ann.token,
            json!({}),
        )
        .await;
    assert_eq!(code(&r), (400, Some("M_INVALID_PARAM")));
    let markers = format!("/_matrix/client/v3/rooms/{r_enc}/read_markers");
    assert_eq!(
        s.post(
            &markers,
            &ann.token,
            json!({ "m.fully_read": event, "m.read": event })
        )
        .await
        .0,
        200
    );
    let (_, fully) = s
        .get(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{r_enc}/account_data/m.fully_read",
                enc(&ann.user_id)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(fully, json!({ "event_id": event }));
}

/// Versions, capabilities and the probes clients make, as Ruma's typed
/// responses serialize them.
#[tokio::test]
async fn versions_capabilities_and_probes() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let (status, v) = s
        .request("GET", "/_matrix/client/versions", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(v["versions"].as_array().unwrap().contains(&json!("v1.11")));
    assert_eq!(v["unstable_features"]["org.matrix.msc2432"], true);
    let (status, caps) = s.get("/_matrix/client/v3/capabilities", &ann.token).await;
    assert_eq!(status, 200);
    let caps = &caps["capabilities"];
    assert_eq!(caps["m.room_versions"]["available"]["11"], "stable");
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
    assert_eq!(caps["m.get_login_token"]["enabled"], true);
    assert_ne!(caps["m.change_password"]["enabled"], false);
    for (path, expected) in [
        (
            "/_matrix/client/v3/account/3pid",
            json!({ "threepids": [] }),
        ),
        ("/_matrix/client/v3/pushers", json!({ "pushers": [] })),
        ("/_matrix/client/v3/thirdparty/protocols", json!({})),
        ("/_matrix/client/r0/voip/turnServer", json!({})),
    ] {
        assert_eq!(s.get(path, &ann.token).await, (200, expected), "{path}");
    }
}
