//! What the tests of every crate share, so that none copies it: the sample callbacks and
//! what each must produce (`tests/fixtures`), records with fresh tids, waiting for an
//! effect with a deadline ([`eventually`] in async tests, [`eventually_blocking`] in tests
//! that drive processes), a WDT sandbox on a loopback port ([`sandbox`]), a second WDT
//! account with a scheme that uses it ([`accounts`]) and reading deliver's stats
//! ([`stats`]). A test never waits without a deadline and never sleeps a fixed time for an
//! effect. The scripted WDT of deliver's engine tests implements deliver's own `WdtApi`, so
//! it lives with them (`deliver/tests/deliver/scripted.rs`).

pub mod accounts;
pub mod sandbox;
pub mod stats;

use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// A shared sample callback and what it must produce.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub body: Vec<u8>,
    pub expected: Value,
}

/// The fixtures directory, `tests/fixtures` (copied from the shared samples, so a plain
/// clone has them).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Every fixture, sorted by name.
pub fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("callbacks"))
        .expect("fixtures/callbacks exists")
        .map(|e| {
            e.expect("readable dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let body = std::fs::read(dir.join("callbacks").join(&name)).expect("callback readable");
            let expected =
                std::fs::read(dir.join("expected").join(&name)).expect("expected readable");
            Fixture {
                expected: serde_json::from_slice(&expected).expect("expected is JSON"),
                name,
                body,
            }
        })
        .collect()
}

/// The fixture whose file name starts with `prefix` (e.g. `"07-"`).
pub fn fixture(prefix: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no fixture {prefix}"))
}

/// Fixture 01's record with its own `tid` (its lines' `src_tid` and `src_oid` follow), for
/// tests that need many distinct orders.
pub fn record_with_tid(tid: &str) -> Value {
    let mut record: Value = serde_json::from_slice(&fixture("01-").body).expect("fixture 01");
    record["tid"] = tid.into();
    record["src_tids"] = tid.into();
    for (i, line) in record["details_list"]
        .as_array_mut()
        .expect("fixture 01 has lines")
        .iter_mut()
        .enumerate()
    {
        line["src_tid"] = tid.into();
        line["src_oid"] = format!("{tid}-{}", i + 1).into();
    }
    record
}

impl Fixture {
    /// The HTTP status the callback must get.
    pub fn status(&self) -> u16 {
        self.expected["status"].as_u64().expect("status") as u16
    }

    /// The `{"shop_no", "trade"}` entries expected for a 200.
    pub fn trades(&self) -> Vec<Value> {
        self.expected["trades"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The text a 422 message must contain.
    pub fn why(&self) -> &str {
        self.expected["why"].as_str().unwrap_or_default()
    }

    /// Every tid the callback body mentions (valid or not).
    pub fn body_tids(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.body);
        let mut tids: Vec<String> = text
            .match_indices("T00")
            .map(|(i, _)| text[i..].chars().take(5).collect())
            .collect();
        tids.sort();
        tids.dedup();
        tids
    }
}

/// A tid no other test of this process uses: `prefix`, the process id and a counter (so
/// that tests sharing a sandbox or an outbox never see each other's orders).
pub fn fresh_tid(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fixture 01's record under a fresh tid (see [`fresh_tid`]), and the tid.
pub fn fresh_record(prefix: &str) -> (String, Value) {
    let tid = fresh_tid(prefix);
    let record = record_with_tid(&tid);
    (tid, record)
}

/// Polls `check` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] where `check` says what is still missing (`Err`): a timeout names it.
pub async fn eventually_or<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(missing) => assert!(
                tokio::time::Instant::now() < give_up,
                "timed out waiting for {what}: {missing}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually`] for tests without a runtime (they drive child processes): polls `check`
/// on this thread.
pub fn eventually_blocking<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let give_up = std::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture has its expectation; fresh tids never repeat.
    #[test]
    fn fixtures_and_fresh_tids() {
        assert!(fixtures().len() >= 19);
        assert_eq!(fixture("01-").status(), 200);
        assert_ne!(fresh_tid("T"), fresh_tid("T"));
        let (tid, record) = fresh_record("F");
        assert_eq!(record["tid"], tid.as_str());
    }

    /// A condition met in time returns its value; one never met fails naming what.
    #[test]
    fn waits_have_deadlines() {
        let mut n = 0;
        assert_eq!(
            eventually_blocking("n to reach 3", Duration::from_secs(5), || {
                n += 1;
                (n >= 3).then_some(n)
            }),
            3
        );
        let failed = std::panic::catch_unwind(|| {
            eventually_blocking("never", Duration::from_millis(50), || None::<()>)
        });
        let message = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("timed out waiting for never"), "{message}");
    }
}
