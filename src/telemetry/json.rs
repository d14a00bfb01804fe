//! JSON text and RFC 3339 timestamps, written by hand into a `String` so
//! formatting a log line needs no intermediate values.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

/// Writes `timestamp_ns` as RFC 3339 in UTC with nine fraction digits, for
/// example `2026-12-04T15:31:00.000000123Z`. An `i64` of nanoseconds spans
/// the years 1677 to 2262, so the year always has four digits.
pub fn write_rfc3339_nanos(out: &mut String, timestamp_ns: i64) {
    let seconds = timestamp_ns.div_euclid(1_000_000_000);
    let nanos = timestamp_ns.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);

    // Digits are placed by hand: `write!` with seven arguments costs several
    // times more, and this runs for every log line.
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], second_of_day / 3600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    put_digits(&mut text[20..29], nanos);
    out.push_str(std::str::from_utf8(&text).expect("only ASCII digits were written"));
}

/// Writes the decimal digits of a non-negative `value` into `slot`,
/// right-aligned and zero-padded; higher digits that do not fit are dropped.
fn put_digits(slot: &mut [u8], mut value: i64) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month,
/// day), with Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `value` as a quoted JSON string.
pub fn write_json_str(out: &mut String, value: &str) {
    out.push('"');
    write_json_str_body(out, value);
    out.push('"');
}

/// Writes `value` JSON-escaped, without the surrounding quotes.
pub fn write_json_str_body(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut plain_from = 0;
    let mut index = 0;
    while index < bytes.len() {
        // Most text needs no escaping, so eight bytes are checked at a time.
        // A shorter tail is padded with spaces, which need no escaping.
        let word = match bytes.get(index..index + 8) {
            Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice")),
            None => {
                let mut padded = [b' '; 8];
                padded[..bytes.len() - index].copy_from_slice(&bytes[index..]);
                u64::from_le_bytes(padded)
            }
        };
        if !word_needs_escape(word) {
            index += 8;
            continue;
        }
        let byte = bytes[index];
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => {
                index += 1;
                continue;
            }
        };
        out.push_str(&value[plain_from..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        index += 1;
        plain_from = index;
    }
    out.push_str(&value[plain_from..]);
}

/// Returns whether any byte of `word` is `"`, `\` or a control character
/// below 0x20, with the "has a byte less than n" and "has a zero byte" bit
/// tricks. Bytes of 0x80 and above (UTF-8 sequences) never match.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let has_byte_below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH_BITS != 0;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    has_byte_below(word, 0x20) || has_byte_below(quote, 1) || has_byte_below(backslash, 1)
}

/// Appends the decimal digits of `value`, without the `fmt` machinery.
pub fn write_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[start..]).expect("only ASCII digits were written"));
}

/// Appends the decimal digits of `value`, with a leading `-` when negative.
pub fn write_i64(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    write_u64(out, value.unsigned_abs());
}

/// A `fmt::Write` adapter that JSON-escapes everything written through it.
pub struct JsonEscaper<'a>(pub &'a mut String);

impl fmt::Write for JsonEscaper<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_json_str_body(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json_at_every_offset() {
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', 'é', ' ', '\u{7f}',
        ];
        for special in specials {
            for offset in 0..20 {
                let mut text = "a".repeat(offset);
                text.push(special);
                text.push_str(&"b".repeat(19 - offset));
                let mut out = String::new();
                write_json_str(&mut out, &text);
                let expected = serde_json::to_string(&text).unwrap();
                assert_eq!(out, expected, "{text:?}");
            }
        }
    }

    #[test]
    fn integers_match_display() {
        for value in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = String::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
        for value in [0, -1, -10, i64::MIN, i64::MAX] {
            let mut out = String::new();
            write_i64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
    }
}
