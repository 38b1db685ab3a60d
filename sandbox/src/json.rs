//! A JSON tree that borrows from the text it was read from, for checking `trade_list`.
//!
//! `serde_json::Value` allocates every key and string and sorts every object into a
//! `BTreeMap`; reading a 50-trade list that way was a fifth of the sandbox's CPU. This tree
//! points into the form value for strings without escapes and keeps object members in body
//! order, looked up from the back so that a repeated key answers its last value, as a map
//! would. The store, which keeps accepted trades, converts to `Value` ([`Json::to_value`]).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;
use wdtpipe_common::json::BorrowedStr;

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object's members in body order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The value of `key`; the last one when the key is repeated.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<'a> Json<'a> {
    /// Reads JSON text as `serde_json` does (same grammar, same limits, same errors).
    pub(crate) fn parse(text: &'a str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(object) => object.get(key),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer that fits `i64`, as `Value::as_i64` answers.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The same value as `serde_json::Value` (a repeated key keeps its last value).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(object) => {
                let mut map = Map::new();
                for (key, value) in &object.0 {
                    map.insert(key.to_string(), value.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, value)) = map.next_entry::<BorrowedStr<'de>, Json<'de>>()? {
            members.push((key.into_cow(), value));
        }
        Ok(Json::Object(Object(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_value_reads() {
        let text = r#"{"tid":"T\u0031","n":30,"big":18446744073709551615,"neg":-2,"f":1.5,
            "ok":true,"no":null,"list":[{"oid":"O1"},[],"x"],"tid":"T2","e":{}}"#;
        let json = Json::parse(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json.to_value(), value);
        assert_eq!(json.get("tid").and_then(Json::as_str), Some("T2"));
        assert_eq!(json.get("n").and_then(Json::as_i64), Some(30));
        assert_eq!(json.get("big").and_then(Json::as_i64), None);
        assert_eq!(json.get("f").and_then(Json::as_i64), None);
        assert!(json.get("no").is_some_and(Json::is_null));
        assert_eq!(
            json.get("list").and_then(Json::as_array).map(<[_]>::len),
            Some(3)
        );
        assert!(matches!(json.get("list"), Some(Json::Array(_))));
        assert!(json.get("missing").is_none());
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let json = Json::parse(r#"{"a":"plain","b":"esc\"aped"}"#).unwrap();
        assert!(matches!(
            json.get("a"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(json.get("b"), Some(Json::String(Cow::Owned(_)))));
    }

    /// JSON text, nearly always valid: nested arrays and objects (repeated keys included)
    /// of numbers, strings with escapes, literals.
    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("false".to_owned()),
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "\"([a-z\u{4e2d} ]|\\\\[\"\\\\n/]|\\\\u00[0-9a-f]{2}){0,4}\"",
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..4).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        /// Generated JSON: the same value as serde_json reads, or the same refusal.
        #[test]
        fn same_as_value_on_json(text in json_text()) {
            let value = serde_json::from_str::<Value>(&text);
            match Json::parse(&text) {
                Ok(json) => prop_assert_eq!(Some(json.to_value()), value.ok()),
                Err(_) => prop_assert!(value.is_err()),
            }
        }

        /// Any text: accepted exactly when serde_json accepts it, and then the same value.
        #[test]
        fn same_as_value(text in r#"[\[\]{}",:0-9a-z .eE+\-\\]{0,64}"#) {
            let value = serde_json::from_str::<Value>(&text);
            match Json::parse(&text) {
                Ok(json) => prop_assert_eq!(Some(json.to_value()), value.ok()),
                Err(_) => prop_assert!(value.is_err()),
            }
        }
    }
}
