//! Deliver's notion of "now": wall-clock milliseconds that advance with tokio's clock.
//!
//! Due times and attempt times are stored as Unix milliseconds, but measuring their passage
//! with tokio's monotonic clock lets tests pause and advance time (`tokio::time::pause`) and
//! watch the retry schedule unfold exactly.

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_ms: i64,
    instant: Instant,
}

impl Clock {
    /// A clock reading the current wall time now and following tokio's clock from then on.
    pub fn new() -> Self {
        Self {
            wall_ms: wdtpipe_common::now_ms(),
            instant: Instant::now(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.wall_ms + i64::try_from(self.instant.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
