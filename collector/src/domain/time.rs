//! UTC time helpers on milliseconds since the Unix epoch, the one time unit
//! the collector stores and computes with.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Parses an RFC 3339 timestamp (any offset) to epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats epoch milliseconds as RFC 3339 in UTC (`2026-11-24T06:50:00.123Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Start of the hour containing `ms`.
pub fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// First hour boundary at or after `ms`.
pub fn ceil_hour(ms: i64) -> i64 {
    let floor = floor_hour(ms);
    if floor == ms {
        floor
    } else {
        floor + HOUR_MS
    }
}

/// The UTC day of `ms` as `YYYY-MM-DD`.
pub fn day_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| String::from("invalid-date"))
}

/// The UTC hour of `ms` as RFC 3339 (`2026-11-24T06:00:00Z`).
pub fn hour_of(ms: i64) -> String {
    format_rfc3339_ms(floor_hour(ms))
}

/// The ISO 8601 week of the UTC day of `ms` as `YYYY-Www` (`2026-W48`):
/// weeks start on Monday; the year is the ISO week-numbering year, so
/// 2026-12-31 (a Thursday) is `2026-W53` and 2027-01-01 too.
pub fn week_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            let (year, week, _) = t.date().to_iso_week_date();
            format!("{year:04}-W{week:02}")
        })
        .unwrap_or_else(|_| String::from("invalid-date"))
}

/// The UTC month of `ms` as `YYYY-MM`.
pub fn month_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| format!("{:04}-{:02}", t.year(), u8::from(t.month())))
        .unwrap_or_else(|_| String::from("invalid-date"))
}

/// Midnight UTC of the first day of the month containing `ms`.
pub fn month_start(ms: i64) -> i64 {
    let Ok(now) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return floor_hour(ms);
    };
    match Date::from_calendar_date(now.year(), now.month(), 1) {
        Ok(first) => {
            first
                .with_time(Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
                * 1000
        }
        Err(_) => floor_hour(ms),
    }
}

/// Now, as epoch milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-24"), None);
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn hour_and_day_boundaries() {
        let t = parse_rfc3339_ms("2026-11-24T06:50:00.123Z").unwrap_or_default();
        assert_eq!(format_rfc3339_ms(floor_hour(t)), "2026-11-24T06:00:00Z");
        assert_eq!(format_rfc3339_ms(ceil_hour(t)), "2026-11-24T07:00:00Z");
        assert_eq!(ceil_hour(floor_hour(t)), floor_hour(t));
        assert_eq!(day_of(t), "2026-11-24");
        assert_eq!(format_rfc3339_ms(month_start(t)), "2026-11-01T00:00:00Z");
        assert_eq!(hour_of(t), "2026-11-24T06:00:00Z");
        assert_eq!(week_of(t), "2026-W48");
        assert_eq!(month_of(t), "2026-11");
        // ISO weeks belong to the year of their Thursday.
        let at = |s: &str| parse_rfc3339_ms(s).unwrap_or_default();
        assert_eq!(week_of(at("2026-12-31T23:00:00Z")), "2026-W53");
        assert_eq!(week_of(at("2027-01-03T00:00:00Z")), "2026-W53");
        assert_eq!(week_of(at("2027-01-04T00:00:00Z")), "2027-W01");
        assert_eq!(week_of(at("2025-12-29T00:00:00Z")), "2026-W01");
        assert_eq!(month_of(at("2026-01-31T23:59:59Z")), "2026-01");
    }
}
