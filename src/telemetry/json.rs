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
    let mut plain_from = 0;
    for (index, byte) in value.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[plain_from..index]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain_from = index + 1;
    }
    out.push_str(&value[plain_from..]);
}

/// A `fmt::Write` adapter that JSON-escapes everything written through it.
pub struct JsonEscaper<'a>(pub &'a mut String);

impl fmt::Write for JsonEscaper<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_json_str_body(self.0, text);
        Ok(())
    }
}
