//! The stockout record's field tables (JSON key ↔ proto field), its canonical JSON form and
//! the `record_id` derived from it.
//!
//! The canonical form is what makes the same record sent twice (reordered keys, numbers as
//! strings, details as a string) produce the same id: every non-empty field as a JSON
//! string, keys sorted, lines in order, compact.

use std::collections::HashMap;
pub use wdtpipe_common::record::{DETAILS_KEY, Fields, KUAIDI100_KEY};
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord};

/// The canonical JSON text of a record (see the module docs): written directly, keys
/// sorted by byte order, non-empty text fields only.
pub fn canonical_json(record: &StockoutRecord) -> String {
    let mut out = String::with_capacity(4096);
    let mut others = extra_entries(&record.extra);
    if !record.details_list.is_empty() {
        others.push((DETAILS_KEY, Entry::Lines(&record.details_list)));
    }
    if let Some(kuaidi) = &record.kuaidi100_data {
        others.push((KUAIDI100_KEY, Entry::Kuaidi(kuaidi)));
    }
    write_object(&mut out, record.sorted_fields(), others);
    out
}

/// md5 (lowercase hex) of the record's canonical JSON.
pub fn record_id(record: &StockoutRecord) -> String {
    wdtpipe_common::sign::md5_hex(canonical_json(record).as_bytes())
}

enum Entry<'a> {
    Text(&'a str),
    Lines(&'a [StockoutDetail]),
    Kuaidi(&'a Kuaidi100Data),
}

/// The non-empty keys the schema does not know (rare), unsorted.
fn extra_entries(extra: &HashMap<String, String>) -> Vec<(&str, Entry<'_>)> {
    extra
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), Entry::Text(v)))
        .collect()
}

