//! Decimal and integer text as MAPPING.md defines them, and the canonical written form.
//!
//! Money and quantities are exact (`rust_decimal`), never `f64`. A decimal is text of the
//! form `-?[0-9]+(\.[0-9]+)?`; an integer is `-?[0-9]+`. Written values have at most four
//! decimal places, rounded half away from zero, with no trailing zeros, no exponent, and
//! `-0` written `0`.

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

pub use rust_decimal::Decimal as Dec;

/// Why a text is not a usable decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal")]
    NotADecimal,
    #[error("decimal out of range")]
    OutOfRange,
}

/// Parses decimal text; the empty text reads as 0.
pub fn parse_decimal(text: &str) -> Result<Decimal, DecimalError> {
    if text.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if !is_decimal_text(text) {
        return Err(DecimalError::NotADecimal);
    }
    Decimal::from_str(text).map_err(|_| DecimalError::OutOfRange)
}

/// True when `text` matches `-?[0-9]+(\.[0-9]+)?`.
pub fn is_decimal_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

/// The canonical written form: ≤ 4 places, half away from zero, trailing zeros removed.
pub fn format_decimal(value: Decimal) -> String {
    let rounded = value
        .round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    if rounded.is_zero() {
        "0".to_owned()
    } else {
        rounded.to_string()
    }
}

/// An integer read from text (`-?[0-9]+`; leading zeros allowed, so `"0110"` is 110).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integer {
    /// Not of the integer form at all (empty, `5.0`, `abc`).
    NotAnInteger,
    /// Of the integer form but beyond 64 bits.
    OutOfRange,
    Value(i64),
}

impl Integer {
    /// Reads integer text.
    pub fn parse(text: &str) -> Self {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Integer::NotAnInteger;
        }
        match text.parse::<i64>() {
            Ok(v) => Integer::Value(v),
            // Leading zeros never break i64 parsing; only magnitude does.
            Err(_) => Integer::OutOfRange,
        }
    }

    /// The value, if it is an integer that fits.
    pub fn value(self) -> Option<i64> {
        match self {
            Integer::Value(v) => Some(v),
            _ => None,
        }
    }

    /// True when this is the integer `n`.
    pub fn is(self, n: i64) -> bool {
        self == Integer::Value(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grammar() {
        for ok in ["0", "12", "12.50", "-3.2", "007", "0.0001"] {
            assert!(parse_decimal(ok).is_ok(), "{ok}");
        }
        for bad in [
            "+1", ".5", "1.", "1e3", "abc", "1,5", "- 1", "12.3.4", "NaN", "１２",
        ] {
            assert_eq!(parse_decimal(bad), Err(DecimalError::NotADecimal), "{bad}");
        }
        assert_eq!(parse_decimal(""), Ok(Decimal::ZERO));
        assert_eq!(
            parse_decimal("123456789012345678901234567890123"),
            Err(DecimalError::OutOfRange)
        );
    }

    #[test]
    fn canonical_form() {
        let f = |s: &str| format_decimal(parse_decimal(s).unwrap());
        assert_eq!(f("12.50"), "12.5");
        assert_eq!(f("1999.0000"), "1999");
        assert_eq!(f("0"), "0");
        assert_eq!(f("-0.00"), "0");
        assert_eq!(f("-0.00001"), "0");
        assert_eq!(f("33.33333"), "33.3333");
        assert_eq!(f("0.00005"), "0.0001");
        assert_eq!(f("-0.00005"), "-0.0001");
        assert_eq!(f("2.00015"), "2.0002");
        assert_eq!(f("100"), "100");
    }

    #[test]
    fn integers() {
        assert!(Integer::parse("0110").is(110));
        assert!(Integer::parse("-1").is(-1));
        assert_eq!(Integer::parse("5.0"), Integer::NotAnInteger);
        assert_eq!(Integer::parse(""), Integer::NotAnInteger);
        assert_eq!(Integer::parse("-"), Integer::NotAnInteger);
        assert_eq!(Integer::parse("99999999999999999999"), Integer::OutOfRange);
    }

    proptest! {
        /// The written form re-reads as the value rounded to 4 places, and never carries
        /// an exponent, a trailing zero or a trailing dot.
        #[test]
        fn canonical_roundtrip(int in -1_000_000_000i64..1_000_000_000, frac in 0u32..100_000_000) {
            let text = format!("{int}.{frac:08}");
            let value = parse_decimal(&text).unwrap();
            let written = format_decimal(value);
            prop_assert!(is_decimal_text(&written));
            prop_assert!(!written.contains('e'));
            if written.contains('.') {
                prop_assert!(!written.ends_with('0'));
                prop_assert!(written.split_once('.').unwrap().1.len() <= 4);
            }
            prop_assert_ne!(written.as_str(), "-0");
            let back = parse_decimal(&written).unwrap();
            prop_assert!((back - value).abs() <= Decimal::new(5, 5));
        }
    }
}
