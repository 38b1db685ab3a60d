//! Helpers for the end-to-end tests: fixture loading and pipeline spawning.

use std::path::PathBuf;

/// A shared sample callback and what it must produce.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub body: Vec<u8>,
    pub expected: serde_json::Value,
}

/// The fixtures directory (copied from the shared samples, so a plain clone has them).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every fixture, sorted by name.
pub fn fixtures() -> Vec<Fixture> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("callbacks"))
        .expect("fixtures/callbacks exists")
        .map(|e| e.expect("readable dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let body = std::fs::read(dir.join("callbacks").join(&name)).expect("callback readable");
            let expected = std::fs::read(dir.join("expected").join(&name)).expect("expected readable");
            Fixture {
                expected: serde_json::from_slice(&expected).expect("expected is JSON"),
                name,
                body,
            }
        })
        .collect()
}

impl Fixture {
    /// The HTTP status the callback must get.
    pub fn status(&self) -> u16 {
        self.expected["status"].as_u64().expect("status") as u16
    }

    /// The `{"shop_no", "trade"}` entries expected for a 200.
    pub fn trades(&self) -> Vec<serde_json::Value> {
        self.expected["trades"].as_array().cloned().unwrap_or_default()
    }

    /// The text a 422 message must contain.
    pub fn why(&self) -> &str {
        self.expected["why"].as_str().unwrap_or_default()
    }
}
