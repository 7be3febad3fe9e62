//! Bad input gets Matrix errors (never a 500), and the E2EE, media,
//! profile and directory endpoints.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn bad_requests_get_matrix_errors() {
    let s = TestServer::start_with(|c| {
        c.client.max_request_bytes = 4096;
        c.rate_limits.enabled = false;
    })
    .await;
    let ann = s.register("ann").await;
    let url = |p: &str| format!("{}{}", s.url, p);
    let raw = |method: &str, path: &str, body: &'static str| {
        s.http
            .request(method.parse().unwrap(), url(path))
            .bearer_auth(&ann.token)
            .body(body)
    };
    let check = |r: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(r.status().as_u16(), status);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["errcode"], code, "{v}");
    };
    check(
        raw("POST", "/_matrix/client/v3/createRoom", "{not json")
            .send()
            .await
            .unwrap(),
        400,
        "M_NOT_JSON",
    )
    .await;
    check(
        raw("POST", "/_matrix/client/v3/createRoom", "[1,2]")
            .send()
            .await
            .unwrap(),
        400,
        "M_BAD_JSON",
    )
    .await;
    check(
        raw(
            "POST",
            "/_matrix/client/v3/createRoom",
            r#"{"invite": "not-a-list"}"#,
        )
        .send()
        .await
        .unwrap(),
        400,
        "M_BAD_JSON",
    )
    .await;
    check(
        raw(
            "POST",
            "/_matrix/client/v3/createRoom",
            r#"{"invite": ["not a user"]}"#,
        )
        .send()
        .await
        .unwrap(),
        400,
        "M_INVALID_PARAM",
    )
    .await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(10_000));
    let r = s
        .http
        .post(url("/_matrix/client/v3/createRoom"))
        .bearer_auth(&ann.token)
        .body(big)
        .send()
        .await
        .unwrap();
    check(r, 413, "M_TOO_LARGE").await;
    check(
        s.http
            .get(url("/_matrix/client/v3/joined_rooms"))
            .send()
            .await
            .unwrap(),
        401,
        "M_MISSING_TOKEN",
    )
    .await;
    check(
        s.http
            .get(url("/_matrix/client/v3/joined_rooms"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
        401,
        "M_UNKNOWN_TOKEN",
    )
    .await;
    check(
        s.http
            .get(url("/_matrix/client/v3/no/such/thing"))
            .send()
            .await
            .unwrap(),
        404,
        "M_UNRECOGNIZED",
    )
    .await;
    check(
        s.http
            .delete(url("/_matrix/client/v3/createRoom"))
            .send()
            .await
            .unwrap(),
        405,
        "M_UNRECOGNIZED",
    )
    .await;
    check(
        raw(
            "GET",
            "/_matrix/client/v3/rooms/!nope:test.local/messages",
            "",
        )
        .send()
        .await
        .unwrap(),
        400,
        "M_MISSING_PARAM",
    )
    .await;
    check(
        raw(
            "GET",
            "/_matrix/client/v3/rooms/!nope:test.local/messages?dir=b",
            "",
        )
        .send()
        .await
        .unwrap(),
        403,
        "M_FORBIDDEN",
    )
    .await;
    check(
        raw("GET", "/_matrix/client/v3/sync?since=garbage", "")
            .send()
            .await
            .unwrap(),
        400,
        "M_INVALID_PARAM",
    )
    .await;
    // A failed createRoom leaves no room behind.
    let (_, before) = s.get("/_matrix/client/v3/joined_rooms", &ann.token).await;
    let bad_levels = json!({ "initial_state": [{ "type": "m.room.power_levels", "state_key": "", "content": { "users": "bad" } }] });
    let (status, body) = s
        .post("/_matrix/client/v3/createRoom", &ann.token, bad_levels)
        .await;
    assert!(status == 400 || status == 403, "{status} {body}");
    let (_, after) = s.get("/_matrix/client/v3/joined_rooms", &ann.token).await;
    assert_eq!(before, after, "a failed createRoom must not leave a room");
    // CORS preflight for browser clients.
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, url("/_matrix/client/v3/sync"))
        .header("Origin", "http://localhost:4173")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn rate_limits_answer_limit_exceeded() {
    let s = TestServer::start_with(|c| {
        c.rate_limits.enabled = true;
        c.rate_limits.messages = conifer_homeserver::config::Bucket {
            per_second: 0.5,
            burst: 3.0,
        };
    })
    .await;
    let ann = s.register("ann").await;
    let room = s.create_room(&ann, json!({})).await; // takes one token
    let mut codes = vec![];
    for i in 0..4 {
        let (status, body) = s.send_text(&ann, &room, &format!("{i}")).await;
        codes.push((
            status,
            body["errcode"].as_str().map(str::to_owned),
            body["retry_after_ms"].as_u64(),
        ));
    }
    assert_eq!(codes[0].0, 200);
    let limited = codes
        .iter()
        .find(|c| c.0 == 429)
        .expect("a request is limited");
    assert_eq!(limited.1.as_deref(), Some("M_LIMIT_EXCEEDED"));
    assert!(limited.2.unwrap() > 0);
}

#[tokio::test]
async fn keys_upload_query_claim_and_changes() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(&ann, json!({ "preset": "public_chat" }))
        .await;
    s.join(&bob, &room).await;
    let since = s.sync(&bob, None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    // Device keys carry the device's self-signature (checked on upload).
    use conifer_rooms::ruma::signatures::{sign_json, Ed25519KeyPair};
    let pair =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), ann.device_id.clone()).unwrap();
    let ed25519 =
        conifer_rooms::ruma::serde::Base64::<conifer_rooms::ruma::serde::base64::Standard>::new(
            pair.public_key().to_vec(),
        )
        .encode();
    let serde_json::Value::Object(unsigned) = json!({
        "user_id": ann.user_id, "device_id": ann.device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": { format!("curve25519:{}", ann.device_id): "c", format!("ed25519:{}", ann.device_id): ed25519 }
    }) else {
        unreachable!()
    };
    let mut device_keys = conifer_rooms::ruma::canonical_json::try_from_json_map(unsigned).unwrap();
    sign_json(&ann.user_id, &pair, &mut device_keys).unwrap();
    let (status, up) = s
        .post("/_matrix/client/r0/keys/upload", &ann.token, json!({
            "device_keys": device_keys,
            "one_time_keys": { "signed_curve25519:AAAA": { "key": "k1" }, "signed_curve25519:AAAB": { "key": "k2" } },
            "fallback_keys": { "signed_curve25519:FFFF": { "key": "fb", "fallback": true } }
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(up["one_time_key_counts"]["signed_curve25519"], 2);
    // Someone else's device keys are refused.
    let forged = json!({ "device_keys": { "user_id": bob.user_id, "device_id": "X", "keys": {} } });
    assert_eq!(
        s.post("/_matrix/client/v3/keys/upload", &ann.token, forged)
            .await
            .0,
        400
    );
    let (_, q) = s
        .post(
            "/_matrix/client/v3/keys/query",
            &bob.token,
            json!({ "device_keys": { ann.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(
        q["device_keys"][&ann.user_id][&ann.device_id]["keys"]
            [format!("ed25519:{}", ann.device_id)],
        json!(ed25519)
    );
    // Two claims take the two one-time keys; the third gets the fallback key.
    let claim = json!({ "one_time_keys": { ann.user_id.clone(): { ann.device_id.clone(): "signed_curve25519" } } });
    let mut got = vec![];
    for _ in 0..3 {
        let (_, c) = s
            .post("/_matrix/client/v3/keys/claim", &bob.token, claim.clone())
            .await;
        let keys = c["one_time_keys"][&ann.user_id][&ann.device_id]
            .as_object()
            .unwrap()
            .clone();
        got.push(
            keys.values().next().unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got, vec!["k1", "k2", "fb"]);
    let sync = s.sync(&ann, None, 0).await;
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"]
            .as_u64()
            .unwrap_or(0),
        0
    );
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]));
    // Bob learns that Ann's keys changed, through sync and /keys/changes.
    let inc = s.sync(&bob, Some(&since), 0).await;
    assert!(inc["device_lists"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == ann.user_id.as_str()));
    let to = inc["next_batch"].as_str().unwrap();
    let (_, ch) = s
        .get(
            &format!("/_matrix/client/v3/keys/changes?from={since}&to={to}"),
            &bob.token,
        )
        .await;
    assert!(ch["changed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == ann.user_id.as_str()));
    // To-device: delivered once.
    let msg =
        json!({ "messages": { ann.user_id.clone(): { ann.device_id.clone(): { "hello": 1 } } } });
    s.put(
        "/_matrix/client/v3/sendToDevice/org.example.ping/tx1",
        &bob.token,
        msg,
    )
    .await;
    let first = s
        .sync(&ann, Some(sync["next_batch"].as_str().unwrap()), 0)
        .await;
    assert_eq!(first["to_device"]["events"][0]["content"]["hello"], 1);
    let second = s
        .sync(&ann, Some(first["next_batch"].as_str().unwrap()), 0)
        .await;
    assert!(second["to_device"]["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn cross_signing_and_key_backup() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let master = json!({ "user_id": ann.user_id, "usage": ["master"], "keys": { "ed25519:MASTER": "MASTER" } });
    assert_eq!(
        s.post(
            "/_matrix/client/v3/keys/device_signing/upload",
            &ann.token,
            json!({ "master_key": master })
        )
        .await
        .0,
        200
    );
    let (_, q) = s
        .post(
            "/_matrix/client/v3/keys/query",
            &ann.token,
            json!({ "device_keys": { ann.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(
        q["master_keys"][&ann.user_id]["keys"]["ed25519:MASTER"],
        "MASTER"
    );

    let (_, v) = s.post("/_matrix/client/v3/room_keys/version", &ann.token, json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "p" } })).await;
    let version = v["version"].as_str().unwrap().to_owned();
    let session = json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": { "ciphertext": "c" } });
    let (status, put) = s
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/!r:test.local/sess1?version={version}"),
            &ann.token,
            session.clone(),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["count"], 1);
    let (_, all) = s
        .get(
            &format!("/_matrix/client/v3/room_keys/keys?version={version}"),
            &ann.token,
        )
        .await;
    assert_eq!(all["rooms"]["!r:test.local"]["sessions"]["sess1"], session);
    // Uploads to an old version are refused once a newer backup exists.
    s.post(
        "/_matrix/client/v3/room_keys/version",
        &ann.token,
        json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {} }),
    )
    .await;
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/!r:test.local/sess2?version={version}"),
            &ann.token,
            session,
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_WRONG_ROOM_KEYS_VERSION"))
    );
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn media_upload_download_thumbnail() {
    let s = TestServer::start().await;
    let ann = s.register("ann").await;
    let bytes = png(200, 100);
    let r = s
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=pic.png",
            s.url
        ))
        .bearer_auth(&ann.token)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let uri: serde_json::Value = r.json().await.unwrap();
    let mxc = uri["content_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("mxc://")
        .unwrap()
        .to_owned();
    let down = s
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{mxc}", s.url))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(down.headers()["content-type"], "image/png");
    let disposition = down
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        disposition
            .as_deref()
            .is_some_and(|d| d.contains("pic.png")),
        "{disposition:?}"
    );
    assert_eq!(down.bytes().await.unwrap().to_vec(), bytes);
    // The authenticated endpoint needs a token.
    assert_eq!(
        s.http
            .get(format!("{}/_matrix/client/v1/media/download/{mxc}", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let thumb = s
        .http
        .get(format!(
            "{}/_matrix/client/v1/media/thumbnail/{mxc}?width=50&height=50&method=scale",
            s.url
        ))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    let img = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (50, 25));
    let crop = s
        .http
        .get(format!(
            "{}/_matrix/media/v3/thumbnail/{mxc}?width=40&height=40&method=crop",
            s.url
        ))
        .send()
        .await
        .unwrap();
    let img = image::load_from_memory(&crop.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (40, 40));
    let (_, cfg) = s.get("/_matrix/client/v1/media/config", &ann.token).await;
    assert!(cfg["m.upload.size"].as_u64().unwrap() > 0);
    let too_big = s
        .http
        .post(format!("{}/_matrix/media/v3/upload", s.url))
        .bearer_auth(&ann.token)
        .body(vec![0u8; 60 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
}

#[tokio::test]
async fn profiles_directory_presence_and_tags() {
    let s = TestServer::start().await;
    let (ann, bob) = (s.register("ann").await, s.register("bob").await);
    let room = s
        .create_room(
            &ann,
            json!({ "preset": "public_chat", "visibility": "public", "name": "Forest" }),
        )
        .await;
    assert_eq!(
        s.put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&ann.user_id)
            ),
            &ann.token,
            json!({ "displayname": "Ann A." })
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&ann.user_id)
            ),
            &bob.token,
            json!({ "displayname": "evil" })
        )
        .await
        .0,
        403
    );
    let (_, p) = s
        .request(
            "GET",
            &format!("/_matrix/client/v3/profile/{}", enc(&ann.user_id)),
            None,
            None,
        )
        .await;
    assert_eq!(p["displayname"], "Ann A.");
    // The new name reaches the room membership.
    let (_, m) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&ann.user_id)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(m["displayname"], "Ann A.");
    let (_, dir) = s
        .request("GET", "/_matrix/client/v3/publicRooms", None, None)
        .await;
    assert_eq!(dir["chunk"][0]["name"], "Forest");
    let (_, found) = s
        .post(
            "/_matrix/client/v3/publicRooms",
            &bob.token,
            json!({ "filter": { "generic_search_term": "fore" } }),
        )
        .await;
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    let (_, users) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            &bob.token,
            json!({ "search_term": "ann a" }),
        )
        .await;
    assert_eq!(users["results"][0]["user_id"], ann.user_id.as_str());
    assert_eq!(
        s.put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&ann.user_id)),
            &ann.token,
            json!({ "presence": "unavailable", "status_msg": "away" })
        )
        .await
        .0,
        200
    );
    let (_, pr) = s
        .get(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&ann.user_id)),
            &bob.token,
        )
        .await;
    assert_eq!(
        (pr["presence"].as_str(), pr["status_msg"].as_str()),
        (Some("unavailable"), Some("away"))
    );
    let tag = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/tags/m.favourite",
        enc(&ann.user_id),
        enc(&room)
    );
    assert_eq!(
        s.put(&tag, &ann.token, json!({ "order": 0.5 })).await.0,
        200
    );
    let (_, tags) = s
        .get(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/tags",
                enc(&ann.user_id),
                enc(&room)
            ),
            &ann.token,
        )
        .await;
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5);
    let (_, caps) = s.get("/_matrix/client/v3/capabilities", &ann.token).await;
    assert_eq!(caps["capabilities"]["m.room_versions"]["default"], "11");
}
