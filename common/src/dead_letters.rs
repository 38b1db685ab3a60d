//! The one rule every dead-letter operation that changes letters (replay, discard,
//! re-map) shares: a filter that names nothing is refused unless it says `all`.

use wdtpipe_proto::v1::DeadLetterFilter;

/// Why a filter that names nothing is refused.
pub const UNSCOPED: &str =
    "set a tid, a shop, a connector, a scheme, a reason, a time range, letters, or all";

/// True when the filter narrows the letters, or asks for all of them.
pub fn scoped(filter: &DeadLetterFilter) -> bool {
    filter.all
        || !filter.tid.is_empty()
        || !filter.shop_no.is_empty()
        || !filter.connector.is_empty()
        || filter.since_ms != 0
        || filter.until_ms != 0
        || !filter.scheme.is_empty()
        || !filter.reason.is_empty()
        || !filter.keys.is_empty()
}
