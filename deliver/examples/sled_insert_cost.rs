//! What sled costs per write as deliver's outbox uses it, apart from everything else: the
//! CPU and the bytes written per key for values of the outbox's sizes, one insert at a time
//! against one `apply_batch` per group, each group flushed (fsync) as the writer does. For
//! scale, the same values appended to a plain file with one `fdatasync` per group: the
//! floor any write path pays for the bytes and the syncs.
//!
//! ```sh
//! cargo run --release -p wdtpipe-deliver --example sled_insert_cost
//! FLUSH_EVERY=1000000 cargo run --release -p wdtpipe-deliver --example sled_insert_cost
//! ```
//!
//! `FLUSH_EVERY=N` flushes after every N groups instead of each one (a large N: never),
//! which tells sled's cost per insert apart from its cost per flush.
//!
//! Keys are random 16-byte ids (as the dedupe records' md5 record ids and the tids are), or
//! increasing sequence numbers (as the queue keys are). Each case writes into a fresh
//! database in a temporary directory with the outbox's settings (high throughput, 6 MiB
//! cache). Results go to BENCHMARKS.md.

use std::time::Instant;

/// Keys written per case.
const KEYS: usize = 60_000;
/// Keys per group commit (the writer's groups at 64 senders hold about this many).
const GROUP: usize = 14;

fn main() {
    println!("value bytes | keys       | how            | µs CPU per key | KB written per key");
    for value_len in [300usize, 1_400, 3_500] {
        for sequential in [false, true] {
            for batched in [false, true] {
                let (cpu_us, written) = case(value_len, sequential, batched);
                println!(
                    "{value_len:>11} | {:<10} | {:<14} | {cpu_us:>14.1} | {:>18.1}",
                    if sequential { "sequential" } else { "random" },
                    if batched {
                        "apply_batch"
                    } else {
                        "insert each"
                    },
                    written / 1024.0
                );
            }
        }
        let (cpu_us, written) = append_case(value_len);
        println!(
            "{value_len:>11} | {:<10} | {:<14} | {cpu_us:>14.1} | {:>18.1}",
            "-",
            "file append",
            written / 1024.0
        );
    }
}

/// Appends [`KEYS`] values of `value_len` bytes (each after a 16-byte key and its length) to
/// one file, with `fdatasync` after every [`GROUP`]; returns CPU time and disk writes per key.
fn append_case(value_len: usize) -> (f64, f64) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut file = std::fs::File::create(dir.path().join("log")).expect("log file");
    let value = vec![0x5a_u8; value_len];
    let (cpu_before, written_before) = (cpu_seconds(), disk_written());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut group = Vec::with_capacity(GROUP * (value_len + 24));
    for _ in 0..KEYS / GROUP {
        group.clear();
        for _ in 0..GROUP {
            group.extend_from_slice(&random_key(&mut state));
            group.extend_from_slice(&(value_len as u64).to_le_bytes());
            group.extend_from_slice(&value);
        }
        file.write_all(&group).expect("append");
        file.sync_data().expect("fdatasync");
    }
    let cpu = cpu_seconds() - cpu_before;
    let written = disk_written() - written_before;
    (cpu * 1e6 / KEYS as f64, written / KEYS as f64)
}

/// Writes [`KEYS`] values of `value_len` bytes, in groups of [`GROUP`], flushing after every
/// [`flush_every`] groups; returns the process's CPU time and disk writes per key.
fn case(value_len: usize, sequential: bool, batched: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(6 << 20)
        .open()
        .expect("sled opens");
    let value = vec![0x5a_u8; value_len];
    let (cpu_before, written_before) = (cpu_seconds(), disk_written());
    let started = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut seq = 0_u64;
    let flush_every = flush_every();
    for group in 1..=KEYS / GROUP {
        let mut batch = sled::Batch::default();
        for _ in 0..GROUP {
            let key = if sequential {
                seq += 1;
                let mut key = [0; 16];
                key[8..].copy_from_slice(&seq.to_be_bytes());
                key
            } else {
                random_key(&mut state)
            };
            if batched {
                batch.insert(&key, value.as_slice());
            } else {
                db.insert(key, value.as_slice()).expect("insert");
            }
        }
        if batched {
            db.apply_batch(batch).expect("apply_batch");
        }
        if group.is_multiple_of(flush_every) {
            db.flush().expect("flush");
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let written = disk_written() - written_before;
    eprintln!(
        "{value_len} bytes, sequential {sequential}, batched {batched}: {:.1} s wall, {cpu:.1} s CPU",
        wall.as_secs_f64()
    );
    (cpu * 1e6 / KEYS as f64, written / KEYS as f64)
}

/// A 16-byte key from an xorshift generator.
fn random_key(state: &mut u64) -> [u8; 16] {
    let mut key = [0; 16];
    for half in key.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        half.copy_from_slice(&state.to_le_bytes());
    }
    key
}

/// This process's user + system CPU time so far (`/proc/self/stat`), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Bytes this process has caused to be written to storage so far (`/proc/self/io`).
fn disk_written() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .expect("/proc/self/io")
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes")
}

/// Groups per flush, from `FLUSH_EVERY` (1: every group, as the writer does).
fn flush_every() -> usize {
    std::env::var("FLUSH_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}
