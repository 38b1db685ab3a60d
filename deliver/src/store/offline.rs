//! The outbox while no deliver runs on it: `wdtpipe outbox check` verifies one (every key
//! decodes, the queues and the entries agree, the counts match), `export` and `import` move
//! one between machines (a shard moved to another host, a disk swapped).
//!
//! An export is a stream: a magic line, the format version, then each key and value
//! (lengths as big-endian u32), then the count and the MD5 of everything before it. Import
//! writes into a new directory beside the target and renames it into place only once the
//! whole stream checked out, so a cut or corrupt file leaves nothing behind.

use super::open::{open_handles, stored_format, stored_seq};
use super::{DEFAULT_CACHE_BYTES, FORMAT_VERSION, Result, StoreError, decode};
use crate::keys::{self, TradeKey};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wdtpipe_proto::v1::{
    DeadLetter, DeliveryState, OutboxEntry, RecordMeta, StockoutRecord, TradeOrder,
};

/// The first bytes of an export.
const MAGIC: &[u8] = b"WDTPIPE-OUTBOX-EXPORT\n";
/// Keys written per batch on import.
const IMPORT_BATCH: usize = 10_000;
/// Problems listed at most (the count says how many there were).
const PROBLEMS_SHOWN: usize = 100;

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The format version recorded (1 when none is).
    pub format: u64,
    /// Keys per prefix (`t/`, `q/`, …).
    pub keys: BTreeMap<String, u64>,
    /// Versions waiting: in a ready queue, and waiting for a retry.
    pub ready: u64,
    pub retrying: u64,
    pub dead_letters: u64,
    /// What does not hold (at most [`PROBLEMS_SHOWN`]), and how many in all.
    pub problems: Vec<String>,
    pub problem_count: u64,
}

impl CheckReport {
    fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_SHOWN {
            self.problems.push(what);
        }
    }
}

/// The outbox directory of `dir`: `dir` itself, or `dir/outbox` when `dir` is a data
/// directory.
pub fn outbox_dir(dir: &Path) -> PathBuf {
    let inner = dir.join("outbox");
    if !dir.join("db").exists() && inner.join("db").exists() {
        inner
    } else {
        dir.to_path_buf()
    }
}

fn open_existing(dir: &Path) -> Result<super::Handles> {
    if !dir.join("db").exists() {
        return Err(StoreError::BadRequest(format!(
            "{} holds no outbox (no sled `db` file)",
            dir.display()
        )));
    }
    open_handles(dir, DEFAULT_CACHE_BYTES)
}

