//! The settler: brings settlements and locally spent tokens to Redis, off the request path,
//! retrying with the same ids until Redis accepts them (each counts once).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use switchyard_core::metrics as names;

use super::{lock, store, FleetBudget, Item, MAX_BATCH};

impl FleetBudget {
    /// Runs until the replica stops.
    pub async fn run(self: Arc<Self>) {
        let Some(mut rx) = lock(&self.rx).take() else {
            return;
        };
        let mut queue: Vec<Item> = Vec::new();
        loop {
            if queue.is_empty() {
                match rx.recv().await {
                    Some(item) => self.enqueue(&mut queue, item),
                    None => return,
                }
            }
            while let Ok(item) = rx.try_recv() {
                self.enqueue(&mut queue, item);
            }
            if let Err(error) = self.flush(&mut queue).await {
                tracing::debug!(%error, queued = queue.len(), "token budget: settlements wait for Redis");
                let cooldown = self.settings.load().enforcement.breaker_cooldown;
                tokio::time::sleep(cooldown).await;
            }
        }
    }

    /// Queues an item; tokens spent without a reservation join the last unsent flush of the
    /// same day, so an outage costs one flush, not one per request.
    fn enqueue(&self, queue: &mut Vec<Item>, mut item: Item) {
        if item.flush {
            let open = queue
                .iter_mut()
                .rev()
                .find(|i| i.flush && !i.sent && i.day == item.day);
            if let Some(open) = open {
                open.tokens = open.tokens.saturating_add(item.tokens);
                self.done(1);
                return;
            }
            item.id = self.next_id("spent");
        }
        queue.push(item);
    }

    fn done(&self, n: u64) {
        let left = self
            .pending
            .fetch_sub(n, Ordering::Relaxed)
            .saturating_sub(n);
        metrics::gauge!(names::BUDGET_PENDING_SETTLEMENTS).set(left as f64);
    }

    /// Sends one batch (one day's items, at most `MAX_BATCH`); removes it once accepted.
    async fn flush(&self, queue: &mut Vec<Item>) -> redis::RedisResult<()> {
        let Some(day) = queue.first().map(|i| i.day) else {
            return Ok(());
        };
        let batch: Vec<usize> = (0..queue.len())
            .filter(|&i| queue[i].day == day)
            .take(MAX_BATCH)
            .collect();
        for &i in &batch {
            queue[i].sent = true;
        }
        let pairs = |flush: bool| -> Vec<(&str, u64)> {
            batch
                .iter()
                .map(|&i| &queue[i])
                .filter(|item| item.flush == flush)
                .map(|item| (&*item.id, item.tokens))
                .collect()
        };
        let (settled, flushed) = (pairs(false), pairs(true));
        let keys = self.keys(day);
        let mut conn = self.conn()?;
        let call = store::settle(&mut conn, &keys, &settled, &flushed);
        self.timed("settle", call).await?;
        let n = batch.len();
        let mut index = 0;
        queue.retain(|item| {
            let keep = !(item.day == day && batch.contains(&index));
            index += 1;
            keep
        });
        self.done(n as u64);
        Ok(())
    }
}