/// Writes an object of the schema's fields (already in key order) and `others`, merged in
/// key order.
fn write_object<'a>(
    out: &mut String,
    fields: impl Iterator<Item = (&'static str, &'a str)>,
    mut others: Vec<(&'a str, Entry<'a>)>,
) {
    others.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut fields = fields.peekable();
    let mut others = others.into_iter().peekable();
    out.push('{');
    let mut first = true;
    loop {
        let field_first = match (fields.peek(), others.peek()) {
            (Some((field, _)), Some((other, _))) => field.as_bytes() <= other.as_bytes(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (key, value) = if field_first {
            fields
                .next()
                .map(|(key, text)| (key as &'a str, Entry::Text(text)))
        } else {
            others.next()
        }
        .expect("peeked");
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, key);
        out.push(':');
        match value {
            Entry::Text(text) => write_string(out, text),
            Entry::Lines(lines) => {
                out.push('[');
                for (n, line) in lines.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    write_object(out, line.sorted_fields(), extra_entries(&line.extra));
                }
                out.push(']');
            }
            Entry::Kuaidi(kuaidi) => {
                write_object(out, kuaidi.sorted_fields(), extra_entries(&kuaidi.extra))
            }
        }
    }
    out.push('}');
}

/// How each byte is written inside a JSON string: 0 as itself, `u` as `\u00XX`, any other
/// byte `c` as `\c` (serde_json's escapes).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `text` as a JSON string exactly as serde_json writes it (non-ASCII unescaped). Runs that
/// need no escape (nearly all of a record) are copied whole.
fn write_string(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let mut plain = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        // Every escaped byte is ASCII, so `at` is a char boundary.
        out.push_str(&text[plain..at]);
        if escape == b'u' {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.push('\\');
            out.push(char::from(escape));
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written canonical form is what serde_json would write for the same object.
    #[test]
    fn canonical_form_matches_serde_json() {
        let mut record = StockoutRecord {
            tid: "T\"1\\\n\u{1}\t中".into(),
            paid: "12.50".into(),
            ..StockoutRecord::default()
        };
        record.extra.insert("zz".into(), "x".into());
        record.extra.insert("aa".into(), "y".into());
        record.details_list.push(StockoutDetail {
            num: "2".into(),
            ..StockoutDetail::default()
        });
        record.kuaidi100_data = Some(Kuaidi100Data {
            ischeck: "1".into(),
            ..Kuaidi100Data::default()
        });
        let expected = serde_json::json!({
            "aa": "y", "paid": "12.50", "tid": "T\"1\\\n\u{1}\t中", "zz": "x",
            "details_list": [{"num": "2"}], "kuaidi100Data": {"ischeck": "1"},
        })
        .to_string();
        assert_eq!(canonical_json(&record), expected);
    }

    /// Every ASCII character, alone and between multi-byte text, escapes as serde_json's.
    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut texts: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        texts.push((0u8..0x80).map(char::from).collect());
        texts.extend((0u8..0x80).map(|b| format!("中{}é😀", char::from(b))));
        texts.push(String::new());
        for text in texts {
            let mut out = String::new();
            write_string(&mut out, &text);
            assert_eq!(out, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    /// Keys of every table, known and unknown, that the generated records below draw from.
    const KEYS: [&str; 12] = [
        "tid",
        "paid",
        "shop_no",
        "md5_str",
        "src_tid",
        "num",
        "nu",
        "com",
        "routeInfo",
        "a",
        "zz_extra",
        "Tid",
    ];

    fn set<T: Fields>(message: &mut T, key: &str, value: &str) {
        match message.field_mut(key) {
            Some(field) => *field = value.to_owned(),
            None => {
                message.extra_mut().insert(key.to_owned(), value.to_owned());
            }
        }
    }

    fn object(pairs: &[(usize, String)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (KEYS[*k].to_owned(), serde_json::Value::from(v.as_str())))
            .collect()
    }

    proptest::proptest! {
        /// Any record (schema fields, unknown keys, lines, tracking data, texts to escape)
        /// has the canonical form serde_json writes for the same non-empty texts.
        #[test]
        fn any_record_has_serde_jsons_canonical_form(
            top in proptest::collection::vec((0..KEYS.len(), "[a-z\\\\\"\u{0}-\u{1f}中]{0,6}"), 0..10),
            lines in proptest::collection::vec(
                proptest::collection::vec((0..KEYS.len(), "[a-z\"中]{0,4}"), 0..5), 0..3),
            kuaidi in proptest::option::of(
                proptest::collection::vec((0..KEYS.len(), "[a-z\"中]{0,4}"), 0..5)),
        ) {
            // A key set twice keeps its last value, as in the expected object.
            let mut record = StockoutRecord::default();
            for (k, v) in &top {
                set(&mut record, KEYS[*k], v);
            }
            let mut expected = serde_json::Map::new();
            let last: std::collections::BTreeMap<usize, String> = top.iter().cloned().collect();
            expected.extend(object(&last.into_iter().collect::<Vec<_>>()));
            if !lines.is_empty() {
                let mut values = Vec::new();
                for pairs in &lines {
                    let mut line = StockoutDetail::default();
                    for (k, v) in pairs {
                        set(&mut line, KEYS[*k], v);
                    }
                    let last: std::collections::BTreeMap<usize, String> =
                        pairs.iter().cloned().collect();
                    values.push(serde_json::Value::Object(object(
                        &last.into_iter().collect::<Vec<_>>(),
                    )));
                    record.details_list.push(line);
                }
                expected.insert(DETAILS_KEY.into(), serde_json::Value::Array(values));
            }
            if let Some(pairs) = &kuaidi {
                let mut data = Kuaidi100Data::default();
                for (k, v) in pairs {
                    set(&mut data, KEYS[*k], v);
                }
                let last: std::collections::BTreeMap<usize, String> =
                    pairs.iter().cloned().collect();
                expected.insert(
                    KUAIDI100_KEY.into(),
                    serde_json::Value::Object(object(&last.into_iter().collect::<Vec<_>>())),
                );
                record.kuaidi100_data = Some(data);
            }
            proptest::prop_assert_eq!(
                canonical_json(&record),
                serde_json::Value::Object(expected).to_string()
            );
        }
    }
}
