//! Reading JSON without copying what needs no copy.

use serde::de::{Deserialize, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;

/// A JSON string (an object key, typically), borrowed from the input unless it holds
/// escapes. serde's own `Cow<str>` always copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BorrowedStr<'a>(pub Cow<'a, str>);

impl<'a> BorrowedStr<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_cow(self) -> Cow<'a, str> {
        self.0
    }
}

impl PartialEq<str> for BorrowedStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl fmt::Display for BorrowedStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_unless_escaped() {
        let plain: BorrowedStr<'_> = serde_json::from_str(r#""key""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("key")));
        let escaped: BorrowedStr<'_> = serde_json::from_str(r#""k\"ey""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "k\"ey"));
        assert_eq!(escaped.to_string(), "k\"ey");
    }
}
