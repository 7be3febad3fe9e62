//! Room aliases of other servers: resolved by asking the alias's server
//! (`/_matrix/federation/v1/query/directory`) every time, joined through
//! the servers it names, and checked in `m.room.canonical_alias`. Three
//! real servers joined by the in-process federation transport.

mod common;
use common::federation::*;
use conifer_homeserver::Homeserver;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One Client-Server API request to `hs`, in process.
async fn client(
    hs: &Arc<Homeserver>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        ))
        .unwrap();
    let resp = conifer_homeserver::client::router(hs.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A local user with an access token equal to its localpart.
fn user(hs: &Homeserver, id: &str) -> String {
    hs.store.create_user(id, None, false, 0).unwrap();
    let token = id[1..].split(':').next().unwrap().to_owned();
    hs.store.create_device(id, "D", None, &token, 0).unwrap();
    token
}

const ANN: &str = "@ann:one.test";
const BOB: &str = "@bob:two.test";
const CAROL: &str = "@carol:three.test";

struct Net {
    net: InProcess,
    one: Server,
    two: Server,
    three: Server,
}

fn three_servers() -> Net {
    let net = InProcess::default();
    let one = server("one.test", "k1", 1, &net);
    let two = server("two.test", "k2", 2, &net);
    let three = server("three.test", "k3", 3, &net);
    for s in [&one, &two, &three] {
        s.hs.start_federation_sender();
    }
    user(&one.hs, ANN);
    user(&two.hs, BOB);
    user(&three.hs, CAROL);
    Net {
        net,
        one,
        two,
        three,
    }
}

/// A public room on `hs` with the local alias `#{local}:{server}`.
async fn room_with_alias(hs: &Arc<Homeserver>, token: &str, local: &str) -> String {
    let (status, r) = client(
        hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        token,
        Some(json!({ "preset": "public_chat", "room_alias_name": local })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    r["room_id"].as_str().unwrap().to_owned()
}

async fn get_alias(hs: &Arc<Homeserver>, token: &str, alias: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias));
    client(hs, "GET", &path, token, None).await
}

#[tokio::test]
async fn a_remote_alias_resolves_through_its_server_and_joins_by_it() {
    let n = three_servers();
    let room = room_with_alias(&n.one.hs, "ann", "pines").await;
    let alias = "#pines:one.test";

    // Server-Server API, query/directory: "Performs a query to get the
    // mapped room ID and list of resident homeservers in the room for a
    // given room alias."
    let (status, r) = get_alias(&n.two.hs, "bob", alias).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["room_id"], room.as_str());
    assert_eq!(r["servers"], json!(["one.test"]));

    // Client-Server API, POST /join/{roomIdOrAlias}: "The room identifier
    // or alias to join." Bob's server is not in the room: it joins through
    // the servers the alias's server named.
    let path = format!("/_matrix/client/v3/join/{}", enc(alias));
    let (status, r) = client(&n.two.hs, "POST", &path, "bob", Some(json!({}))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["room_id"], room.as_str());
    assert_eq!(
        n.two.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("join")
    );
    assert_eq!(
        n.one.hs.membership(&room, BOB).unwrap().as_deref(),
        Some("join")
    );

    // "our /query/directory answers others with the servers in the room".
    let uri = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        enc(alias)
    );
    let (status, r) = signed(&n.net, &n.three.hs.key, "one.test", &uri).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["room_id"], room.as_str());
    assert_eq!(r["servers"], json!(["one.test", "two.test"]));
    // And a client of a third server sees the same through its own server.
    let (status, r) = get_alias(&n.three.hs, "carol", alias).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["servers"], json!(["one.test", "two.test"]));

    // "Homeservers should only query room aliases that belong to the
    // target server": one.test does not look up two.test's aliases for
    // others, and an unknown alias of its own is 404.
    let foreign = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        enc("#x:two.test")
    );
    let (status, r) = signed(&n.net, &n.three.hs.key, "one.test", &foreign).await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM"))
    );
    let unknown = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        enc("#nothing:one.test")
    );
    let (status, r) = signed(&n.net, &n.three.hs.key, "one.test", &unknown).await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let (status, r) = signed(
        &n.net,
        &n.three.hs.key,
        "one.test",
        "/_matrix/federation/v1/query/directory",
    )
    .await;
    assert_eq!(
        (status, r["errcode"].as_str()),
        (400, Some("M_MISSING_PARAM"))
    );

    // A client asking for an unknown alias of another server, or of a
    // server that cannot be reached, gets 404.
    let (status, r) = get_alias(&n.two.hs, "bob", "#nothing:one.test").await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let (status, r) = get_alias(&n.two.hs, "bob", "#x:unreachable.test").await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let path = format!("/_matrix/client/v3/join/{}", enc("#nothing:one.test"));
    let (status, r) = client(&n.three.hs, "POST", &path, "carol", Some(json!({}))).await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
}

