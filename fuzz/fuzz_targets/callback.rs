//! Arbitrary bytes through everything ingest and transform do with a callback body before
//! it is queued: the structural limits, the parser, the record id and the mapping. Any
//! panic is a bug; every input must end in records or a clean error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wdtpipe_ingest::callback::parse_body;
use wdtpipe_ingest::limits::check_shape;
use wdtpipe_ingest::record::record_id;
use wdtpipe_transform::mapping::map_records;
use wdtpipe_transform::scheme::Scheme;

fuzz_target!(|body: &[u8]| {
    if check_shape(body, 32, 1 << 20).is_err() {
        return;
    }
    let Ok(records) = parse_body(body) else {
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
