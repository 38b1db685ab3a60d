//! Reading a callback body into records: the one entry point, [`parse`], which the HTTP
//! handler, the console's and the CLI's scheme previews and the fuzz target all call.
//!
//! Nearly every body upstream systems send is plain (scalars, no escapes, lines as an
//! array): [`fast`] reads it in one pass. Anything else — escapes, JSON held in strings,
//! `{"stockout_list": …}`, a limit reached, a mistake — goes through the structural limits
//! ([`shape`]) and then the full parser ([`full`]), which reads every shape and says what
//! is wrong with which record and field. Both read a scalar by the same rule (strings as
//! they are, numbers as their text, `null` as empty) and fill the record through the same
//! field tables (`wdtpipe_common::record::Fields`); the property tests of `fast` hold its
//! answers equal to `full`'s, and the fuzz target checks the same on arbitrary bytes.

pub mod fast;
pub mod full;
pub mod shape;

use crate::config::Limits;
use crate::error::IngestError;
use wdtpipe_proto::v1::StockoutRecord;

/// The records of a callback body, within `limits` (nesting, string length, record
/// count); the error names the record and field when one is wrong.
pub fn parse(body: &[u8], limits: &Limits) -> Result<Vec<StockoutRecord>, IngestError> {
    let records = match fast::parse_plain(body, limits.json_depth, limits.string_bytes) {
        Some(records) => records,
        None => {
            shape::check_shape(body, limits.json_depth, limits.string_bytes)?;
            full::parse_body(body)?
        }
    };
    if records.len() > limits.records {
        return Err(IngestError::TooManyRecords {
            count: records.len(),
            max: limits.records,
        });
    }
    Ok(records)
}
