//! The router behind a mutex, and the dispatch of its actions to tasks.
//!
//! Every router call is short and synchronous, so a plain mutex (never held
//! across an `.await`) is simpler than an actor and just as fast. After each
//! call the actions the router queued are handed out: writer tasks are woken,
//! deliveries go to the application channel, close requests cancel the
//! peering's tasks, and events go to subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use conifer_overlay::router::{Action, Event, Router, Time};
use conifer_overlay::wire::Port;
use conifer_overlay::PublicKey;
use tokio::sync::{broadcast, mpsc, watch, Notify};

use crate::clock;

/// A payload the overlay delivered to this node's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub source: PublicKey,
    pub payload: Vec<u8>,
}

/// What the driver keeps per live peering.
pub(crate) struct PortHandle {
    pub key: PublicKey,
    /// Wakes the writer task when the router queues frames for this port.
    pub wake: Arc<Notify>,
    /// Set to `Some(reason)` when the router asks to close this peering.
    pub close: watch::Sender<Option<String>>,
}

pub(crate) struct State {
    pub router: Router,
    pub ports: HashMap<Port, PortHandle>,
    deliveries: mpsc::Sender<Delivery>,
    events: broadcast::Sender<Event>,
    /// Wakes the timer task when a call moved the next deadline earlier.
    timer: Arc<Notify>,
    /// The deadline the timer task is sleeping towards.
    pub timer_deadline: Time,
}

#[derive(Clone)]
pub(crate) struct Shared {
    inner: Arc<Mutex<State>>,
    pub timer: Arc<Notify>,
}

impl Shared {
    pub fn new(
        router: Router,
        deliveries: mpsc::Sender<Delivery>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let timer = Arc::new(Notify::new());
        let state = State {
            router,
            ports: HashMap::new(),
            deliveries,
            events,
            timer: timer.clone(),
            timer_deadline: Time::from_unix_millis(0),
        };
        Shared {
            inner: Arc::new(Mutex::new(state)),
            timer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; the state is still
        // the router's own consistent state, so carry on rather than cascade.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the router at the current time, then dispatches its actions.
    pub fn with_router<R>(&self, f: impl FnOnce(&mut Router, Time) -> R) -> R {
        self.with_state(|s, now| f(&mut s.router, now))
    }

    /// Like `with_router`, with access to the port table too.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State, Time) -> R) -> R {
        let mut state = self.lock();
        let now = clock::now();
        let out = f(&mut state, now);
        state.dispatch();
        out
    }
}

impl State {
    fn dispatch(&mut self) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Wake { port } => {
                    if let Some(h) = self.ports.get(&port) {
                        h.wake.notify_one();
                    }
                }
                Action::Deliver { source, payload } => {
                    // Datagram semantics: if the application is not keeping up,
                    // drop rather than buffer without bound.
                    let _ = self.deliveries.try_send(Delivery { source, payload });
                }
                Action::ClosePeer { port, reason } => {
                    if let Some(h) = self.ports.get(&port) {
                        tracing::info!(peer = %h.key, %port, %reason, "closing peering");
                        let _ = h.close.send(Some(reason));
                    }
                }
                Action::Event(e) => {
                    let _ = self.events.send(e);
                }
            }
        }
        if self.router.poll_timeout() < self.timer_deadline {
            self.timer.notify_one();
        }
    }
}
