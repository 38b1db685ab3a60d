//! The audit log: every operator action (replay, re-map, discard, resume, login), with who,
//! when, what filter and how many, appended as one JSON line to `CONSOLE_AUDIT_FILE` and
//! flushed before the action's page answers.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most the audit page reads from the end of the file.
const TAIL_BYTES: u64 = 1024 * 1024;

/// One action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) at_ms: i64,
    pub(crate) who: String,
    /// `replay`, `remap`, `discard`, `resume`, `login`, `login refused`.
    pub(crate) action: String,
    /// What it applied to, as the equivalent `wdtpipe` command's arguments.
    pub(crate) what: String,
    /// How many letters (or shops) the dry run showed, and what the action did.
    pub(crate) planned: u64,
    pub(crate) result: String,
}

/// The log file.
#[derive(Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            lock: Mutex::new(()),
        }
    }

    /// Appends an entry and syncs it to disk.
    pub(crate) fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    }

    /// The latest `limit` entries, newest first.
    pub(crate) fn latest(&self, limit: usize) -> std::io::Result<Vec<Entry>> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut text = String::new();
        file.take(TAIL_BYTES).read_to_string(&mut text)?;
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && !lines.is_empty() {
            // The first line read may be cut.
            lines.remove(0);
        }
        Ok(lines
            .iter()
            .rev()
            .filter_map(|line| serde_json::from_str(line).ok())
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries come back newest first, across reopenings of the file.
    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&dir.path().join("sub/audit.jsonl"));
        assert!(log.latest(10).unwrap().is_empty());
        for n in 0..3 {
            log.append(&Entry {
                at_ms: n,
                who: "li".into(),
                action: "replay".into(),
                what: "--shop S1".into(),
                planned: 2,
                result: "replayed 2".into(),
            })
            .unwrap();
        }
        let entries = AuditLog::new(&dir.path().join("sub/audit.jsonl"))
            .latest(2)
            .unwrap();
        assert_eq!(entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(), [2, 1]);
    }
}
