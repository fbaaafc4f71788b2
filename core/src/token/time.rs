//! Token timestamps: an instant plus the UTC offset it is written in, formatted and parsed exactly
//! as Go's `time.Time` does in JSON (`2006-01-02T15:04:05.999999999Z07:00`).
//!
//! The offset is kept because the verifier re-derives the signed bytes from the parsed fields: a
//! time signed as `…+08:00` must be written back as `…+08:00`, not as the same instant in UTC.
//!
//! The calendar arithmetic is written here rather than taken from a crate: it is two small,
//! well-known conversions (days ↔ proleptic Gregorian date, after Howard Hinnant's
//! `days_from_civil`), and Go's exact formatting rules (trimmed fraction, `Z` for a zero offset,
//! minutes-only offsets) would need hand-written code around any crate anyway.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds in one second.
const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Seconds in one day.
const SECS_PER_DAY: i64 = 86_400;
/// Largest offset Go's RFC 3339 parser accepts: `±23:59`.
const MAX_OFFSET_SECS: i32 = 23 * 3600 + 59 * 60;

/// A token timestamp: an instant (nanosecond precision) and the UTC offset it is written in.
///
/// Years 0000 to 9999 are representable (what RFC 3339 can write); [`TokenTime::default`] is Go's
/// zero time, `0001-01-01T00:00:00Z`, which a token without a time field decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenTime {
    /// Nanoseconds since the Unix epoch (negative before 1970).
    unix_nanos: i128,
    /// Offset from UTC in seconds, a whole number of minutes within ±23:59.
    offset_secs: i32,
}

/// Unix nanoseconds of Go's zero time, 0001-01-01T00:00:00Z.
const GO_ZERO_UNIX_NANOS: i128 = -62_135_596_800 * NANOS_PER_SEC;
/// Unix nanoseconds of 0000-01-01T00:00:00Z and of 10000-01-01T00:00:00Z: the bounds of a
/// four-digit year.
const MIN_UNIX_NANOS: i128 = -62_167_219_200 * NANOS_PER_SEC;
const END_UNIX_NANOS: i128 = 253_402_300_800 * NANOS_PER_SEC;

impl Default for TokenTime {
    fn default() -> Self {
        Self {
            unix_nanos: GO_ZERO_UNIX_NANOS,
            offset_secs: 0,
        }
    }
}