#[tokio::test]
async fn a_deleted_or_moved_remote_alias_is_not_served_from_a_cache() {
    let n = three_servers();
    let first = room_with_alias(&n.one.hs, "ann", "pines").await;
    let alias = "#pines:one.test";
    let (status, r) = get_alias(&n.two.hs, "bob", alias).await;
    assert_eq!((status, r["room_id"].as_str()), (200, Some(first.as_str())));

    // Deleted on its server: gone for everyone at once.
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias));
    let (status, r) = client(&n.one.hs, "DELETE", &path, "ann", None).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = get_alias(&n.two.hs, "bob", alias).await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let join = format!("/_matrix/client/v3/join/{}", enc(alias));
    let (status, r) = client(&n.two.hs, "POST", &join, "bob", Some(json!({}))).await;
    assert_eq!((status, r["errcode"].as_str()), (404, Some("M_NOT_FOUND")));

    // Pointed at another room: the new room, not the old one.
    let (status, r) = client(
        &n.one.hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        "ann",
        Some(json!({ "preset": "public_chat" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let second = r["room_id"].as_str().unwrap().to_owned();
    let (status, r) = client(
        &n.one.hs,
        "PUT",
        &path,
        "ann",
        Some(json!({ "room_id": second })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = get_alias(&n.two.hs, "bob", alias).await;
    assert_eq!(
        (status, r["room_id"].as_str()),
        (200, Some(second.as_str()))
    );
    let (status, r) = client(&n.two.hs, "POST", &join, "bob", Some(json!({}))).await;
    assert_eq!(
        (status, r["room_id"].as_str()),
        (200, Some(second.as_str()))
    );
    assert_eq!(
        n.two.hs.membership(&first, BOB).unwrap(),
        None,
        "the old room was never joined"
    );
}

#[tokio::test]
async fn canonical_alias_checks_aliases_of_other_servers_through_their_server() {
    let n = three_servers();
    // Bob's room on two.test; ann joins it by its ID through two.test.
    let (status, r) = client(
        &n.two.hs,
        "POST",
        "/_matrix/client/v3/createRoom",
        "bob",
        Some(json!({ "preset": "public_chat" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let room = r["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    let (status, r) = client(&n.one.hs, "POST", &join, "ann", Some(json!({}))).await;
    assert_eq!(status, 200, "{r}");
    // Ann gives it an alias on one.test, and another alias there points elsewhere.
    let path = format!(
        "/_matrix/client/v3/directory/room/{}",
        enc("#bobs:one.test")
    );
    let (status, r) = client(
        &n.one.hs,
        "PUT",
        &path,
        "ann",
        Some(json!({ "room_id": room })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    room_with_alias(&n.one.hs, "ann", "elsewhere").await;

    // Client-Server API, PUT /rooms/{roomId}/state/{eventType}/{stateKey}:
    // "If the event type being sent is `m.room.canonical_alias` servers
    // SHOULD ensure that any new aliases being listed in the event are valid
    // per their grammar/syntax and that they point to the room ID where the
    // state event is to be sent."
    let state = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias",
        enc(&room)
    );
    let put = |content: Value| {
        let hs = n.two.hs.clone();
        let state = state.clone();
        async move { client(&hs, "PUT", &state, "bob", Some(content)).await }
    };
    for wrong in [
        json!({ "alt_aliases": ["#elsewhere:one.test"] }),
        json!({ "alias": "#elsewhere:one.test" }),
        json!({ "alt_aliases": ["#nothing:one.test"] }),
        json!({ "alt_aliases": ["#x:unreachable.test"] }),
    ] {
        let (status, r) = put(wrong.clone()).await;
        assert_eq!(
            (status, r["errcode"].as_str()),
            (400, Some("M_BAD_ALIAS")),
            "{wrong}: {r}"
        );
    }
    let (status, r) =
        put(json!({ "alias": "#bobs:one.test", "alt_aliases": ["#bobs:one.test"] })).await;
    assert_eq!(status, 200, "{r}");

    // "Servers do not validate aliases which are being removed or are
    // already present in the state event": once the alias is deleted on
    // one.test, the event listing it can still be sent again.
    let (status, r) = client(&n.one.hs, "DELETE", &path, "ann", None).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = put(json!({ "alias": "#bobs:one.test", "alt_aliases": [] })).await;
    assert_eq!(status, 200, "{r}");
    let (_, r) = get_alias(&n.three.hs, "carol", "#bobs:one.test").await;
    assert_eq!(r["errcode"], "M_NOT_FOUND");
}
