//! A real homeserver on a loopback port with its SQLite file in a temporary
//! directory, and a small JSON client for it.
#![allow(dead_code)]

pub mod federation;

use conifer_homeserver::{client, Config, Homeserver, OwnedServerName};
use serde_json::{json, Value};
use std::sync::Arc;

pub const SERVER: &str = "test.local";

pub struct TestServer {
    pub url: String,
    pub hs: Arc<Homeserver>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub struct User {
    pub user_id: String,
    pub token: String,
    pub device_id: String,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|c| c.rate_limits.enabled = false).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        tweak(&mut config);
        let name = OwnedServerName::try_from(SERVER).unwrap();
        let hs = Homeserver::open(config, &name, "test", &[7; 32]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = client::router(hs.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            hs,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.url, path);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.request("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(token), Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request("PUT", path, Some(token), Some(body)).await
    }

    pub async fn register(&self, name: &str) -> User {
        let (status, body) = self
            .request("POST", "/_matrix/client/v3/register", None, Some(json!({
                "username": name, "password": "secret-password", "auth": { "type": "m.login.dummy" }
            })))
            .await;
        assert_eq!(status, 200, "register {name}: {body}");
        User {
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
            device_id: body["device_id"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn create_room(&self, user: &User, body: Value) -> String {
        let (status, r) = self
            .post("/_matrix/client/v3/createRoom", &user.token, body)
            .await;
        assert_eq!(status, 200, "createRoom: {r}");
        r["room_id"].as_str().unwrap().to_owned()
    }

    pub async fn join(&self, user: &User, room: &str) -> (u16, Value) {
        self.post(
            &format!("/_matrix/client/v3/join/{}", enc(room)),
            &user.token,
            json!({}),
        )
        .await
    }

    /// Ann, Bob and Carol, registered.
    pub async fn three_users(&self) -> (User, User, User) {
        (
            self.register("ann").await,
            self.register("bob").await,
            self.register("carol").await,
        )
    }

    /// A public room made by `owner` that `others` have joined.
    pub async fn public_room_with(&self, owner: &User, others: &[&User]) -> String {
        let room = self
            .create_room(owner, json!({ "preset": "public_chat" }))
            .await;
        for u in others {
            assert_eq!(self.join(u, &room).await.0, 200);
        }
        room
    }

    pub async fn leave(&self, user: &User, room: &str) {
        let (status, body) = self
            .post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)),
                &user.token,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "leave: {body}");
    }

    pub async fn send_text(&self, user: &User, room: &str, text: &str) -> (u16, Value) {
        let txn = format!("t{}", rand_suffix());
        self.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            &user.token,
            json!({ "msgtype": "m.text", "body": text }),
        )
        .await
    }

    pub async fn sync(&self, user: &User, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        let (status, body) = self.get(&path, &user.token).await;
        assert_eq!(status, 200, "sync: {body}");
        body
    }
}

/// Percent-encodes a path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1_000_000
}

/// Bodies of the timeline events of a room in a sync response.
pub fn timeline_bodies(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
