//! Several homeservers in one process, their federation routers joined by
//! an in-process transport.

use axum::body::Body;
use axum::Router;
use conifer_federation::{
    sign_request, FederationRequest, FederationResponse, Transport, TransportError,
};
use conifer_homeserver::{federation, Config, Homeserver, OwnedServerName};
use conifer_rooms::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use conifer_rooms::{build_event, EventTemplate, Pdu, ServerKey};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// Delivers requests to the federation router of the named server.
#[derive(Default, Clone)]
pub struct InProcess {
    pub servers: Arc<Mutex<HashMap<String, Router>>>,
}

impl Transport for InProcess {
    fn send(&self, r: FederationRequest) -> conifer_federation::TransportFuture<'_> {
        Box::pin(async move {
            let router = self
                .servers
                .lock()
                .unwrap()
                .get(&r.destination)
                .cloned()
                .ok_or_else(|| TransportError::Unreachable(r.destination.clone()))?;
            let mut req = axum::http::Request::builder()
                .method(r.method.as_str())
                .uri(&r.uri);
            if let Some(a) = &r.authorization {
                req = req.header("authorization", a);
            }
            let req = req
                .header("content-type", "application/json")
                .body(Body::from(r.body.unwrap_or_default()))
                .unwrap();
            let resp = router
                .oneshot(req)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            Ok(FederationResponse {
                status,
                body: body.to_vec(),
            })
        })
    }
}

pub struct Server {
    pub hs: Arc<Homeserver>,
    _dir: tempfile::TempDir,
}

pub fn server(name: &str, key_version: &str, seed: u8, net: &InProcess) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let hs = Homeserver::open(
        config,
        &OwnedServerName::try_from(name).unwrap(),
        key_version,
        &[seed; 32],
    )
    .unwrap();
    let _ = hs.transport.set(Arc::new(net.clone()));
    net.servers
        .lock()
        .unwrap()
        .insert(name.to_owned(), federation::router(hs.clone()));
    Server { hs, _dir: dir }
}

pub async fn signed(
    net: &InProcess,
    key: &ServerKey,
    destination: &str,
    uri: &str,
) -> (u16, Value) {
    signed_with(net, key, destination, "GET", uri, None).await
}

pub async fn signed_with(
    net: &InProcess,
    key: &ServerKey,
    destination: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let authorization = sign_request(key, method, uri, destination, body.as_ref()).unwrap();
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let r = net
        .send(FederationRequest {
            destination: destination.into(),
            method: method.into(),
            uri: uri.into(),
            body,
            authorization: Some(authorization),
        })
        .await
        .unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// A public room (version 11) created by `creator` on `hs`.
pub async fn public_room(hs: &Homeserver, creator: &str, name: Option<&str>) -> String {
    let options = conifer_rooms::CreateRoomOptions {
        version: "11".into(),
        creator: creator.into(),
        creator_displayname: None,
        creator_avatar_url: None,
        preset: conifer_rooms::Preset::PublicChat,
        name: name.map(str::to_owned),
        topic: None,
        canonical_alias: None,
        creation_content: None,
        power_level_content_override: None,
        initial_state: vec![],
        invite: vec![],
        is_direct: false,
    };
    hs.create_room(options, false, None).await.unwrap()
}

/// Builds and signs an event by `sender` (of `key`'s server) on top of the
/// current state of `room` on `hs`, as that server would send it.
pub fn remote_pdu(
    hs: &Homeserver,
    key: &ServerKey,
    room: &str,
    sender: &str,
    template: EventTemplate,
) -> Pdu {
    let state = hs.store.current_state(room).unwrap();
    let prevs: Vec<(OwnedEventId, i64)> = hs
        .store
        .forward_extremities(room)
        .unwrap()
        .into_iter()
        .map(|id| {
            let depth = hs.store.event(&id).unwrap().unwrap().depth;
            (OwnedEventId::try_from(id).unwrap(), depth)
        })
        .collect();
    let lookup = |t: &str, k: &str| {
        state
            .get(&(t.to_owned(), k.to_owned()))
            .map(|id| OwnedEventId::try_from(id.as_str()).unwrap())
    };
    let version = hs.store.room(room).unwrap().unwrap().version;
    build_event(
        &version,
        &OwnedRoomId::try_from(room).unwrap(),
        &OwnedUserId::try_from(sender).unwrap(),
        &template,
        &prevs,
        &lookup,
        1_000,
        key,
    )
    .unwrap()
}
