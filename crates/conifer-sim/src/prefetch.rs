//! Cache prefetch hints for the engine's next events.
//!
//! With 10 000 routers the state a frame touches on arrival (the receiving
//! node, its router, the link) is almost never in cache, and the engine
//! spends most of its time waiting for memory. The next events are usually
//! known ahead, so the engine asks the CPU to start loading their nodes while
//! it handles the current one. A hint changes no result: it reads nothing and
//! cannot fault. The router crate has the same helper, for the hints it gives
//! about its own state ([`conifer_overlay::router::Router::prefetch_for_port`]).
//!
//! Behind the crate's `prefetch` feature (on by default), which enables the
//! router's `prefetch` feature too: the hints are `unsafe` intrinsics, and
//! only the simulator wants them, so the overlay core leaves them out for
//! every other user.

pub use conifer_overlay::router::prefetch::prefetch;