/// Verifies an outbox no deliver has open: every key decodes; each waiting version has
/// exactly its queue key (a ready one under `q/`, a retrying one under `w/`) and each
/// queue key its version; letters sit under their own key; the sequence counter is past
/// every version. Reads only.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let handles = open_existing(dir)?;
    let tree = &handles.tree;
    let mut report = CheckReport {
        format: stored_format(tree)?.unwrap_or(1),
        ..CheckReport::default()
    };
    if report.format > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            dir: dir.display().to_string(),
            found: report.format,
            supported: FORMAT_VERSION,
        });
    }
    let seq = stored_seq(tree)?;
    // Queue keys the entries expect, removed as they are found.
    let mut expected_ready: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut expected_waiting: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for item in tree.iter() {
        let (key, value) = item?;
        let prefix = String::from_utf8_lossy(&key[..key.len().min(2)]).into_owned();
        *report.keys.entry(prefix.clone()).or_insert(0) += 1;
        let shown = String::from_utf8_lossy(&key).into_owned();
        match prefix.as_str() {
            "t/" => check_entry(
                &key,
                &value,
                seq,
                &mut report,
                &mut expected_ready,
                &mut expected_waiting,
            ),
            "q/" | "w/" => {}
            "x/" => match decode::<DeadLetter>(&value) {
                Ok(letter) => {
                    report.dead_letters += 1;
                    let at =
                        keys::dead_key(&TradeKey::new(&letter.tid, &letter.shop_no), letter.seq);
                    if at != key.as_ref() {
                        report.problem(format!(
                            "dead letter {shown:?} holds the letter of tid {} shop {} seq {}",
                            letter.tid, letter.shop_no, letter.seq
                        ));
                    }
                }
                Err(e) => report.problem(format!("dead letter {shown:?} does not decode: {e}")),
            },
            "n/" => {
                if let Err(e) = decode::<wdtpipe_proto::v1::TrackingIndex>(&value) {
                    report.problem(format!("tracking index {shown:?} does not decode: {e}"));
                }
            }
            "r/" | "k/" | "s/" => {
                if let Err(e) = decode::<RecordMeta>(&value) {
                    report.problem(format!("record {shown:?} does not decode: {e}"));
                }
            }
            "m/" if key.as_ref() == keys::SEQ || key.as_ref() == keys::FORMAT => {}
            _ => report.problem(format!("unknown key {shown:?}")),
        }
    }
    for item in tree.scan_prefix(keys::READY) {
        let (key, value) = item?;
        let shown = String::from_utf8_lossy(&key).into_owned();
        match expected_ready.remove(key.as_ref()) {
            Some(tid) if tid.as_bytes() == value.as_ref() => report.ready += 1,
            Some(tid) => report.problem(format!(
                "ready key {shown:?} holds tid {:?}, its entry is {tid}",
                String::from_utf8_lossy(&value)
            )),
            None => report.problem(format!("ready key {shown:?} has no ready version")),
        }
    }
    for item in tree.scan_prefix(keys::WAITING) {
        let (key, value) = item?;
        let shown = String::from_utf8_lossy(&key).into_owned();
        match expected_waiting.remove(key.as_ref()) {
            Some(pair) if pair == value.as_ref() => report.retrying += 1,
            Some(_) => report.problem(format!("retry key {shown:?} names another entry")),
            None => report.problem(format!("retry key {shown:?} has no retrying version")),
        }
    }
    for key in expected_ready.keys().chain(expected_waiting.keys()) {
        report.problem(format!(
            "a waiting version has no queue key {:?}",
            String::from_utf8_lossy(key)
        ));
    }
    Ok(report)
}

/// One `t/` entry: decodes, sits under its own key, and its waiting version (if any) is
/// sound; the queue key it needs is noted.
fn check_entry(
    key: &[u8],
    value: &[u8],
    seq: u64,
    report: &mut CheckReport,
    expected_ready: &mut BTreeMap<Vec<u8>, String>,
    expected_waiting: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) {
    let shown = String::from_utf8_lossy(key).into_owned();
    let entry: OutboxEntry = match decode(value) {
        Ok(entry) => entry,
        Err(e) => return report.problem(format!("entry {shown:?} does not decode: {e}")),
    };
    let at = TradeKey::new(&entry.tid, &entry.shop_no);
    if at.entry_key() != key {
        return report.problem(format!(
            "entry {shown:?} holds tid {} shop {}",
            entry.tid, entry.shop_no
        ));
    }
    let state = DeliveryState::try_from(entry.state).unwrap_or(DeliveryState::Unspecified);
    let Some(pending) = &entry.pending else {
        if !matches!(state, DeliveryState::Delivered | DeliveryState::Dead) {
            report.problem(format!(
                "entry {shown:?} waits for nothing but is {state:?}"
            ));
        }
        return;
    };
    if pending.seq >= seq {
        report.problem(format!(
            "entry {shown:?}: version {} is not below the sequence counter {seq}",
            pending.seq
        ));
    }
    match decode::<TradeOrder>(&pending.trade) {
        Ok(trade) if trade.tid == entry.tid => {}
        Ok(trade) => report.problem(format!(
            "entry {shown:?} waits with a trade of tid {}",
            trade.tid
        )),
        Err(e) => report.problem(format!("entry {shown:?}: its trade does not decode: {e}")),
    }
    if !pending.record.is_empty()
        && let Err(e) = decode::<StockoutRecord>(&pending.record)
    {
        report.problem(format!("entry {shown:?}: its record does not decode: {e}"));
    }
    match state {
        DeliveryState::Queued => {
            expected_ready.insert(keys::ready_key(&entry.shop_no, entry.queue_seq), entry.tid);
        }
        DeliveryState::Retrying => {
            expected_waiting.insert(
                keys::waiting_key(entry.next_attempt_at_ms, entry.queue_seq),
                at.encode_pair(),
            );
        }
        other => report.problem(format!("entry {shown:?} waits but is {other:?}")),
    }
}

