//! The WDT Enterprise md5 request signature (WDT_API.md, "Sign").
//!
//! Every POSTed field except `sign` and except empty values, sorted by key in byte order,
//! written as `LL-key:VVVV-value` (lengths in Unicode code points, zero-padded to 2 and 4
//! digits), joined with `;`, followed by the appsecret; md5 of the UTF-8 bytes, lowercase hex.

use md5::{Digest, Md5};
use std::fmt::Write as _;

/// Computes `sign` for the given form fields. Fields named `sign` and fields with empty
/// values are skipped, exactly as the vendor SDK does.
pub fn sign<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>, appsecret: &str) -> String {
    let packed = pack(fields);
    let mut hasher = Md5::new();
    hasher.update(packed.as_bytes());
    hasher.update(appsecret.as_bytes());
    hex(&hasher.finalize())
}

/// The string that is hashed, without the appsecret (exposed for tests and diagnostics;
/// it holds no secret).
pub fn pack<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut fields: Vec<(&str, &str)> = fields
        .into_iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    fields.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let capacity = fields.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut packed = String::with_capacity(capacity);
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            packed.push(';');
        }
        let _ = write!(
            packed,
            "{:02}-{key}:{:04}-{value}",
            key.chars().count(),
            value.chars().count()
        );
    }
    packed
}

/// Checks a received signature in constant time with respect to its content.
pub fn verify<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    appsecret: &str,
    received: &str,
) -> bool {
    let expected = sign(fields, appsecret);
    constant_time_eq(
        expected.as_bytes(),
        received.to_ascii_lowercase().as_bytes(),
    )
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// md5 of arbitrary bytes as lowercase hex (record ids use it too).
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VENDOR: &[(&str, &str)] = &[
        ("appkey", "test2-xx"),
        ("end_time", "2016-08-01 13:00:00"),
        ("page_no", "0"),
        ("page_size", "40"),
        ("sid", "test2"),
        ("start_time", "2016-08-01 12:00:00"),
        ("timestamp", "1470042310"),
    ];

    /// The vendor's published test vector: packed string and sign.
    #[test]
    fn vendor_vector() {
        assert_eq!(
            pack(VENDOR.iter().copied()),
            "06-appkey:0008-test2-xx;08-end_time:0019-2016-08-01 13:00:00;07-page_no:0001-0;\
             09-page_size:0002-40;03-sid:0005-test2;10-start_time:0019-2016-08-01 12:00:00;\
             09-timestamp:0010-1470042310"
        );
        assert_eq!(
            sign(VENDOR.iter().copied(), "12345"),
            "ad4e6fe037ea6e3ba4768317be9d1309"
        );
    }

    /// Lengths count code points, not bytes: the CJK vector from WDT_API.md.
    #[test]
    fn cjk_vector_counts_code_points() {
        let fields = [
            ("appkey", "test2-xx"),
            ("buyer_message", "你好"),
            ("sid", "test2"),
            ("timestamp", "1470042310"),
        ];
        assert!(pack(fields).contains("13-buyer_message:0002-你好"));
        assert_eq!(sign(fields, "12345"), "fcafd41130bdf1cbe470a95cfd6c8e9e");
        assert_ne!(sign(fields, "12345"), "5ce51abaeb79d4805ae30ed7edc09d14");
    }

    /// Field order does not matter, `sign` itself and empty values are skipped.
    #[test]
    fn order_sign_and_empty_values_are_ignored() {
        let mut shuffled: Vec<(&str, &str)> = VENDOR.iter().rev().copied().collect();
        shuffled.push(("sign", "whatever"));
        shuffled.push(("empty", ""));
        assert_eq!(sign(shuffled, "12345"), "ad4e6fe037ea6e3ba4768317be9d1309");
    }

    /// A value longer than 9999 characters prints all the digits of its length.
    #[test]
    fn long_values_print_every_digit() {
        let long = "x".repeat(10_000);
        assert!(pack([("trade_list", long.as_str())]).starts_with("10-trade_list:10000-x"));
    }

    #[test]
    fn verify_accepts_uppercase_and_rejects_tampering() {
        let good = sign(VENDOR.iter().copied(), "12345");
        assert!(verify(
            VENDOR.iter().copied(),
            "12345",
            &good.to_uppercase()
        ));
        assert!(!verify(VENDOR.iter().copied(), "12346", &good));
        assert!(!verify(VENDOR.iter().copied(), "12345", &good[1..]));
    }

    proptest! {
        /// Every pair is written with its code-point lengths, whatever the characters.
        #[test]
        fn pack_lengths_are_code_points(key in "[a-z_]{1,20}", value in "\\PC{1,40}") {
            let packed = pack([(key.as_str(), value.as_str())]);
            let expected = format!("{:02}-{}:{:04}-{}", key.chars().count(), key, value.chars().count(), value);
            prop_assert_eq!(packed, expected);
        }
    }
}
