//! Deliver's notion of "now": wall-clock milliseconds that advance with tokio's clock.
//!
//! Due times and attempt times are stored as Unix milliseconds, but measuring their passage
//! with tokio's monotonic clock lets tests pause and advance time (`tokio::time::pause`) and
//! watch the retry schedule unfold exactly.

use std::time::{Duration, SystemTime};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall time at `instant`, since the Unix epoch, at full precision: rounding it to
    /// milliseconds here as well as in `now_ms` would put this clock up to 2 ms behind the
    /// other stages' (a trade could seem written before it was mapped).
    wall: Duration,
    instant: Instant,
}

impl Clock {
    /// A clock reading the current wall time now and following tokio's clock from then on.
    pub fn new() -> Self {
        // The instant first: the wall reading is then never older than it.
        let instant = Instant::now();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self { wall, instant }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        i64::try_from((self.wall + self.instant.elapsed()).as_millis()).unwrap_or(i64::MAX / 2)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