/// Writes every key of an outbox no deliver has open to `out`; returns how many.
pub fn export(dir: &Path, out: &mut dyn Write) -> Result<u64> {
    let handles = open_existing(dir)?;
    let format = stored_format(&handles.tree)?.unwrap_or(1);
    let mut hasher = Md5::new();
    let mut put = |bytes: &[u8]| -> Result<()> {
        hasher.update(bytes);
        out.write_all(bytes).map_err(io_error)
    };
    put(MAGIC)?;
    put(&format.to_be_bytes())?;
    let mut count = 0u64;
    for item in handles.tree.iter() {
        let (key, value) = item?;
        put(&[1])?;
        put(&len32(&key)?)?;
        put(&key)?;
        put(&len32(&value)?)?;
        put(&value)?;
        count += 1;
    }
    put(&[0])?;
    put(&count.to_be_bytes())?;
    let digest = hasher.finalize();
    out.write_all(&digest).map_err(io_error)?;
    out.flush().map_err(io_error)?;
    Ok(count)
}

/// Builds a new outbox in `dir` (which must not exist or be empty) from an export; returns
/// how many keys it holds. Refuses a stream of a later format, a cut one, or one whose
/// checksum does not match, leaving nothing behind.
pub fn import(input: &mut dyn Read, dir: &Path) -> Result<u64> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io_error)?.next().is_some() {
        return Err(StoreError::BadRequest(format!(
            "{} is not empty: import builds a new outbox",
            dir.display()
        )));
    }
    let staging = staging_dir(dir);
    let _ = std::fs::remove_dir_all(&staging);
    let result = import_into(input, &staging);
    match result {
        Ok(count) => {
            if dir.exists() {
                std::fs::remove_dir(dir).map_err(io_error)?;
            }
            std::fs::rename(&staging, dir).map_err(io_error)?;
            Ok(count)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

fn staging_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".importing");
    dir.with_file_name(name)
}

fn import_into(input: &mut dyn Read, dir: &Path) -> Result<u64> {
    let mut hasher = Md5::new();
    let mut take = |n: usize| -> Result<Vec<u8>> {
        let mut bytes = vec![0; n];
        input
            .read_exact(&mut bytes)
            .map_err(|e| StoreError::BadRequest(format!("the export is cut short: {e}")))?;
        hasher.update(&bytes);
        Ok(bytes)
    };
    if take(MAGIC.len())? != MAGIC {
        return Err(StoreError::BadRequest("not an outbox export".into()));
    }
    let format = u64::from_be_bytes(take(8)?.try_into().unwrap_or_default());
    if format > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            dir: "the export".into(),
            found: format,
            supported: FORMAT_VERSION,
        });
    }
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let handles = open_handles(dir, DEFAULT_CACHE_BYTES)?;
    let mut batch = sled::Batch::default();
    let (mut count, mut in_batch) = (0u64, 0usize);
    loop {
        match take(1)?[0] {
            1 => {
                let key_len = u32::from_be_bytes(take(4)?.try_into().unwrap_or_default());
                let key = take(key_len as usize)?;
                let value_len = u32::from_be_bytes(take(4)?.try_into().unwrap_or_default());
                let value = take(value_len as usize)?;
                batch.insert(key, value);
                count += 1;
                in_batch += 1;
                if in_batch == IMPORT_BATCH {
                    handles.tree.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            0 => break,
            tag => {
                return Err(StoreError::BadRequest(format!(
                    "bad record tag {tag} in the export"
                )));
            }
        }
    }
    let stated = u64::from_be_bytes(take(8)?.try_into().unwrap_or_default());
    let digest = hasher.finalize();
    let mut sum = [0u8; 16];
    input
        .read_exact(&mut sum)
        .map_err(|e| StoreError::BadRequest(format!("the export is cut short: {e}")))?;
    if stated != count || sum != digest.as_slice() {
        return Err(StoreError::BadRequest(
            "the export's checksum does not match: it is corrupt".into(),
        ));
    }
    handles.tree.apply_batch(batch)?;
    handles.db.flush()?;
    Ok(count)
}

fn len32(bytes: &[u8]) -> Result<[u8; 4]> {
    u32::try_from(bytes.len())
        .map(u32::to_be_bytes)
        .map_err(|_| StoreError::Corrupt("a key or value over 4 GiB".into()))
}

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::WriteFailed(error.to_string())
}
