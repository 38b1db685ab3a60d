//! Cheap structural limits checked on the raw body before it is parsed: how deep JSON may
//! nest and how long one string may be. A hostile body is refused in one linear pass,
//! without building anything.

/// Why a body breaks a structural limit (HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("a JSON string is longer than {0} bytes")]
    StringTooLong(usize),
}

/// Scans JSON text for nesting depth and string length. It does not validate the JSON;
/// the parser does that afterwards.
pub fn check_shape(
    body: &[u8],
    max_depth: usize,
    max_string_bytes: usize,
) -> Result<(), ShapeError> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // Jump from escape to escape inside the string (strings are most of a body).
                let start = at + 1;
                let mut i = start;
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[i..]) {
                        Some(offset) if body[i + offset] == b'\\' => i += offset + 2,
                        Some(offset) => {
                            i += offset;
                            break;
                        }
                        None => {
                            i = body.len();
                            break;
                        }
                    }
                    if i >= body.len() {
                        break;
                    }
                }
                if i.min(body.len()) - start > max_string_bytes {
                    return Err(ShapeError::StringTooLong(max_string_bytes));
                }
                at = i + 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ShapeError::TooDeep(max_depth));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn depth_and_strings() {
        assert_eq!(check_shape(br#"{"a":[{"b":1}]}"#, 3, 10), Ok(()));
        assert_eq!(
            check_shape(br#"{"a":[{"b":1}]}"#, 2, 10),
            Err(ShapeError::TooDeep(2))
        );
        assert_eq!(
            check_shape(br#"{"a":"[[[[[[["}"#, 1, 10),
            Ok(()),
            "brackets in strings do not nest"
        );
        assert_eq!(check_shape(br#"{"a":"0123456789"}"#, 5, 10), Ok(()));
        assert_eq!(
            check_shape(br#"{"a":"0123456789x"}"#, 5, 10),
            Err(ShapeError::StringTooLong(10))
        );
        assert_eq!(
            check_shape(br#"{"a":"\"\"\"\""}"#, 5, 8),
            Ok(()),
            "escaped quotes stay inside"
        );
        let deep = "[".repeat(10_000);
        assert_eq!(
            check_shape(deep.as_bytes(), 64, 10),
            Err(ShapeError::TooDeep(64))
        );
    }

    proptest! {
        /// Any bytes: the scan terminates without panicking.
        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = check_shape(&body, 8, 16);
        }
    }
}
