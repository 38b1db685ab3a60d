//! Parses a callback body into stockout records (MAPPING.md, "Reading the source").
//!
//! A body holds one record, an array of records, or `{"stockout_list": [...]}`. Scalars are
//! read as text: a JSON number keeps the text it has in the body, `true`/`false` become
//! `1`/`0`, null is empty, and strings are trimmed of Unicode white space. `details_list`
//! and `kuaidi100Data` may be JSON or strings holding JSON. Only the shape is checked here;
//! the mapping in transform decides which fields must be valid decimals, integers or times.

use crate::record::{DETAILS_KEY, Fields, KUAIDI100_KEY};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use wdtpipe_common::json::BorrowedStr;
use wdtpipe_common::rejection::rejection;
use wdtpipe_proto::v1::{Kuaidi100Data, RecordRejection, StockoutDetail, StockoutRecord};

/// Why a body could not become records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallbackError {
    /// Not JSON at all (syntax, invalid UTF-8, nesting too deep): HTTP 400.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// Valid JSON that holds no record: HTTP 422.
    #[error("{0}")]
    NoRecords(&'static str),
    /// A record that cannot be read: HTTP 422.
    #[error("{}", wdtpipe_common::rejection::message(.0))]
    Invalid(RecordRejection),
}

/// The shape of a body that holds no usable record.
const NOT_RECORDS: &str = "request: expected a record, an array of records, or {\"stockout_list\": [...]} with at least one record";

/// Parses a whole callback body.
pub fn parse_body(body: &[u8]) -> Result<Vec<StockoutRecord>, CallbackError> {
    let malformed = |e: serde_json::Error| CallbackError::Malformed(e.to_string());
    // One parse of the body into entries with unparsed values; each record's fields are
    // then read from its own slice.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(malformed)?;
            records_of(&items)
        }
        Some(b'{') => {
            let object: RawObject<'_> = serde_json::from_slice(body).map_err(malformed)?;
            match object.last(STOCKOUT_LIST_KEY) {
                Some(list) if first_byte(list) == b'[' => {
                    records_of(&parse_raw::<Vec<&RawValue>>(list)?)
                }
                Some(_) => Err(CallbackError::NoRecords(NOT_RECORDS)),
                None => Ok(vec![record_from_object(object, 1)?]),
            }
        }
        _ => {
            // Valid JSON that is not an object or array holds no record; anything else is
            // not JSON at all.
            serde_json::from_slice::<&RawValue>(body).map_err(malformed)?;
            Err(CallbackError::NoRecords(NOT_RECORDS))
        }
    }
}

fn records_of(items: &[&RawValue]) -> Result<Vec<StockoutRecord>, CallbackError> {
    if items.is_empty() {
        return Err(CallbackError::NoRecords(NOT_RECORDS));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, raw)| parse_record(raw, position(i)))
        .collect()
}

const STOCKOUT_LIST_KEY: &str = "stockout_list";

