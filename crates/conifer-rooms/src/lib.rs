//! The room graph, without I/O: events as PDUs, building, hashing and signing
//! new events, the authorization rules and state resolution (both from Ruma).
//!
//! Callers hand in what the functions need (the room state, a way to fetch
//! events, the time) and get back events or verdicts; storage and locking are
//! the homeserver's business.

#![forbid(unsafe_code)]

mod build;
mod key;
mod pdu;
mod presets;
mod resolve;
mod versions;

pub use build::{build_event, check_auth, sign_template, BuildError, EventTemplate};
pub use key::ServerKey;
pub use pdu::{Pdu, PduError};
pub use presets::{create_room_events, CreateRoomOptions, Preset};
pub use resolve::{auth_chain, resolve_state, StateIdMap};
pub use versions::{is_supported, rules_for, SUPPORTED_VERSIONS};

pub use ruma;