impl TokenTime {
    /// `now`, to be written with the local offset `utc_offset_secs` (east of UTC positive).
    ///
    /// The offset is truncated toward zero to whole minutes and clamped to ±23:59, because RFC 3339
    /// (and Go's format) writes only `±hh:mm`: a seconds part would change the instant on re-parse.
    pub fn from_system_time(now: SystemTime, utc_offset_secs: i32) -> Self {
        Self {
            unix_nanos: system_time_to_nanos(now),
            offset_secs: normalize_offset(utc_offset_secs),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i128 {
        self.unix_nanos
    }

    /// The UTC offset this time is written in, in seconds (a whole number of minutes).
    pub fn utc_offset_secs(&self) -> i32 {
        self.offset_secs
    }

    /// The same offset, `d` later (saturating at the representable range).
    pub fn plus(&self, d: Duration) -> Self {
        Self {
            unix_nanos: self.unix_nanos.saturating_add(d.as_nanos() as i128),
            offset_secs: self.offset_secs,
        }
    }

    /// Parses RFC 3339 as Go's `time.Time.UnmarshalJSON` accepts it: `YYYY-MM-DDTHH:MM:SS`, an
    /// optional `.` and fraction digits (beyond nine truncated), then `Z` or `±hh:mm`. Field ranges
    /// are checked (month, day of that month, hour < 24, minute and second < 60, offset < 24h).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let year = digits(b, 0, 4)? as i64;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
        if seps.iter().any(|&(i, c)| b[i] != c) {
            return None;
        }
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos: i128 = 0;
        if let Some((b'.', frac)) = rest.split_first() {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let mut scale = 100_000_000;
            for &c in frac.iter().take(n.min(9)) {
                nanos += i128::from(c - b'0') * scale;
                scale /= 10;
            }
            rest = &frac[n..];
        }
        let offset_secs = match rest {
            b"Z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2], 0, 2)?;
                let m = digits(&[*m1, *m2], 0, 2)?;
                if h > 23 || m > 59 {
                    return None;
                }
                let off = (h * 3600 + m * 60) as i32;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return None,
        };
        let local_secs = days_from_civil(year, month, day) * SECS_PER_DAY
            + i64::from(hour * 3600 + minute * 60 + second);
        let unix_secs = local_secs - i64::from(offset_secs);
        Some(Self {
            unix_nanos: i128::from(unix_secs) * NANOS_PER_SEC + nanos,
            offset_secs,
        })
    }

    /// Whether the local date falls in years 0000..=9999, the range RFC 3339 can write.
    fn in_range(&self) -> bool {
        let local = self.unix_nanos + i128::from(self.offset_secs) * NANOS_PER_SEC;
        (MIN_UNIX_NANOS..END_UNIX_NANOS).contains(&local)
    }
}

/// Go's `RFC3339Nano` layout. Outside years 0000..=9999 Go's `MarshalJSON` fails; writing the
/// out-of-range year in full here keeps formatting total (such a time cannot come from a parse,
/// and a clock that far off fails the lifetime checks anyway).
impl fmt::Display for TokenTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix_nanos + i128::from(self.offset_secs) * NANOS_PER_SEC;
        let secs = local.div_euclid(NANOS_PER_SEC);
        let nanos = local.rem_euclid(NANOS_PER_SEC) as u32;
        // i128 seconds of any `TokenTime` fit i64: construction goes through SystemTime (i64
        // seconds) or a four-digit-year parse, and `plus` saturates far beyond both.
        let secs = i64::try_from(secs).unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX });
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if self.in_range() {
            write!(f, "{year:04}")?;
        } else {
            write!(f, "{year}")?;
        }
        write!(
            f,
            "-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )?;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        if self.offset_secs == 0 {
            f.write_str("Z")
        } else {
            let sign = if self.offset_secs < 0 { '-' } else { '+' };
            let abs = self.offset_secs.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
        }
    }
}

/// Nanoseconds since the Unix epoch of a `SystemTime`, negative before 1970.
pub(crate) fn system_time_to_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn normalize_offset(secs: i32) -> i32 {
    let minutes = secs / 60; // truncates toward zero, as Go writes the offset
    (minutes * 60).clamp(-MAX_OFFSET_SECS, MAX_OFFSET_SECS)
}

