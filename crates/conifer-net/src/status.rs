//! The manhole: the node's routing state as JSON, like Go's `/manhole`.

use axum::extract::State;
use axum::Json;
use conifer_overlay::router::PeerInfo;
use conifer_overlay::wire::{Coordinates, Port, Root, Watermark};
use conifer_overlay::PublicKey;

use crate::Node;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub key: PublicKey,
    pub root: Root,
    pub parent: Option<PublicKey>,
    pub coords: Coordinates,
    pub peers: Vec<PeerStatus>,
    pub descending: Option<PublicKey>,
    pub snek_routes: Vec<RouteStatus>,
}

pub type PeerStatus = PeerInfo;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteStatus {
    pub key: PublicKey,
    pub source_port: Port,
    pub watermark: Watermark,
}

impl Node {
    /// A snapshot of the routing state.
    pub fn status(&self) -> Status {
        self.shared.with_router(|r, _| Status {
            key: r.public_key(),
            root: r.root(),
            parent: r.parent().map(|(_, k)| k),
            coords: r.coords(),
            peers: r.peers(),
            descending: r.descending(),
            snek_routes: r
                .routes()
                .map(|(k, route)| RouteStatus {
                    key: *k,
                    source_port: route.source,
                    watermark: route.watermark,
                })
                .collect(),
        })
    }
}

pub(crate) async fn manhole(State(node): State<Node>) -> Json<Status> {
    Json(node.status())
}
