//! The engine's two timers: the retry timer moves due retries back into their shops' ready
//! queues (and wakes those shops); the sweeper takes one bounded step of the retention
//! sweep at a steady pace.

use super::{Delivery, STORE_ERROR_PAUSE, TIMER_TICK};
use std::sync::Arc;
use std::time::Duration;

impl Delivery {
    pub(super) async fn run_timer(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.clock.now_ms();
            let wait = match self.outbox.next_due() {
                Ok(Some(due)) if due <= now => match self.outbox.promote_due(now).await {
                    Ok(promoted) => {
                        self.notify(promoted.ready_shops);
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot promote due retries");
                        STORE_ERROR_PAUSE
                    }
                },
                Ok(Some(due)) => Duration::from_millis((due - now) as u64).min(TIMER_TICK),
                Ok(None) => TIMER_TICK,
                Err(error) => {
                    tracing::error!(%error, "cannot read the retry queue");
                    STORE_ERROR_PAUSE
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.timer_wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Removes expired dedupe records and finished entries: one bounded step of the walk
    /// every `every`, so the sweep takes a small, steady share of the writer (a full walk of
    /// a million keys takes minutes, against a retention of days).
    pub(super) async fn run_sweeper(self: Arc<Self>, every: Duration) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            match self.outbox.expire(self.clock.now_ms()).await {
                Ok(expired) if expired.removed > 0 => {
                    tracing::debug!(removed = expired.removed, "expired records swept");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot sweep expired records"),
            }
        }
    }
}
