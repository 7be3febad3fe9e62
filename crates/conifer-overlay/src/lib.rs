//! The sans-IO core of Conifer's overlay network, wire-compatible with
//! matrix-org's Go Pinecone (handshake version 1, capabilities `0x3B`).
//!
//! * [`key`]: Ed25519 identities and key ordering.
//! * [`wire`]: the byte-exact codec for handshakes and frames.
//! * [`router`]: the spanning tree + SNEK router as a state machine that takes
//!   inputs with an explicit `now` and returns actions.
//!
//! **Invariant:** nothing in this crate opens a socket, spawns a task or reads a
//! clock. Time comes in as an argument; bytes go out as actions.
//!
//! No `unsafe`, except the cache prefetch hints of the `prefetch` feature
//! (`router::prefetch`), which only the simulator enables.

#![cfg_attr(not(feature = "prefetch"), forbid(unsafe_code))]
#![cfg_attr(feature = "prefetch", deny(unsafe_code))]

pub mod key;
pub mod wire;

pub use key::{Identity, PublicKey};
pub mod router;