/// `len` ASCII digits at `at` as a number, or `None` if any is not a digit.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    b.get(at..at + len)?.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32, offset: i32) -> TokenTime {
        TokenTime::from_system_time(UNIX_EPOCH + Duration::new(secs, nanos), offset)
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        // 2022-06-01T12:34:56Z = 1654086896
        assert_eq!(at(1_654_086_896, 0, 0).to_string(), "2022-06-01T12:34:56Z");
        assert_eq!(
            at(1_654_086_896, 120_000_000, 0).to_string(),
            "2022-06-01T12:34:56.12Z"
        );
        assert_eq!(
            at(1_654_086_896, 1, 8 * 3600).to_string(),
            "2022-06-01T20:34:56.000000001+08:00"
        );
        assert_eq!(
            at(1_654_086_896, 999_999_999, -(5 * 3600 + 30 * 60)).to_string(),
            "2022-06-01T07:04:56.999999999-05:30"
        );
        assert_eq!(TokenTime::default().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(at(0, 0, 0).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn offset_is_truncated_to_minutes_and_clamped() {
        assert_eq!(at(0, 0, 3600 + 59).utc_offset_secs(), 3600);
        assert_eq!(at(0, 0, -(3600 + 59)).utc_offset_secs(), -3600);
        assert_eq!(at(0, 0, 30 * 3600).utc_offset_secs(), MAX_OFFSET_SECS);
        // Sub-minute offsets write as Z, like a zero offset.
        assert_eq!(at(0, 0, 59).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn before_the_epoch() {
        let t = TokenTime::from_system_time(UNIX_EPOCH - Duration::new(1, 500_000_000), 0);
        assert_eq!(t.to_string(), "1969-12-31T23:59:58.5Z");
        assert_eq!(t.unix_nanos(), -1_500_000_000);
    }

    #[test]
    fn parse_roundtrips_and_keeps_the_offset() {
        for s in [
            "2022-06-01T12:34:56Z",
            "2022-06-01T20:34:56.000000001+08:00",
            "2022-06-01T07:04:56.999999999-05:30",
            "2000-02-29T23:59:59.5+23:59",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "0001-01-01T00:00:00Z",
        ] {
            let t = TokenTime::parse_rfc3339(s).unwrap_or_else(|| panic!("{s} parses"));
            assert_eq!(t.to_string(), s);
        }
        let t = TokenTime::parse_rfc3339("2022-06-01T20:34:56+08:00").unwrap();
        assert_eq!(t.unix_nanos(), 1_654_086_896 * NANOS_PER_SEC);
        assert_eq!(t.utc_offset_secs(), 8 * 3600);
    }

    #[test]
    fn parse_canonicalises_like_go() {
        // Go re-marshals a parsed time with trailing zeros trimmed and +00:00 as Z.
        let t = TokenTime::parse_rfc3339("2022-06-01T12:34:56.100+00:00").unwrap();
        assert_eq!(t.to_string(), "2022-06-01T12:34:56.1Z");
        let t = TokenTime::parse_rfc3339("2022-06-01T12:34:56.1234567891234Z").unwrap();
        assert_eq!(t.to_string(), "2022-06-01T12:34:56.123456789Z");
        assert_eq!(
            TokenTime::parse_rfc3339("2022-06-01T12:34:56.000Z"),
            TokenTime::parse_rfc3339("2022-06-01T12:34:56Z")
        );
    }

    #[test]
    fn parse_rejects_what_go_rejects() {
        for s in [
            "",
            "2022-06-01",
            "2022-06-01T12:34:56",
            "2022-06-01t12:34:56Z",
            "2022-06-01T12:34:56z",
            "2022-06-01 12:34:56Z",
            "2022-13-01T12:34:56Z",
            "2022-00-01T12:34:56Z",
            "2022-02-29T12:34:56Z",
            "2022-04-31T12:34:56Z",
            "2022-06-01T24:00:00Z",
            "2022-06-01T12:60:00Z",
            "2022-06-01T12:34:60Z",
            "2022-06-01T12:34:56.Z",
            "2022-06-01T12:34:56+24:00",
            "2022-06-01T12:34:56+08:60",
            "2022-06-01T12:34:56+0800",
            "2022-06-01T12:34:56+08:00:00",
            "2022-06-01T12:34:56Z ",
            "+2022-06-01T12:34:56Z",
            "2022-06-01T12:34:5xZ",
            "2022-06-01T12:34:56.1é",
        ] {
            assert_eq!(TokenTime::parse_rfc3339(s), None, "{s:?} must be refused");
        }
    }

    #[test]
    fn civil_conversions_agree_over_the_whole_range() {
        let first = days_from_civil(0, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        let (mut y, mut m, mut d) = (0i64, 1u32, 1u32);
        for days in first..=last {
            assert_eq!(civil_from_days(days), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), days);
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn plus_keeps_the_offset() {
        let t = at(1_654_086_896, 5, 3600).plus(Duration::from_secs(60));
        assert_eq!(t.to_string(), "2022-06-01T13:35:56.000000005+01:00");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_identity(
            nanos in MIN_UNIX_NANOS + 86_400 * NANOS_PER_SEC..END_UNIX_NANOS - 86_400 * NANOS_PER_SEC,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59),
        ) {
            let t = TokenTime { unix_nanos: nanos, offset_secs: offset_min * 60 };
            let text = t.to_string();
            proptest::prop_assert_eq!(TokenTime::parse_rfc3339(&text), Some(t), "{}", text);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = TokenTime::parse_rfc3339(&s);
        }
    }
}
