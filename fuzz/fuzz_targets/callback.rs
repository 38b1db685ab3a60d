//! Arbitrary bytes through everything ingest and transform do with a callback body before
//! it is queued: the one parse entry point (structural limits, fast path, full parser), the
//! record id and the mapping. Any panic is a bug; every input must end in records or a
//! clean error. The fast path is also held to the full parser: whatever it reads, the full
//! parser reads the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wdtpipe_ingest::config::Limits;
use wdtpipe_ingest::parse::{fast, full, parse, shape};
use wdtpipe_ingest::record::record_id;
use wdtpipe_transform::mapping::map_records;
use wdtpipe_transform::scheme::Scheme;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    if let Some(fast) = fast::parse_plain(body, limits.json_depth, limits.string_bytes) {
        assert!(shape::check_shape(body, limits.json_depth, limits.string_bytes).is_ok());
        assert_eq!(full::parse_body(body).ok(), Some(fast), "the fast path read differently");
    }
    let Ok(records) = parse(body, &limits) else {
        return;
    };
    for record in &records {
        let id = record_id(record);
        assert_eq!(id.len(), 32);
    }
    let positioned = records.iter().enumerate().map(|(i, r)| (i as u32 + 1, r));
    if let Ok(trades) = map_records(positioned, &Scheme::default()) {
        assert_eq!(trades.len(), records.len());
    }
});
