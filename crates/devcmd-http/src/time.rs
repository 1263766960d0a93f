//! The platform's time format, `yyyyMMdd'T'HHmmss'Z'` (UTC, whole seconds).

use devcmd_core::Timestamp;

use crate::error::ApiError;

/// Length of a formatted time (`20170222T164000Z`).
pub const TIME_LEN: usize = 16;

/// Parses `yyyyMMdd'T'HHmmss'Z'` into milliseconds since the Unix epoch.
/// Any other pattern, and dates that do not exist (Feb 30, hour 24), are
/// refused with 100022. Years before 1970 are refused too: nothing the
/// platform stores is older.
pub fn parse_time(field: &'static str, s: &str) -> Result<Timestamp, ApiError> {
    let bad = || ApiError::invalid(field, "must be yyyyMMdd'T'HHmmss'Z' (UTC)");
    let b = s.as_bytes();
    if b.len() != TIME_LEN || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let num = |from: usize, to: usize| -> Result<u32, ApiError> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + u32::from(c - b'0'))
            } else {
                Err(bad())
            }
        })
    };
    let (year, month, day) = (num(0, 4)?, num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (num(9, 11)?, num(11, 13)?, num(13, 15)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    Ok(Timestamp::from_millis(secs * 1000))
}

/// Formats a time as `yyyyMMdd'T'HHmmss'Z'`, dropping milliseconds.
pub fn format_time(t: Timestamp) -> String {
    PlatformTime(t).to_string()
}

/// A time that displays in the platform's format, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformTime(pub Timestamp);

impl std::fmt::Display for PlatformTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_millis() / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"00000000T000000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                // v % 10 < 10 fits a u8.
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        // Years past 9999 (timestamps near u64::MAX ms) wrap in 4 digits; the
        // core never stores such times.
        put(0, 4, year);
        put(4, 2, month);
        put(6, 2, day);
        put(9, 2, rem / 3600);
        put(11, 2, rem % 3600 / 60);
        put(13, 2, rem % 60);
        // Only ASCII digits, 'T' and 'Z' were written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
    }
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (the well-known era-based conversion; `year >= 1970`).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let era = y / 400;
    let yoe = y - era * 400;
    let m = u64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_times_round_trip() {
        for (text, secs) in [
            ("19700101T000000Z", 0u64),
            ("20151212T121212Z", 1_449_922_332),
            ("20170222T164000Z", 1_487_781_600),
            ("20000229T235959Z", 951_868_799),
            ("20991231T235959Z", 4_102_444_799),
        ] {
            let t = parse_time("startTime", text).unwrap();
            assert_eq!(t.as_millis(), secs * 1000, "{text}");
            assert_eq!(format_time(t), text);
        }
    }

    #[test]
    fn milliseconds_are_dropped_when_formatting() {
        assert_eq!(
            format_time(Timestamp::from_millis(1_487_781_600_999)),
            "20170222T164000Z"
        );
    }

    #[test]
    fn other_patterns_and_impossible_dates_are_refused() {
        for text in [
            "",
            "2017-02-22T16:40:00Z",
            "20170222T164000",
            "20170222 164000Z",
            "20170222T164000z",
            "20170230T000000Z",
            "20190229T000000Z",
            "20171301T000000Z",
            "20170001T000000Z",
            "20170100T000000Z",
            "20170101T240000Z",
            "20170101T236000Z",
            "20170101T235960Z",
            "19691231T235959Z",
            "2017022aT164000Z",
            "+0170222T164000Z",
            "20170222T164000Z ",
        ] {
            assert!(parse_time("endTime", text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Walks day by day from 1970 to 2370, through every leap rule.
        for days in 0..146_097u64 {
            let (y, m, d) = civil_from_days(days);
            let (y, m, d) = (y as u32, m as u32, d as u32);
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
