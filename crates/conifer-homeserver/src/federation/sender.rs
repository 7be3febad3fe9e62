//! Outbound federation: one task per destination drains its outbox in
//! transactions (≤ 50 PDUs, ≤ 100 EDUs), retries with exponential back-off,
//! and starts over at once when told the destination is back. The outbox is
//! in the database, so what was queued survives a restart.

use crate::{now_ms, Homeserver};
use conifer_federation::{next_transaction, Backoff, Queued, MAX_EDUS, MAX_PDUS};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// Messages to the sender's supervisor.
pub(crate) enum Signal {
    /// New items are queued for this destination.
    Queued(String),
    /// The destination is reachable again: forget the back-off.
    Wake(String),
    /// The destination just made an authenticated request to us, so it is
    /// up: if its queue is backing off, try now (as Synapse does).
    Heard(String),
}

#[derive(Default)]
pub(crate) struct SenderHandle {
    tx: Mutex<Option<mpsc::UnboundedSender<Signal>>>,
}

impl SenderHandle {
    pub(crate) fn signal(&self, s: Signal) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(s);
        }
    }
}

struct Destination {
    notify: Arc<Notify>,
    backoff: Arc<Mutex<Backoff>>,
}

impl Homeserver {
    /// Starts sending queued federation traffic (and whatever a previous run
    /// left in the outbox) through the configured transport.
    pub fn start_federation_sender(self: &Arc<Self>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        *self.sender.tx.lock() = Some(tx);
        let hs = self.clone();
        tokio::spawn(async move {
            let mut dests: HashMap<String, Destination> = HashMap::new();
            for d in hs.store.outbox_destinations().unwrap_or_default() {
                ensure(&hs, &mut dests, &d).notify.notify_one();
            }
            while let Some(signal) = rx.recv().await {
                match signal {
                    Signal::Queued(d) => ensure(&hs, &mut dests, &d).notify.notify_one(),
                    Signal::Wake(d) => {
                        let dest = ensure(&hs, &mut dests, &d);
                        dest.backoff.lock().reset();
                        dest.notify.notify_one();
                    }
                    Signal::Heard(d) => {
                        if let Some(dest) = dests.get(&d) {
                            let mut backoff = dest.backoff.lock();
                            if backoff.retry_at_ms() > now_ms() {
                                backoff.reset();
                                dest.notify.notify_one();
                            }
                        }
                    }
                }
            }
        });
    }

    /// Tells the sender that `destination` is back (a new overlay peering or
    /// wake-up broadcast), so queued traffic goes out now.
    pub fn wake_destination(&self, destination: &str) {
        self.sender.signal(Signal::Wake(destination.to_owned()));
    }

    /// How many items wait for a destination (for status pages and tests).
    pub fn queued_for(&self, destination: &str) -> usize {
        self.store
            .outbox_peek(destination, usize::MAX >> 1)
            .map(|v| v.len())
            .unwrap_or(0)
    }
}

fn ensure<'a>(
    hs: &Arc<Homeserver>,
    dests: &'a mut HashMap<String, Destination>,
    d: &str,
) -> &'a Destination {
    dests.entry(d.to_owned()).or_insert_with(|| {
        let dest = Destination {
            notify: Arc::new(Notify::new()),
            backoff: Arc::default(),
        };
        tokio::spawn(run(
            hs.clone(),
            d.to_owned(),
            dest.notify.clone(),
            dest.backoff.clone(),
        ));
        dest
    })
}

async fn run(hs: Arc<Homeserver>, dest: String, notify: Arc<Notify>, backoff: Arc<Mutex<Backoff>>) {
    loop {
        let items = match hs.store.outbox_peek(&dest, MAX_PDUS + MAX_EDUS) {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(destination = %dest, error = %e, "cannot read the outbox");
                notify.notified().await;
                continue;
            }
        };
        if items.is_empty() {
            notify.notified().await;
            continue;
        }
        let retry_at = backoff.lock().retry_at_ms();
        let now = now_ms();
        if retry_at > now {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(retry_at - now)) => {}
                _ = notify.notified() => {}
            }
            continue;
        }
        let queued: Vec<Queued> = items
            .into_iter()
            .map(|i| Queued {
                id: i.id,
                is_pdu: i.is_pdu,
                json: i.json,
            })
            .collect();
        let Some((body, ids)) = next_transaction(hs.server_name.as_str(), now, &queued) else {
            continue;
        };
        match send(&hs, &dest, &body, ids[0]).await {
            Ok(()) => {
                if let Err(e) = hs.store.outbox_ack(&ids) {
                    tracing::error!(destination = %dest, error = %e, "cannot acknowledge sent items");
                }
                backoff.lock().succeeded();
            }
            Err(why) => {
                tracing::info!(destination = %dest, %why, "federation transaction failed; backing off");
                backoff.lock().failed(now_ms(), rand::random::<f64>());
            }
        }
    }
}

async fn send(
    hs: &Homeserver,
    dest: &str,
    body: &serde_json::Value,
    first_id: u64,
) -> Result<(), String> {
    // Unique per transaction and stable for its contents' first item.
    let uri = format!("/_matrix/federation/v1/send/{}-{first_id}", now_ms());
    match hs.federation_call(dest, "PUT", &uri, Some(body)).await? {
        (200, _) => Ok(()),
        (s, _) => Err(format!("status {s}")),
    }
}
