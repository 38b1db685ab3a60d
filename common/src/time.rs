//! Time text as MAPPING.md accepts it, normalised to `YYYY-MM-DD HH:MM:SS` China time.
//!
//! Accepted: that form itself (a real calendar date and time); RFC 3339 with `T`, optional
//! fractional seconds and `Z` or a `±HH:MM` offset (converted to UTC+8); Unix seconds (10
//! digits) or milliseconds (13 digits). Fractions of a second are dropped. WDT's own "no
//! time" value `0000-00-00 00:00:00` reads as empty.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

/// WDT's "no time" value, also what `pay_time` is when unpaid.
pub const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// Why a non-empty time could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid time (expected YYYY-MM-DD HH:MM:SS, RFC 3339, or Unix seconds/milliseconds)")]
pub struct TimeError;

/// China Standard Time, UTC+8, without daylight saving.
fn china() -> Offset {
    Offset::constant(8)
}

/// Normalises a time. `Ok(None)` for empty text or the zero time.
pub fn normalize_time(text: &str) -> Result<Option<String>, TimeError> {
    Ok(china_time(text)?.map(format))
}

/// The Unix milliseconds of a time in any accepted form (whole seconds). `Ok(None)` for
/// empty text or the zero time.
pub fn unix_ms(text: &str) -> Result<Option<i64>, TimeError> {
    match china_time(text)? {
        Some(datetime) => {
            let ts = china().to_timestamp(datetime).map_err(|_| TimeError)?;
            Ok(Some(ts.as_millisecond()))
        }
        None => Ok(None),
    }
}

/// Reads a time as China civil time.
fn china_time(text: &str) -> Result<Option<DateTime>, TimeError> {
    if text.is_empty() || text == ZERO_TIME {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    let datetime = if bytes.iter().all(u8::is_ascii_digit) {
        let ts = match bytes.len() {
            10 => Timestamp::from_second(number(bytes) as i64),
            13 => Timestamp::from_millisecond(number(bytes) as i64),
            _ => return Err(TimeError),
        }
        .map_err(|_| TimeError)?;
        china().to_datetime(ts)
    } else if bytes.len() == 19 && bytes[10] == b' ' {
        civil(bytes)?
    } else if bytes.len() >= 20 && bytes[10] == b'T' {
        let local = civil(&bytes[..19])?;
        let mut rest = &bytes[19..];
        if let Some(after_dot) = rest.strip_prefix(b".") {
            let digits = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(TimeError);
            }
            rest = &after_dot[digits..];
        }
        let offset = match rest {
            b"Z" => Offset::UTC,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = two_digits(*h1, *h2)?;
                let minutes = two_digits(*m1, *m2)?;
                if hours > 23 || minutes > 59 {
                    return Err(TimeError);
                }
                let seconds = i32::from(hours) * 3600 + i32::from(minutes) * 60;
                let seconds = if *sign == b'-' { -seconds } else { seconds };
                Offset::from_seconds(seconds).map_err(|_| TimeError)?
            }
            _ => return Err(TimeError),
        };
        let ts = offset.to_timestamp(local).map_err(|_| TimeError)?;
        china().to_datetime(ts)
    } else {
        return Err(TimeError);
    };
    Ok(Some(datetime))
}

/// Parses `YYYY-MM-DD?HH:MM:SS` (the separator at index 10 is checked by the caller).
fn civil(b: &[u8]) -> Result<DateTime, TimeError> {
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err(TimeError);
    }
    let year = i16::try_from(digits(&b[0..4])?).map_err(|_| TimeError)?;
    let month = two_digits(b[5], b[6])? as i8;
    let day = two_digits(b[8], b[9])? as i8;
    let hour = two_digits(b[11], b[12])? as i8;
    let minute = two_digits(b[14], b[15])? as i8;
    let second = two_digits(b[17], b[18])? as i8;
    DateTime::new(year, month, day, hour, minute, second, 0).map_err(|_| TimeError)
}

fn digits(b: &[u8]) -> Result<u32, TimeError> {
    if b.iter().all(u8::is_ascii_digit) {
        Ok(number(b) as u32)
    } else {
        Err(TimeError)
    }
}

fn two_digits(a: u8, b: u8) -> Result<u8, TimeError> {
    if a.is_ascii_digit() && b.is_ascii_digit() {
        Ok((a - b'0') * 10 + (b - b'0'))
    } else {
        Err(TimeError)
    }
}

/// The value of an all-digit slice of at most 13 digits.
fn number(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
}

fn format(dt: DateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> Result<Option<String>, TimeError> {
        normalize_time(s)
    }

    #[test]
    fn accepted_forms() {
        let want = Ok(Some("2026-11-27 09:15:02".to_owned()));
        assert_eq!(norm("2026-11-27 09:15:02"), want);
        assert_eq!(norm("2026-11-27T01:15:02Z"), want);
        assert_eq!(norm("2026-11-27T01:15:02.999Z"), want);
        assert_eq!(norm("2026-11-27T09:15:02+08:00"), want);
        assert_eq!(norm("2026-11-26T20:15:02-05:00"), want);
        assert_eq!(norm("1795742102"), want);
        assert_eq!(norm("1795742102999"), want);
        assert_eq!(norm(""), Ok(None));
        assert_eq!(norm(ZERO_TIME), Ok(None));
        assert_eq!(unix_ms("2026-11-27 09:15:02"), Ok(Some(1_795_742_102_000)));
        assert_eq!(unix_ms("2026-11-27T01:15:02Z"), Ok(Some(1_795_742_102_000)));
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "2026-02-30 10:00:00",
            "2026-11-27 24:00:00",
            "2026-11-27 23:59:60",
            "2026/11/27 09:15:02",
            "2026-11-27",
            "2026-11-27T01:15:02",
            "2026-11-27T01:15:02.Z",
            "2026-11-27t01:15:02z",
            "2026-11-27T01:15:02+0800",
            "2026-11-27T01:15:02+24:00",
            "2026-11-27 09:15:02Z",
            "179574210",
            "17957421020",
            "yesterday",
            "-1795742102",
        ] {
            assert_eq!(norm(bad), Err(TimeError), "{bad}");
        }
    }

    proptest! {
        /// Unix seconds, the same instant in RFC 3339 UTC and the China-time text agree.
        #[test]
        fn forms_agree(secs in 1_000_000_000i64..9_999_999_999) {
            let ts = Timestamp::from_second(secs).unwrap();
            let rfc = format!("{}Z", ts.strftime("%Y-%m-%dT%H:%M:%S"));
            let from_secs = norm(&secs.to_string()).unwrap().unwrap();
            let from_millis = norm(&format!("{secs}123")).unwrap().unwrap();
            prop_assert_eq!(&from_secs, &norm(&rfc).unwrap().unwrap());
            prop_assert_eq!(&from_secs, &from_millis);
            prop_assert_eq!(&norm(&from_secs).unwrap().unwrap(), &from_secs);
        }
    }
}
