//! The period of a FinOps report: a UTC calendar month (`month=YYYY-MM`) or
//! an ISO 8601 week (`week=YYYY-Www`, Monday to Monday, UTC).

use time::{Date, Month, Time, Weekday};

use crate::domain::time::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Month { year: i32, month: u8 },
    Week { year: i32, week: u8 },
}

fn ms_of(date: Date) -> i64 {
    date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000
}

impl Period {
    /// Parses `YYYY-MM`; the error names the parameter `param`.
    pub fn parse_month(param: &str, value: &str) -> Result<Self, String> {
        let bad = || format!("{param}: expected a month YYYY-MM (e.g. 2026-11), got {value:?}");
        let (y, m) = value.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year < 1970 {
            return Err(bad());
        }
        Ok(Period::Month { year, month })
    }

    /// Parses `YYYY-Www` (an ISO week that exists in that year).
    pub fn parse_week(param: &str, value: &str) -> Result<Self, String> {
        let bad =
            || format!("{param}: expected an ISO week YYYY-Www (e.g. 2026-W48), got {value:?}");
        let (y, w) = value.split_once("-W").ok_or_else(bad)?;
        if y.len() != 4 || w.len() != 2 || !(y.bytes().chain(w.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let week: u8 = w.parse().map_err(|_| bad())?;
        if year < 1970 || Date::from_iso_week_date(year, week, Weekday::Monday).is_err() {
            return Err(bad());
        }
        Ok(Period::Week { year, week })
    }

    /// The month holding `ms` (UTC).
    pub fn month_of(ms: i64) -> Self {
        let text = crate::domain::time::month_of(ms);
        Self::parse_month("month", &text).unwrap_or(Period::Month {
            year: 1970,
            month: 1,
        })
    }

    fn first_day(&self) -> Date {
        match *self {
            Period::Month { year, month } => Month::try_from(month)
                .ok()
                .and_then(|m| Date::from_calendar_date(year, m, 1).ok()),
            Period::Week { year, week } => {
                Date::from_iso_week_date(year, week, Weekday::Monday).ok()
            }
        }
        .unwrap_or(Date::MIN)
    }

    /// `[from_ms, to_ms)` in UTC.
    pub fn range_ms(&self) -> (i64, i64) {
        let from = ms_of(self.first_day());
        (from, self.next().start_ms().max(from))
    }

    pub fn start_ms(&self) -> i64 {
        ms_of(self.first_day())
    }

    /// The period after this one.
    pub fn next(&self) -> Self {
        match *self {
            Period::Month { year, month: 12 } => Period::Month {
                year: year + 1,
                month: 1,
            },
            Period::Month { year, month } => Period::Month {
                year,
                month: month + 1,
            },
            Period::Week { .. } => {
                let (year, week, _) =
                    (self.first_day() + time::Duration::days(7)).to_iso_week_date();
                Period::Week { year, week }
            }
        }
    }

    /// The period before this one.
    pub fn previous(&self) -> Self {
        match *self {
            Period::Month { year, month: 1 } => Period::Month {
                year: year - 1,
                month: 12,
            },
            Period::Month { year, month } => Period::Month {
                year,
                month: month - 1,
            },
            Period::Week { .. } => {
                let (year, week, _) =
                    (self.first_day() - time::Duration::days(7)).to_iso_week_date();
                Period::Week { year, week }
            }
        }
    }

    /// Days in the period.
    pub fn days(&self) -> i64 {
        let (from, to) = self.range_ms();
        (to - from) / DAY_MS
    }

    /// `month` or `week`: the name of the query parameter.
    pub fn kind(&self) -> &'static str {
        match self {
            Period::Month { .. } => "month",
            Period::Week { .. } => "week",
        }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Week { year, week } => write!(f, "{year:04}-W{week:02}"),
        }
    }
}
