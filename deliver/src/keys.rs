//! The outbox key space. One sled tree holds everything, so a single `apply_batch` is atomic
//! across entries, queues and dedupe records.
//!
//! | prefix | key                                   | value                     |
//! |--------|---------------------------------------|---------------------------|
//! | `t/`   | len16(tid) tid shop                   | `OutboxEntry`             |
//! | `q/`   | len16(shop) shop seq64                | tid (ready queue, FIFO)   |
//! | `w/`   | due_ms64 seq64                        | len16(tid) tid shop       |
//! | `r/`   | record_id                             | `RecordMeta` (dedupe)     |
//! | `k/`   | idempotency key                       | `RecordMeta` (dedupe)     |
//! | `x/`   | len16(tid) tid shop seq64             | `DeadLetter`              |
//! | `s/`   | tid                                   | `RecordMeta` (skipped)    |
//! | `n/`   | tracking number                       | `TrackingIndex`           |
//! | `m/`   | `seq`, `format`                       | counters (u64)            |
//!
//! Lengths are big-endian `u16`, numbers big-endian `u64`, so byte order is queue order.

pub const ENTRY: &[u8] = b"t/";
pub const READY: &[u8] = b"q/";
pub const WAITING: &[u8] = b"w/";
pub const RECORD: &[u8] = b"r/";
pub const IDEMPOTENCY: &[u8] = b"k/";
pub const DEAD: &[u8] = b"x/";
pub const SKIPPED: &[u8] = b"s/";
pub const TRACKING: &[u8] = b"n/";
pub const SEQ: &[u8] = b"m/seq";
/// The outbox's format version (see `store::FORMAT_VERSION`).
pub const FORMAT: &[u8] = b"m/format";

/// Identifies one outbox entry: a tid within a shop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TradeKey {
    pub tid: String,
    pub shop_no: String,
}

impl TradeKey {
    pub fn new(tid: &str, shop_no: &str) -> Self {
        Self {
            tid: tid.to_owned(),
            shop_no: shop_no.to_owned(),
        }
    }

    /// `len16(tid) tid shop`: the pair without a prefix (also the `w/` value).
    pub fn encode_pair(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.tid.len() + self.shop_no.len());
        push_str16(&mut out, &self.tid);
        out.extend_from_slice(self.shop_no.as_bytes());
        out
    }

    pub fn decode_pair(bytes: &[u8]) -> Option<Self> {
        let (tid, rest) = split_str16(bytes)?;
        Some(Self {
            tid: tid.to_owned(),
            shop_no: std::str::from_utf8(rest).ok()?.to_owned(),
        })
    }

    pub fn entry_key(&self) -> Vec<u8> {
        prefixed(ENTRY, &self.encode_pair())
    }

    pub fn from_entry_key(key: &[u8]) -> Option<Self> {
        Self::decode_pair(key.strip_prefix(ENTRY)?)
    }
}

/// Prefix of every entry of a tid, whatever its shop.
pub fn entry_prefix(tid: &str) -> Vec<u8> {
    let mut out = ENTRY.to_vec();
    push_str16(&mut out, tid);
    out
}

/// Prefix of a shop's ready queue.
pub fn ready_prefix(shop_no: &str) -> Vec<u8> {
    let mut out = READY.to_vec();
    push_str16(&mut out, shop_no);
    out
}

pub fn ready_key(shop_no: &str, seq: u64) -> Vec<u8> {
    let mut out = ready_prefix(shop_no);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The shop of a ready-queue key.
pub fn shop_of_ready_key(key: &[u8]) -> Option<String> {
    let (shop, _) = split_str16(key.strip_prefix(READY)?)?;
    Some(shop.to_owned())
}

/// `(shop, queue place)` of a ready-queue key.
pub fn parse_ready_key(key: &[u8]) -> Option<(&str, u64)> {
    let (shop, seq) = split_str16(key.strip_prefix(READY)?)?;
    Some((shop, u64::from_be_bytes(seq.try_into().ok()?)))
}

pub fn waiting_key(due_ms: i64, seq: u64) -> Vec<u8> {
    let mut out = WAITING.to_vec();
    out.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// `(due_ms, seq)` of a waiting key.
pub fn parse_waiting_key(key: &[u8]) -> Option<(i64, u64)> {
    let rest = key.strip_prefix(WAITING)?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    Some((due as i64, seq))
}

/// The dead letter of one version of a trade.
pub fn dead_key(key: &TradeKey, seq: u64) -> Vec<u8> {
    let mut out = prefixed(DEAD, &key.encode_pair());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// Prefix of every dead letter of a tid.
pub fn dead_prefix(tid: &str) -> Vec<u8> {
    let mut out = DEAD.to_vec();
    push_str16(&mut out, tid);
    out
}

pub fn tracking_key(number: &str) -> Vec<u8> {
    prefixed(TRACKING, number.as_bytes())
}

pub fn record_key(record_id: &str) -> Vec<u8> {
    prefixed(RECORD, record_id.as_bytes())
}

pub fn idempotency_key(key: &str) -> Vec<u8> {
    prefixed(IDEMPOTENCY, key.as_bytes())
}

fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + rest.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(rest);
    out
}

fn push_str16(out: &mut Vec<u8>, s: &str) {
    // tids are ≤ 40 characters and shop numbers short; a longer text is cut at the u16
    // limit only in the length prefix's reach, which a valid trade never approaches.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn split_str16(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let text = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    Some((text, &bytes[2 + len..]))
}

/// A tid its scheme skipped: the latest skipping record.
pub fn skipped_key(tid: &str) -> Vec<u8> {
    prefixed(SKIPPED, tid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_roundtrip_and_sort_by_sequence() {
        let key = TradeKey::new("T\u{0}1", "SHOP:01");
        assert_eq!(
            TradeKey::from_entry_key(&key.entry_key()),
            Some(key.clone())
        );
        assert_eq!(TradeKey::decode_pair(&key.encode_pair()), Some(key));
        assert!(ready_key("S", 2) < ready_key("S", 256));
        assert!(waiting_key(5, 9) < waiting_key(6, 1));
        assert_eq!(parse_waiting_key(&waiting_key(1234, 77)), Some((1234, 77)));
        assert_eq!(
            shop_of_ready_key(&ready_key("S1", 3)).as_deref(),
            Some("S1")
        );
        assert_eq!(parse_ready_key(&ready_key("S1", 3)), Some(("S1", 3)));
        assert_eq!(parse_ready_key(b"q/\0\x02S1\0"), None);
        assert!(
            TradeKey::new("T1", "A")
                .entry_key()
                .starts_with(&entry_prefix("T1"))
        );
        assert!(
            !TradeKey::new("T10", "A")
                .entry_key()
                .starts_with(&entry_prefix("T1"))
        );
    }
}
