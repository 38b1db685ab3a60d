//! The one error shape for invalid input: which record, which field, which rule.
//!
//! Transform produces it, gRPC carries it in `INVALID_ARGUMENT` status details, ingest turns
//! it into the HTTP 422 body. Its text is
//! `record 2 (tid T1001): details_list[1].goods_no/spec_no: goods_no and spec_no are both empty`.

use prost::Message as _;
use std::fmt;
use tonic::{Code, Status};
use wdtpipe_proto::v1::RecordRejection;

/// Renders a rejection the way every surface reports it.
#[derive(Debug)]
pub struct Display<'a>(pub &'a RecordRejection);

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "record {}", r.position)?;
        if !r.tid.is_empty() {
            write!(f, " (tid {})", r.tid)?;
        }
        write!(f, ": {}: {}", r.field, r.rule)
    }
}

/// Builds a rejection.
pub fn rejection(
    position: u32,
    tid: &str,
    field: impl Into<String>,
    rule: impl Into<String>,
) -> RecordRejection {
    RecordRejection {
        position,
        tid: tid.to_owned(),
        field: field.into(),
        rule: rule.into(),
    }
}

/// A record's 1-based position in its request, which every rejection of it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt(pub u32);

impl RecordAt {
    /// The rejection of this record: `field` of trade `tid` breaks `rule`.
    pub fn reject(
        self,
        tid: &str,
        field: impl Into<String>,
        rule: impl Into<String>,
    ) -> RecordRejection {
        rejection(self.0, tid, field, rule)
    }
}

/// The message text of a rejection.
pub fn message(r: &RecordRejection) -> String {
    Display(r).to_string()
}

/// An `INVALID_ARGUMENT` status carrying the rejection in its details.
pub fn to_status(r: &RecordRejection) -> Status {
    Status::with_details(Code::InvalidArgument, message(r), r.encode_to_vec().into())
}

/// The rejection carried by a status, if it carries one.
pub fn from_status(status: &Status) -> Option<RecordRejection> {
    if status.code() != Code::InvalidArgument || status.details().is_empty() {
        return None;
    }
    RecordRejection::decode(status.details()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_and_without_tid() {
        let r = rejection(
            2,
            "T1001",
            "details_list[1].goods_no/spec_no",
            "goods_no and spec_no are both empty",
        );
        assert_eq!(
            message(&r),
            "record 2 (tid T1001): details_list[1].goods_no/spec_no: goods_no and spec_no are both empty"
        );
        let r = rejection(1, "", "tid", "no tid");
        assert_eq!(message(&r), "record 1: tid: no tid");
    }

    #[test]
    fn survives_a_status_roundtrip() {
        let r = rejection(3, "T9", "paid", "not a decimal");
        assert_eq!(from_status(&to_status(&r)), Some(r));
        assert_eq!(from_status(&Status::invalid_argument("plain")), None);
    }
}
