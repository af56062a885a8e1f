//! Time stamp strings: `yyyy-MM-dd HH:mm:ss` (UTC) and `yyyy-MM-dd HH:mm:ss ±HH:mm`.
//!
//! Parsed by hand, strictly: this runs per event when `aggregate by` names a string
//! attribute, so it must not allocate, and any other form is an error, never a guess.

use super::BadTime;

/// Epoch milliseconds of the first and last instants this engine accepts: years -9998 to
/// 9998, so that every bucket of every duration, in every zone, stays inside the range the
/// time-zone library can represent (about ±9999 years).
pub const MIN_MS: i64 = -377_673_580_800_000;
pub const MAX_MS: i64 = 253_370_764_799_999;

/// The fields of a time stamp or a `within` pattern; a field is `None` where the text
/// has `**`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub year: i32,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub hour: Option<u32>,
    pub minute: Option<u32>,
    pub second: Option<u32>,
    /// Offset from UTC in seconds (`+05:30` is 19800); 0 when absent.
    pub offset_secs: i32,
}

/// Parses an exact time stamp (no wildcards) into epoch milliseconds.
pub fn parse(text: &str) -> Option<i64> {
    let f = parse_fields(text, false).ok()?;
    to_epoch_ms(&f)
}

/// Parses the form `yyyy-MM-dd HH:mm:ss[ ±HH:mm]`; with `wildcards`, any of the two-digit
/// fields may be `**`. Says what is wrong otherwise.
pub fn parse_fields(text: &str, wildcards: bool) -> Result<Fields, BadTime> {
    let b = text.as_bytes();
    if b.len() != 19 && b.len() != 26 {
        return Err(form_error(text));
    }
    let sep_ok = b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':';
    if !sep_ok {
        return Err(form_error(text));
    }
    let year = digits(&b[0..4]).ok_or_else(|| form_error(text))? as i32;
    let two = |at: usize| -> Result<Option<u32>, BadTime> {
        let s = &b[at..at + 2];
        if s == b"**" {
            if wildcards { Ok(None) } else { Err(form_error(text)) }
        } else {
            digits(s).map(Some).ok_or_else(|| form_error(text))
        }
    };
    let f = Fields {
        year,
        month: two(5)?,
        day: two(8)?,
        hour: two(11)?,
        minute: two(14)?,
        second: two(17)?,
        offset_secs: if b.len() == 26 {
            if b[19] != b' ' || !(b[20] == b'+' || b[20] == b'-') || b[23] != b':' {
                return Err(form_error(text));
            }
            let h = digits(&b[21..23]).ok_or_else(|| form_error(text))?;
            let m = digits(&b[24..26]).ok_or_else(|| form_error(text))?;
            if h > 18 || m > 59 {
                return Err(BadTime(format!("`{text}` has an offset out of range (at most ±18:00)")));
            }
            let secs = (h * 3600 + m * 60) as i32;
            if b[20] == b'-' { -secs } else { secs }
        } else {
            0
        },
    };
    check_ranges(&f).map_err(|what| BadTime(format!("`{text}` has {what}")))?;
    Ok(f)
}

fn form_error(text: &str) -> BadTime {
    BadTime(format!("`{text}` is not a time stamp of the form yyyy-MM-dd HH:mm:ss or yyyy-MM-dd HH:mm:ss ±HH:mm"))
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn check_ranges(f: &Fields) -> Result<(), &'static str> {
    if let Some(m) = f.month
        && !(1..=12).contains(&m)
    {
        return Err("a month out of range");
    }
    if let Some(d) = f.day {
        let max = f.month.map(|m| days_in_month(f.year, m)).unwrap_or(31);
        if d == 0 || d > max {
            return Err("a day out of range for its month");
        }
    }
    if f.hour.is_some_and(|h| h > 23) {
        return Err("an hour out of range");
    }
    if f.minute.is_some_and(|m| m > 59) {
        return Err("a minute out of range");
    }
    if f.second.is_some_and(|s| s > 59) {
        return Err("a second out of range");
    }
    Ok(())
}

/// Epoch milliseconds of the instant the fields name; wildcard fields count as their
/// smallest value. `None` when the result is outside [`MIN_MS`, `MAX_MS`].
pub fn to_epoch_ms(f: &Fields) -> Option<i64> {
    let days = days_from_civil(f.year, f.month.unwrap_or(1), f.day.unwrap_or(1));
    let secs = days * 86_400
        + f.hour.unwrap_or(0) as i64 * 3600
        + f.minute.unwrap_or(0) as i64 * 60
        + f.second.unwrap_or(0) as i64
        - f.offset_secs as i64;
    let ms = secs.checked_mul(1000)?;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms)
}

pub fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = y as i64 - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// `yyyy-MM-dd HH:mm:ss.SSS` in UTC, for messages and the table output.
pub fn format_utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offset_forms() {
        assert_eq!(parse("2017-06-01 04:05:50"), Some(1_496_289_950_000));
        assert_eq!(parse("2017-06-01 09:35:50 +05:30"), Some(1_496_289_950_000));
        assert_eq!(parse("2017-05-31 23:05:50 -05:00"), Some(1_496_289_950_000));
        assert_eq!(parse("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse("1969-12-31 23:59:59"), Some(-1000));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "June 1, 2017 4:05:50 AM",
            "2017-06-01T04:05:50",
            "2017-06-01 04:05",
            "2017-06-01 04:05:50.123",
            "2017-06-01 04:05:50 +0530",
            "2017-13-01 04:05:50",
            "2017-02-29 04:05:50",
            "2017-06-01 24:00:00",
            "2017-06-01 04:60:00",
            "2017-06-** **:**:**",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("2016-02-29 00:00:00"), Some(1_456_704_000_000));
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 18_321, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_utc(1_496_289_950_000), "2017-06-01 04:05:50");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59.999");
    }

    #[test]
    fn range_bounds_are_the_supported_years() {
        assert_eq!(to_epoch_ms(&parse_fields("9998-12-31 23:59:59", false).unwrap()), Some(MAX_MS - 999));
        assert_eq!(to_epoch_ms(&parse_fields("9999-01-01 00:00:00", false).unwrap()), None);
        assert_eq!(days_from_civil(-9998, 1, 1) * 86_400_000, MIN_MS);
    }
}
