//! FHIR `date`, `dateTime` and `instant` values, reduced to a point on the time line for sorting.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Parse a FHIR date or dateTime (`2024`, `2024-05`, `2024-05-06`, `2024-05-06T10:00:00+02:00`) to
/// the instant it starts at. Partial dates and dates without a time are taken at UTC midnight.
pub fn parse_start(s: &str) -> Option<OffsetDateTime> {
    if s.contains('T') {
        return OffsetDateTime::parse(s, &Rfc3339).ok();
    }
    let mut parts = s.split('-');
    let year: i32 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let month: u8 = match parts.next() {
        Some(m) if m.len() == 2 => m.parse().ok()?,
        Some(_) => return None,
        None => 1,
    };
    let day: u8 = match parts.next() {
        Some(d) if d.len() == 2 => d.parse().ok()?,
        Some(_) => return None,
        None => 1,
    };
    if parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc())
}

/// Parse a FHIR `date` (full date only).
pub fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 10 {
        return None;
    }
    parse_start(s).map(|t| t.date())
}

/// Finnish local time (Europe/Helsinki: UTC+2, UTC+3 from the last Sunday of March 01:00 UTC to
/// the last Sunday of October 01:00 UTC) at the instant `ms` (epoch milliseconds).
pub fn helsinki(ms: i64) -> Option<PrimitiveDateTime> {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?
        + time::Duration::milliseconds(ms.rem_euclid(1000));
    let last_sunday = |month: Month| {
        let mut d = Date::from_calendar_date(t.year(), month, 31).unwrap_or(Date::MIN);
        while d.weekday() != time::Weekday::Sunday {
            d = d.previous_day().unwrap_or(d);
        }
        d.with_hms(1, 0, 0).map(|p| p.assume_utc()).unwrap_or(t)
    };
    let summer = t >= last_sunday(Month::March) && t < last_sunday(Month::October);
    let local = t + time::Duration::hours(if summer { 3 } else { 2 });
    Some(PrimitiveDateTime::new(local.date(), local.time()))
}

/// Epoch ms of 00:00 Finnish local time on `date` (a Finnish calendar day starts then).
pub fn helsinki_midnight(date: Date) -> i64 {
    let utc = date.midnight().assume_utc();
    for hours in [2, 3] {
        let ms = millis(utc - time::Duration::hours(hours));
        if helsinki(ms).is_some_and(|l| l.date() == date && l.hour() == 0 && l.minute() == 0) {
            return ms;
        }
    }
    millis(utc - time::Duration::hours(2))
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Format an instant as a FHIR `instant` in UTC with millisecond precision.
pub fn instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_start_at_midnight_utc() {
        for (s, ok) in [
            ("2024", true),
            ("2024-05", true),
            ("2024-05-06", true),
            ("2024-05-06T10:00:00+02:00", true),
            ("2024-05-06T10:00:00Z", true),
            ("2024-13", false),
            ("2024-02-30", false),
            ("24-01-01", false),
            ("2024-05-06T10:00", false),
            ("", false),
        ] {
            assert_eq!(parse_start(s).is_some(), ok, "{s}");
        }
        let t = parse_start("2024-05-06T10:00:00+02:00").unwrap();
        assert_eq!(instant(t), "2024-05-06T08:00:00.000Z");
        assert_eq!(
            parse_date("2024-05-06").map(format_date).as_deref(),
            Some("2024-05-06")
        );
        assert_eq!(parse_date("2024-05"), None);
    }
}
