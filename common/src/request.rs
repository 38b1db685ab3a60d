//! Request identity across stages: the request id ingest assigns (or takes from the
//! sender's `x-request-id`) and the sender's W3C `traceparent`, carried to deliver in the
//! messages and into every log line and the status history.

use rand::Rng;

/// A new request id: 16 lowercase hex digits.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A sender-given request id, kept when it is short printable ASCII.
pub fn accept_request_id(given: &str) -> Option<String> {
    let given = given.trim();
    (!given.is_empty() && given.len() <= 64 && given.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| given.to_owned())
}

/// True for a well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not zero).
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if hex(version, 2) && *version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
}

/// An answer's `Retry-After` in seconds (the HTTP-date form is not used by the servers we
/// call), for a WDT call or an alert webhook.
pub fn retry_after(headers: &axum::http::HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(axum::http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_traceparents() {
        assert_eq!(new_request_id().len(), 16);
        assert_eq!(accept_request_id(" abc-1 ").as_deref(), Some("abc-1"));
        assert_eq!(accept_request_id("has space"), None);
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent("garbage"));
    }
}
