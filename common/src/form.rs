//! `application/x-www-form-urlencoded`, the body of every WDT call, written and read the way
//! the WHATWG URL standard (and so `serde_urlencoded`) does, byte for byte. A `trade_push`
//! body carries up to 50 trades of JSON, so escaping copies the runs of bytes that need none
//! whole, and both directions look bytes up in tables rather than matching them.

/// Bytes written as themselves; everything else but the space (`+`) becomes `%XX`.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
        byte += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `key=value` pairs joined by `&`, each side escaped.
pub fn encode<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = Vec::new();
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        escape_into(&mut out, key.as_bytes());
        out.push(b'=');
        escape_into(&mut out, value.as_bytes());
    }
    // Only ASCII is ever written.
    String::from_utf8(out).unwrap_or_default()
}

fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + text.len() / 2);
    let mut run = 0;
    for (i, &byte) in text.iter().enumerate() {
        if UNRESERVED[usize::from(byte)] {
            continue;
        }
        out.extend_from_slice(&text[run..i]);
        if byte == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&text[run..]);
}

/// The pairs of a form body in order: empty pieces between `&` are skipped, a piece without
/// `=` is a name with an empty value, `+` is a space, `%XX` a byte (a `%` not followed by two
/// hex digits stays as it is), and bytes that are not UTF-8 become U+FFFD.
pub fn decode(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &[][..]),
            };
            (unescape(name), unescape(value))
        })
        .collect()
}

fn unescape(text: &[u8]) -> String {
    // Never longer than the text: written by index, then cut to length.
    let mut out = vec![0; text.len()];
    let (mut read, mut written) = (0, 0);
    while let Some(&byte) = text.get(read) {
        out[written] = match byte {
            b'+' => b' ',
            b'%' => {
                let digit =
                    |at: usize| text.get(at).map_or(INVALID, |&b| HEX_VALUE[usize::from(b)]);
                let (high, low) = (digit(read + 1), digit(read + 2));
                if high | low == INVALID {
                    b'%'
                } else {
                    read += 2;
                    high << 4 | low
                }
            }
            _ => byte,
        };
        read += 1;
        written += 1;
    }
    out.truncate(written);
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

const INVALID: u8 = 0xFF;

/// The value of each byte as a hex digit, [`INVALID`] when it is none.
const HEX_VALUE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every byte value, alone and between unreserved runs, encodes as serde_urlencoded does.
    #[test]
    fn encodes_every_character_like_serde_urlencoded() {
        for c in (0u32..0x800)
            .chain([0x4e2d, 0x1f600])
            .filter_map(char::from_u32)
        {
            let value = format!("ab{c}cd{c}");
            let fields = [("k ey", value.as_str()), ("trade_list", "[{\"a\":1}]")];
            assert_eq!(
                encode(fields),
                serde_urlencoded::to_string(fields).unwrap(),
                "{c:?}"
            );
        }
    }

    /// A WDT body reads back to its fields.
    #[test]
    fn decodes_what_it_encodes() {
        let fields = [
            ("sid", "demo"),
            ("trade_list", r#"[{"tid":"T 1","buyer_nick":"张三+%"}]"#),
            ("sign", ""),
        ];
        let decoded = decode(encode(fields).as_bytes());
        let decoded: Vec<(&str, &str)> = decoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(decoded, fields);
    }

    /// Odd bodies: empty pieces, no `=`, stray `%`, `+` escaped and not, bad UTF-8.
    #[test]
    fn decodes_odd_bodies_like_serde_urlencoded() {
        let bodies: &[&[u8]] = &[
            b"",
            b"&&a=1&&b&=2&c==3",
            b"a=%&b=%4&c=%4g&d=%41%42&e=%%41&f=%+41",
            b"a=1+2%2B3&b+c=%20",
            b"a=%FF%FE&b=%E4%B8%AD&c=\xff\xfe",
            b"a=%e4%b8%ad%2",
        ];
        for body in bodies {
            let expected: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap();
            assert_eq!(decode(body), expected, "{}", String::from_utf8_lossy(body));
        }
    }

    proptest! {
        /// Any text encodes as serde_urlencoded does, and any body decodes as it does.
        #[test]
        fn matches_serde_urlencoded(key in "\\PC{0,8}", value in "\\PC{0,40}", body in proptest::collection::vec(any::<u8>(), 0..60)) {
            let fields = [(key.as_str(), value.as_str())];
            prop_assert_eq!(encode(fields), serde_urlencoded::to_string(fields).unwrap());
            let expected: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
            prop_assert_eq!(decode(&body), expected);
        }

        /// Bodies made of the characters forms are built from decode as serde_urlencoded does.
        #[test]
        fn form_shaped_bodies(body in "[a-z0-9%+&=A-F]{0,60}") {
            let expected: Vec<(String, String)> = serde_urlencoded::from_bytes(body.as_bytes()).unwrap();
            prop_assert_eq!(decode(body.as_bytes()), expected);
        }
    }
}
