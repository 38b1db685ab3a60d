//! The fast path of the callback parser, for the bodies upstream systems send nearly always:
//! a record (or an array of records) whose values are plain scalars, with `details_list` an
//! array of such objects and `kuaidi100Data` one such object, and no string escapes.
//!
//! It reads the body once, without an intermediate key list, borrowing the text of every
//! string and number, and checks the structural limits on the way. Anything else (escapes,
//! nested or string-held JSON, `{"stockout_list": ...}`, a limit reached,
//! malformed JSON) answers `None`: the body then goes through [`check_shape`] and
//! [`parse_body`], which read every shape and report what is wrong. Whatever it answers is
//! exactly what those two answer for the same body; the property tests below hold it to that.
//!
//! [`check_shape`]: crate::parse::shape::check_shape
//! [`parse_body`]: crate::parse::full::parse_body

use crate::record::{DETAILS_KEY, Fields, KUAIDI100_KEY};
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord};

/// How deep a plain body nests: record object, `details_list` array, line object.
const PLAIN_DEPTH: usize = 3;

/// Parses a plain body, or answers `None` when the body needs the full parser. The limits
/// are those of [`crate::parse::shape::check_shape`].
pub fn parse_plain(
    body: &[u8],
    max_depth: usize,
    max_string_bytes: usize,
) -> Option<Vec<StockoutRecord>> {
    if max_depth < PLAIN_DEPTH {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = Reader {
        text,
        at: 0,
        max_string_bytes,
    };
    reader.skip_ws();
    let records = match reader.next()? {
        b'{' => vec![reader.record()?],
        b'[' => {
            let mut records = Vec::new();
            reader.items(|reader| {
                reader.expect(b'{')?;
                records.push(reader.record()?);
                Some(())
            })?;
            if records.is_empty() {
                return None;
            }
            records
        }
        _ => return None,
    };
    reader.skip_ws();
    (reader.at == text.len()).then_some(records)
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
    max_string_bytes: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON white space: space, tab, line feed, carriage return.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One record's members, after its `{`.
    fn record(&mut self) -> Option<StockoutRecord> {
        let mut record = StockoutRecord::default();
        self.members(|reader, key| match key {
            DETAILS_KEY => {
                record.details_list = reader.details()?;
                Some(())
            }
            KUAIDI100_KEY => {
                record.kuaidi100_data = reader.kuaidi100()?;
                Some(())
            }
            // A wrapper of records: the full parser reads it.
            "stockout_list" => None,
            _ => reader.scalar_into(&mut record, key),
        })?;
        Some(record)
    }

    /// `details_list`: an array of plain objects, or null for none.
    fn details(&mut self) -> Option<Vec<StockoutDetail>> {
        match self.next()? {
            b'n' => {
                self.literal("ull")?;
                Some(Vec::new())
            }
            b'[' => {
                let mut lines = Vec::new();
                self.items(|reader| {
                    reader.expect(b'{')?;
                    let mut line = StockoutDetail::default();
                    reader.members(|reader, key| reader.scalar_into(&mut line, key))?;
                    lines.push(line);
                    Some(())
                })?;
                Some(lines)
            }
            _ => None,
        }
    }

    /// `kuaidi100Data`: a plain object, or null for none. (Its `data` and `routeInfo` may
    /// hold structures, which the full parser carries as JSON text.)
    fn kuaidi100(&mut self) -> Option<Option<Kuaidi100Data>> {
        match self.next()? {
            b'n' => {
                self.literal("ull")?;
                Some(None)
            }
            b'{' => {
                let mut data = Kuaidi100Data::default();
                self.members(|reader, key| reader.scalar_into(&mut data, key))?;
                Some(Some(data))
            }
            _ => None,
        }
    }

    /// An object's members after its `{`, up to and including its `}`. Each value is read
    /// by `member`, given the key; a later duplicate key overwrites, as in the full parser.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.separated(b'}', |reader| {
            reader.expect(b'"')?;
            let key = reader.string()?;
            reader.skip_ws();
            reader.expect(b':')?;
            reader.skip_ws();
            member(reader, key)
        })
    }

    /// An array's items after its `[`, up to and including its `]`.
    fn items(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.separated(b']', item)
    }

    /// Comma-separated elements, each read by `element`, up to and including `close`; none
    /// at all is fine, a trailing comma is not.
    fn separated(
        &mut self,
        close: u8,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.skip_ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            element(self)?;
            self.skip_ws();
            match self.next()? {
                b',' => {}
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// Reads a scalar into the text field of `key`, or into `extra` when the schema does
    /// not know the key: strings trimmed, numbers verbatim, booleans as 1/0, null as empty.
    fn scalar_into<T: Fields>(&mut self, target: &mut T, key: &str) -> Option<()> {
        let text = match self.next()? {
            b'"' => self.string()?.trim(),
            b't' => self.literal("rue").map(|()| "1")?,
            b'f' => self.literal("alse").map(|()| "0")?,
            b'n' => self.literal("ull").map(|()| "")?,
            b'-' | b'0'..=b'9' => {
                self.at -= 1;
                self.number()?
            }
            _ => return None,
        };
        target.set_text(key, text);
        Some(())
    }

    fn literal(&mut self, rest: &str) -> Option<()> {
        let end = self.at + rest.len();
        if self.bytes().get(self.at..end)? != rest.as_bytes() {
            return None;
        }
        self.at = end;
        Some(())
    }

    /// A string's text after its opening quote, up to and including the closing one. Only
    /// strings without escapes or control characters, within the length limit.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let length = memchr::memchr2(b'"', b'\\', &self.bytes()[start..])?;
        let end = start + length;
        if self.bytes()[end] != b'"'
            || length > self.max_string_bytes
            || self.bytes()[start..end].iter().any(|b| *b < 0x20)
        {
            return None;
        }
        self.at = end + 1;
        // Both ends sit next to an ASCII quote, so they are character boundaries.
        self.text.get(start..end)
    }

    /// A JSON number, as its text: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        self.text.get(start..self.at)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::full::parse_body;
    use crate::parse::shape::check_shape;

    const DEPTH: usize = 32;
    const STRING: usize = 1024 * 1024;

    /// What the full path answers for a body the fast path read.
    fn assert_same(body: &[u8], plain: &[StockoutRecord]) {
        assert_eq!(check_shape(body, DEPTH, STRING), Ok(()));
        assert_eq!(
            parse_body(body).as_deref(),
            Ok(plain),
            "{}",
            String::from_utf8_lossy(body)
        );
    }

    #[test]
    fn plain_records_are_read_as_the_full_parser_reads_them() {
        for body in [
            r#"{"tid":" T1 ","paid":19.90,"post_amount":-0,"status":true,"cod_amount":false,"nick_name":null,"custom":2.5e-3}"#,
            r#" [ {"tid":"A","details_list":[{"num":1,"oid":"O1","x":"y"},{}]} , {"tid":"B","details_list":null} ] "#,
            "{\"tid\":\"\u{3000}T1\u{a0}\",\"tid\":\"T2\",\"details_list\":[{\"num\":\"1\"}],\"details_list\":[]}",
            "{}",
            "{\"receiver_name\":\"张三 😀\"}",
            r#"{"kuaidi100Data":{"ischeck":1,"data":"[]","routeInfo":null,"x":"y"},"kuaidi100Data":null}"#,
            r#"{"kuaidi100Data":{"nu":" SF1 ","nu":"SF2"}}"#,
        ] {
            let plain = parse_plain(body.as_bytes(), DEPTH, STRING)
                .unwrap_or_else(|| panic!("not read as plain: {body}"));
            assert_same(body.as_bytes(), &plain);
        }
    }

    #[test]
    fn every_plain_fixture_takes_the_fast_path() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/callbacks");
        let mut plain = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            if let Some(records) = parse_plain(&body, DEPTH, STRING) {
                assert_same(&body, &records);
                plain += 1;
            }
        }
        // Most samples are plain; those with escapes, kuaidi100Data or a wrapper are not.
        assert!(plain >= 12, "{plain} fixtures read as plain");
        let basic = include_bytes!("../../../tests/fixtures/callbacks/01-basic.json");
        assert!(parse_plain(basic, DEPTH, STRING).is_some());
    }

    #[test]
    fn anything_else_goes_to_the_full_parser() {
        for body in [
            r#"{"tid":"a\"b"}"#,
            r#"{"tid":"A","kuaidi100Data":{"data":[{"x":1}]}}"#,
            r#"{"tid":"A","kuaidi100Data":"{}"}"#,
            r#"{"stockout_list":[{"tid":"A"}]}"#,
            r#"{"details_list":"[{\"num\":1}]"}"#,
            r#"{"details_list":[[1]]}"#,
            r#"{"custom":{"a":1}}"#,
            r#"{"paid":01}"#,
            r#"{"paid":1.}"#,
            r#"{"paid":.5}"#,
            r#"{"paid":1e}"#,
            r#"{"paid":+1}"#,
            r#"{"paid":tru}"#,
            r#"{"tid":"A",}"#,
            r#"{"tid":"A"} x"#,
            r#"[]"#,
            r#"[{"tid":"A"},7]"#,
            "{\"tid\":\"a\u{1}b\"}",
            "{\"tid\":\"A\"}\u{c}",
            "",
            "5",
        ] {
            assert_eq!(parse_plain(body.as_bytes(), DEPTH, STRING), None, "{body}");
        }
        assert_eq!(parse_plain(b"{\"tid\":\"\xff\"}", DEPTH, STRING), None);
    }

    #[test]
    fn limits_send_the_body_to_the_full_path() {
        let body = br#"{"tid":"0123456789","details_list":[{"num":1}]}"#;
        assert!(parse_plain(body, 3, 12).is_some());
        assert_eq!(parse_plain(br#"{"tid":"0123456789abc"}"#, 3, 12), None);
        assert_eq!(parse_plain(body, 2, 12), None);
        assert_eq!(parse_plain(br#"{"0123456789x":1}"#, 3, 10), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::parse::full::parse_body;
    use crate::parse::shape::check_shape;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("tid".to_owned()),
            Just("paid".to_owned()),
            Just("src_tids".to_owned()),
            Just("num".to_owned()),
            Just("oid".to_owned()),
            Just("custom".to_owned()),
            Just("kuaidi100Data".to_owned()),
            "[a-z_]{1,8}",
        ]
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            // Plain strings (with Unicode white space to trim), and now and then a raw
            // backslash, quote or control character.
            6 => "[ a-zA-Z0-9\u{3000}\u{a0}\u{4e2d}]{0,8}".prop_map(|s| format!("\"{s}\"")),
            1 => "[ a-z\\\\\"\u{1}]{0,4}".prop_map(|s| format!("\"{s}\"")),
            3 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            1 => "[-+.0-9eE]{1,5}",
            1 => Just("true".to_owned()),
            1 => Just("false".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("{}".to_owned()),
            1 => Just("[1]".to_owned()),
        ]
    }

    fn object(values: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop::collection::vec((key(), values, "[ \n]{0,1}"), 0..6).prop_map(|members| {
            let members: Vec<String> = members
                .into_iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\":{ws}{v}"))
                .collect();
            format!("{{{}}}", members.join(","))
        })
    }

    fn record() -> impl Strategy<Value = String> {
        let lines = prop_oneof![
            prop::collection::vec(object(scalar()), 0..3)
                .prop_map(|l| format!("[{}]", l.join(","))),
            Just("null".to_owned()),
            Just("\"\"".to_owned()),
        ];
        // Record values: scalars, sometimes an object of scalars (a `kuaidi100Data`).
        let values = prop_oneof![4 => scalar().boxed(), 1 => object(scalar()).boxed()];
        (object(values), prop::option::of(lines)).prop_map(|(object, lines)| match lines {
            Some(lines) if object.len() > 2 => {
                format!("{{\"details_list\":{lines},{}", &object[1..])
            }
            Some(lines) => format!("{{\"details_list\":{lines}}}"),
            None => object,
        })
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            record(),
            prop::collection::vec(record(), 0..3).prop_map(|r| format!(" [{}] ", r.join(","))),
        ]
    }

    proptest! {
        // About a fifth of the generated bodies are plain; 2,048 cases compare ~400.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// On generated record bodies the fast path, when it answers, answers what the full
        /// path does (limits included).
        #[test]
        fn same_as_the_full_parser(body in body()) {
            if let Some(records) = parse_plain(body.as_bytes(), 32, 1 << 20) {
                prop_assert_eq!(check_shape(body.as_bytes(), 32, 1 << 20), Ok(()));
                prop_assert_eq!(parse_body(body.as_bytes()), Ok(records));
            }
        }

        /// On arbitrary bytes it never panics, and agrees when it answers.
        #[test]
        fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Some(records) = parse_plain(&body, 32, 1 << 20) {
                prop_assert_eq!(parse_body(&body), Ok(records));
            }
        }
    }
}
