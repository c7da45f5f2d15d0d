//! Webhook notifications: what happened (alerts, kills, incidents, reloads), told to whoever
//! subscribed. Telling never waits: an event goes into each subscribed webhook's bounded
//! queue, or is dropped and counted when that queue is full. The data path and the admin API
//! must not slow down because a receiver is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use metrics::counter;
use switchyard_config::Webhook;
use switchyard_core::metrics as names;
use tokio::sync::mpsc::error::TrySendError;

pub use crate::event::Event;
use crate::webhook::{HookClient, Worker};

/// Sends events to the configured webhooks. Cheap to clone; every clone sends to the same
/// webhooks, and [`Notifier::set_webhooks`] changes them for all.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    workers: ArcSwap<Vec<Worker>>,
    /// `None` when no HTTP client could be built (then nothing is sent; logged once).
    client: Option<HookClient>,
    /// Serialises reconfigurations, so two never interleave their worker lists.
    writer: Mutex<()>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .inner
            .workers
            .load()
            .iter()
            .map(|w| w.label.clone())
            .collect();
        f.debug_struct("Notifier")
            .field("webhooks", &labels)
            .finish()
    }
}

impl Notifier {
    /// A notifier without webhooks: every event is ignored until [`Notifier::set_webhooks`].
    pub fn disabled() -> Notifier {
        Notifier::build(None)
    }

    /// A notifier sending to `webhooks`. Call it inside the tokio runtime: each webhook gets
    /// its own delivery task.
    pub fn new(webhooks: Vec<Webhook>) -> Notifier {
        let client = crate::webhook::client()
            .inspect_err(|error| tracing::error!(%error, "no webhook client; webhooks are off"))
            .ok();
        let notifier = Notifier::build(client);
        notifier.set_webhooks(webhooks);
        notifier
    }

    fn build(client: Option<HookClient>) -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                workers: ArcSwap::from_pointee(Vec::new()),
                client,
                writer: Mutex::new(()),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Puts new webhooks in force (after a reload). A webhook that is unchanged keeps its
    /// queue and its task; a removed one finishes what it had queued, then stops.
    pub fn set_webhooks(&self, webhooks: Vec<Webhook>) {
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.workers.load_full();
        let mut kept: Vec<Option<&Worker>> = current.iter().map(Some).collect();
        let mut next = Vec::with_capacity(webhooks.len());
        for webhook in webhooks {
            let reused = kept
                .iter_mut()
                .find(|w| w.is_some_and(|w| w.webhook == webhook))
                .and_then(Option::take);
            let worker = match reused {
                Some(w) => Some(Worker {
                    webhook,
                    label: w.label.clone(),
                    queue: w.queue.clone(),
                }),
                None => self.start(webhook),
            };
            next.extend(worker);
        }
        self.inner.workers.store(Arc::new(next));
    }

    fn start(&self, webhook: Webhook) -> Option<Worker> {
        let client = self.inner.client.clone()?;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Some(Worker::start(webhook, client, &runtime)),
            Err(_) => {
                let webhook = crate::webhook::label(&webhook);
                tracing::error!(%webhook, "webhooks configured outside the runtime; not started");
                None
            }
        }
    }

    /// Queues the event for every webhook subscribed to its kind. Never waits and never
    /// fails: a full queue drops the event, counts it and says so in the log.
    pub fn notify(&self, event: Event) {
        let workers = self.inner.workers.load();
        let kind = event.kind;
        let mut wanted = workers.iter().filter(|w| w.webhook.wants(kind));
        let Some(first) = wanted.next() else {
            return;
        };
        let event = Arc::new(event);
        for worker in std::iter::once(first).chain(wanted) {
            match worker.queue.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    counter!(names::WEBHOOK_EVENTS_DROPPED_TOTAL).increment(1);
                    tracing::warn!(webhook = %worker.label, event = event.kind.as_str(), "webhook queue full; event dropped");
                }
                // The task is gone only when the runtime is shutting down.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Events dropped on full queues since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// How many webhooks are in force.
    pub fn webhooks(&self) -> usize {
        self.inner.workers.load().len()
    }
}

#[cfg(test)]
mod tests;