fn position(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Parses one record (an element of the body) at a 1-based position.
fn parse_record(raw: &RawValue, position: u32) -> Result<StockoutRecord, CallbackError> {
    let invalid = |tid: &str, field: &str, rule: String| {
        CallbackError::Invalid(rejection(position, tid, field, rule))
    };
    if first_byte(raw) != b'{' {
        return Err(invalid("", "record", "not a JSON object".to_owned()));
    }
    record_from_object(parse_raw(raw)?, position)
}

/// Reads one record's entries.
fn record_from_object(
    object: RawObject<'_>,
    position: u32,
) -> Result<StockoutRecord, CallbackError> {
    let invalid = |tid: &str, field: &str, rule: String| {
        CallbackError::Invalid(rejection(position, tid, field, rule))
    };
    let mut record = StockoutRecord::default();
    // The first problem is reported, after every scalar was read, so that the message
    // can name the record's tid even when the tid key comes later in the object.
    let mut problem: Option<(String, String)> = None;
    for (key, value) in &object.0 {
        let outcome = match key.as_str() {
            DETAILS_KEY => parse_details(value).map(|lines| record.details_list = lines),
            KUAIDI100_KEY => parse_kuaidi100(value).map(|k| record.kuaidi100_data = k),
            _ => {
                read_into(&mut record, key.as_str(), value).map_err(|rule| (key.to_string(), rule))
            }
        };
        if let Err(found) = outcome {
            problem.get_or_insert(found);
        }
    }
    match problem {
        Some((field, rule)) => Err(invalid(&tid_hint(&record), &field, rule)),
        None => Ok(record),
    }
}

pub use wdtpipe_common::record::tid_hint;

/// Reads one key of an object into its text field, or into `extra` when unknown.
fn read_into<T: Fields>(target: &mut T, key: &str, value: &RawValue) -> Result<(), String> {
    if target.field(key).is_some() {
        target.set_text(key, &scalar_text(value)?);
    } else {
        target.extra_mut().insert(key.to_owned(), json_text(value)?);
    }
    Ok(())
}

fn parse_details(value: &RawValue) -> Result<Vec<StockoutDetail>, (String, String)> {
    let field = |rule: &str| (DETAILS_KEY.to_owned(), rule.to_owned());
    let holder;
    let list: &RawValue = match first_byte(value) {
        b'[' => value,
        b'n' => return Ok(Vec::new()),
        b'"' => {
            let text = string_value(value).map_err(|_| field("not a valid string"))?;
            let text = text.trim();
            if text.is_empty() {
                return Ok(Vec::new());
            }
            holder = serde_json::from_str::<Box<RawValue>>(text)
                .map_err(|e| field(&format!("string does not hold JSON: {e}")))?;
            if first_byte(&holder) != b'[' {
                return Err(field("string does not hold a JSON array of objects"));
            }
            &holder
        }
        _ => return Err(field("must be an array of objects or a string holding one")),
    };
    let items: Vec<&RawValue> =
        serde_json::from_str(list.get()).map_err(|e| field(&format!("not a JSON array: {e}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{DETAILS_KEY}[{}]", i + 1);
            if first_byte(item) != b'{' {
                return Err((path, "not a JSON object".to_owned()));
            }
            let object: RawObject<'_> = serde_json::from_str(item.get())
                .map_err(|e| (path.clone(), format!("not a JSON object: {e}")))?;
            let mut line = StockoutDetail::default();
            for (key, value) in &object.0 {
                read_into(&mut line, key.as_str(), value)
                    .map_err(|rule| (format!("{path}.{key}"), rule))?;
            }
            Ok(line)
        })
        .collect()
}

fn parse_kuaidi100(value: &RawValue) -> Result<Option<Kuaidi100Data>, (String, String)> {
    let field = |rule: &str| (KUAIDI100_KEY.to_owned(), rule.to_owned());
    let holder;
    let object: &RawValue = match first_byte(value) {
        b'{' => value,
        b'n' => return Ok(None),
        b'"' => {
            let text = string_value(value).map_err(|_| field("not a valid string"))?;
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            holder = serde_json::from_str::<Box<RawValue>>(text)
                .map_err(|e| field(&format!("string does not hold JSON: {e}")))?;
            if first_byte(&holder) != b'{' {
                return Err(field("string does not hold a JSON object"));
            }
            &holder
        }
        _ => return Err(field("must be an object or a string holding one")),
    };
    let object: RawObject<'_> = serde_json::from_str(object.get())
        .map_err(|e| field(&format!("not a JSON object: {e}")))?;
    let mut data = Kuaidi100Data::default();
    for (key, value) in &object.0 {
        let path = format!("{KUAIDI100_KEY}.{key}");
        // kuaidi100 sends its route list (`data`) and `routeInfo` as structures; they are
        // carried as compact JSON text rather than rejected.
        if matches!(key.as_str(), "data" | "routeInfo") {
            let text = json_text(value).map_err(|rule| (path.clone(), rule))?;
            data.set_text(key.as_str(), &text);
            continue;
        }
        read_into(&mut data, key.as_str(), value).map_err(|rule| (path, rule))?;
    }
    Ok(Some(data))
}

/// A scalar as text: strings trimmed, numbers verbatim, booleans as 1/0, null as empty.
fn scalar_text(value: &RawValue) -> Result<String, String> {
    match first_byte(value) {
        b'"' => Ok(string_value(value)?.trim().to_owned()),
        b't' => Ok("1".to_owned()),
        b'f' => Ok("0".to_owned()),
        b'n' => Ok(String::new()),
        b'{' => {
            Err("expected a scalar (string, number, boolean or null), got an object".to_owned())
        }
        b'[' => Err("expected a scalar (string, number, boolean or null), got an array".to_owned()),
        _ => Ok(value.get().to_owned()),
    }
}

/// Any value as text: scalars as [`scalar_text`], structures as compact JSON.
fn json_text(value: &RawValue) -> Result<String, String> {
    match first_byte(value) {
        b'{' | b'[' => serde_json::from_str::<serde_json::Value>(value.get())
            .map(|v| v.to_string())
            .map_err(|e| e.to_string()),
        _ => scalar_text(value),
    }
}

fn string_value(value: &RawValue) -> Result<String, String> {
    let raw = value.get();
    // Most strings hold no escape: take the text between the quotes as it is.
    if raw.len() >= 2 && !raw.contains('\\') {
        return Ok(raw[1..raw.len() - 1].to_owned());
    }
    serde_json::from_str::<String>(raw).map_err(|e| e.to_string())
}

/// The first byte of a raw value (serde_json strips surrounding white space from it).
fn first_byte(value: &RawValue) -> u8 {
    value.get().as_bytes().first().copied().unwrap_or(b' ')
}

fn parse_raw<'a, T: Deserialize<'a>>(value: &'a RawValue) -> Result<T, CallbackError> {
    serde_json::from_str(value.get()).map_err(|e| CallbackError::Malformed(e.to_string()))
}

/// A JSON object's entries in body order, values unparsed. Duplicate keys are all kept;
/// reading them in order makes the last one win, as in JavaScript.
struct RawObject<'a>(Vec<(Key<'a>, &'a RawValue)>);

/// An object key, borrowed from the body unless it holds escapes.
type Key<'a> = BorrowedStr<'a>;

impl<'a> RawObject<'a> {
    fn last(&self, key: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == *key)
            .map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((key, value));
                }
                Ok(RawObject(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<StockoutRecord, CallbackError> {
        parse_body(body.as_bytes()).map(|mut v| v.remove(0))
    }

    #[test]
    fn scalars_are_read_as_text() {
        let r = one(r#"{"paid": 19.90, "post_amount": -0, "status": true, "tid": "  T1 ", "nick_name": null, "cod_amount": false}"#)
            .unwrap();
        assert_eq!(r.paid, "19.90");
        assert_eq!(r.post_amount, "-0");
        assert_eq!(r.status, "1");
        assert_eq!(r.cod_amount, "0");
        assert_eq!(r.tid, "T1");
        assert_eq!(r.nick_name, "");
    }

    #[test]
    fn unicode_white_space_is_trimmed() {
        let r = one("{\"tid\": \"\u{3000}T1\u{a0}\\n\"}").unwrap();
        assert_eq!(r.tid, "T1");
    }

    #[test]
    fn the_three_shapes() {
        let rec = r#"{"tid":"A","details_list":[{"num":1}]}"#;
        assert_eq!(parse_body(rec.as_bytes()).unwrap().len(), 1);
        assert_eq!(
            parse_body(format!("[{rec},{rec}]").as_bytes())
                .unwrap()
                .len(),
            2
        );
        let wrapped = format!(r#"{{"code":0,"total_count":2,"stockout_list":[{rec},{rec}]}}"#);
        assert_eq!(parse_body(wrapped.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn empty_and_non_object_requests_are_invalid() {
        for body in [
            "[]",
            r#"{"stockout_list": []}"#,
            r#"{"stockout_list": 5}"#,
            "5",
            "\"x\"",
            "null",
        ] {
            assert!(
                matches!(
                    parse_body(body.as_bytes()),
                    Err(CallbackError::NoRecords(_))
                ),
                "{body}"
            );
        }
        let err = parse_body(br#"[{"tid":"A"}, 7]"#).unwrap_err();
        assert_eq!(err.to_string(), "record 2: record: not a JSON object");
    }

    #[test]
    fn malformed_json_is_malformed() {
        for body in [&b"{"[..], b"", b"{\"a\":1,}", b"\xff\xfe", b"[1 2]"] {
            assert!(matches!(parse_body(body), Err(CallbackError::Malformed(_))));
        }
    }

    #[test]
    fn structures_where_scalars_belong_are_invalid() {
        let err = one(r#"{"tid":"T9","paid":{"v":1}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 1 (tid T9): paid: expected a scalar (string, number, boolean or null), got an object"
        );
        let err = one(r#"{"details_list":[{"num":[1]}],"src_tids":"X1,X2"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 1 (tid X1): details_list[1].num: expected a scalar (string, number, boolean or null), got an array"
        );
    }

    #[test]
    fn details_and_kuaidi100_as_strings() {
        let r = one(r#"{"details_list":"[{\"num\":\"2\"}]","kuaidi100Data":"{\"ischeck\":1,\"data\":[{\"x\":1}]}"}"#)
            .unwrap();
        assert_eq!(r.details_list[0].num, "2");
        let k = r.kuaidi100_data.unwrap();
        assert_eq!(k.ischeck, "1");
        assert_eq!(k.data, r#"[{"x":1}]"#);
        for empty in ["null", "\"\"", "\" \""] {
            let r = one(&format!(
                r#"{{"details_list":{empty},"kuaidi100Data":{empty}}}"#
            ))
            .unwrap();
            assert!(r.details_list.is_empty() && r.kuaidi100_data.is_none());
        }
    }

    #[test]
    fn bad_details_and_kuaidi100_are_invalid() {
        for (body, field) in [
            (r#"{"details_list":5}"#, "details_list"),
            (r#"{"details_list":"{}"}"#, "details_list"),
            (r#"{"details_list":"[1]"}"#, "details_list[1]"),
            (r#"{"details_list":"nope"}"#, "details_list"),
            (r#"{"details_list":{"num":1}}"#, "details_list"),
            (r#"{"kuaidi100Data":[1]}"#, "kuaidi100Data"),
            (r#"{"kuaidi100Data":"[]"}"#, "kuaidi100Data"),
            (r#"{"kuaidi100Data":true}"#, "kuaidi100Data"),
        ] {
            match one(body) {
                Err(CallbackError::Invalid(r)) => assert_eq!(r.field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_keys_are_kept_and_duplicates_last_win() {
        let r = one(r#"{"tid":"A","tid":"B","custom":{"a":1},"flag":2}"#).unwrap();
        assert_eq!(r.tid, "B");
        assert_eq!(r.extra["custom"], r#"{"a":1}"#);
        assert_eq!(r.extra["flag"], "2");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_body(&body);
        }

        /// Arbitrary JSON-looking text never panics it, and every invalid record names
        /// a position within the request.
        #[test]
        fn json_looking_text(body in r#"[\[\]{}",:0-9a-z_ .\-\\]{0,400}"#) {
            if let Err(CallbackError::Invalid(r)) = parse_body(body.as_bytes()) {
                prop_assert!(r.position >= 1);
            }
        }
    }
}
