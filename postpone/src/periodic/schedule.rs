//! A cron expression, in Procrastinate's field order, in a time zone: its ticks.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::{Error, Result};

/// A parsed cron schedule in a time zone.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    timezone: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("cron", &self.text)
            .field("timezone", &self.timezone.name())
            .finish()
    }
}

/// Field names and accepted values, in Procrastinate's order (seconds last).
const FIELDS: [(&str, &str); 6] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat"),
    ("second", "0-59"),
];

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with the seconds last) in a time zone
    /// (an IANA name; `None` is UTC).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field that is wrong, or the unknown zone.
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<Self> {
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                Error::InvalidInput(format!(
                    "unknown time zone {name:?}: use an IANA name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\""
                ))
            })?,
        };
        let invalid = |message: String| Error::InvalidInput(format!("cron {cron:?}: {message}"));
        let trimmed = cron.trim();
        let parser = CronParser::builder().seconds(Seconds::Required).build();
        let pattern = if trimmed.starts_with('@') {
            trimmed.to_owned()
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 && fields.len() != 6 {
                return Err(invalid(format!(
                    "{} fields; write 5 (minute hour day-of-month month day-of-week) or 6 (the same, then second)",
                    fields.len()
                )));
            }
            let second = fields.get(5).copied().unwrap_or("0");
            // Each field alone first, so the message names the one that is wrong.
            for (index, field) in fields.iter().enumerate() {
                let mut alone = ["0", "*", "*", "*", "*", "*"];
                let slot = if index == 5 { 0 } else { index + 1 };
                alone[slot] = field;
                if let Err(e) = parser.parse(&alone.join(" ")) {
                    let (name, values) = FIELDS[index];
                    return Err(invalid(format!(
                        "field {} ({name}) {field:?} is not valid ({}); it takes {values}, `*`, lists, ranges and steps",
                        index + 1,
                        croner_message(&e).trim_end_matches('.')
                    )));
                }
            }
            // croner reads the seconds first.
            format!("{second} {}", fields[..5].join(" "))
        };
        let parsed = parser
            .parse(&pattern)
            .or_else(|_| CronParser::new().parse(&pattern))
            .map_err(|e| invalid(croner_message(&e)))?;
        let schedule = Self {
            text: cron.to_owned(),
            cron: parsed,
            timezone,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(invalid(
                "never matches a date (a day that does not exist in that month?)".to_owned(),
            ));
        }
        Ok(schedule)
    }

    /// The cron expression as given.
    #[must_use]
    pub fn cron(&self) -> &str {
        &self.text
    }

    /// The time zone's IANA name.
    #[must_use]
    pub fn timezone(&self) -> &str {
        self.timezone.name()
    }

    /// The first tick strictly after `at`.
    #[must_use]
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&at.with_timezone(&self.timezone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last tick at or before `at`.
    #[must_use]
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: ticks fall on whole seconds and croner compares them.
        let at = Utc.timestamp_opt(at.timestamp(), 0).single()?;
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.timezone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The ticks to defer at `now` (Unix seconds, oldest first): after `since` (the
    /// last tick this deferrer handled) or, the first time, the latest tick; never one
    /// older than `max_delay`.
    #[must_use]
    pub fn due_ticks(
        &self,
        since: Option<i64>,
        now: DateTime<Utc>,
        max_delay: std::time::Duration,
    ) -> Vec<i64> {
        let oldest = now.timestamp() - i64::try_from(max_delay.as_secs()).unwrap_or(i64::MAX);
        let Some(since) = since else {
            return self
                .latest_at_or_before(now)
                .map(|t| t.timestamp())
                .filter(|&t| t >= oldest)
                .into_iter()
                .collect();
        };
        let mut ticks = Vec::new();
        let mut cursor = Utc
            .timestamp_opt(since.max(oldest - 1), 0)
            .single()
            .unwrap_or(now);
        while let Some(next) = self.next_after(cursor) {
            if next > now {
                break;
            }
            ticks.push(next.timestamp());
            cursor = next;
        }
        ticks
    }
}

/// croner's message without its type prefix.
fn croner_message(error: &croner::errors::CronError) -> String {
    let text = error.to_string();
    text.strip_prefix("Invalid pattern: ")
        .or_else(|| text.strip_prefix("Component error: "))
        .unwrap_or(&text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_run_on_the_minute() {
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2026-01-01T10:15:00.400Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
    }

    #[test]
    fn the_sixth_field_is_seconds_as_in_procrastinate() {
        let s = Schedule::parse("* * * * * */20", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:07:40Z"))
        );
        // Minute 5 of every hour, at second 0 and 30.
        let s = Schedule::parse("5 * * * * 0,30", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:05:00Z")),
            Some(at("2026-01-01T10:05:30Z"))
        );
        assert_eq!(
            s.next_after(at("2026-01-01T10:05:30Z")),
            Some(at("2026-01-01T11:05:00Z"))
        );
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let s = Schedule::parse("30 6 * * *", Some("Europe/Paris")).unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            s.next_after(at("2026-01-15T00:00:00Z")),
            Some(at("2026-01-15T05:30:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-07-15T00:00:00Z")),
            Some(at("2026-07-15T04:30:00Z"))
        );
        assert_eq!(s.timezone(), "Europe/Paris");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |cron: &str| Schedule::parse(cron, None).unwrap_err().to_string();
        let e = err("61 * * * *");
        assert!(e.contains("field 1 (minute) \"61\""), "{e}");
        let e = err("0 0 32 * *");
        assert!(e.contains("field 3 (day of month)"), "{e}");
        let e = err("0 0 * 13 *");
        assert!(e.contains("field 4 (month)"), "{e}");
        let e = err("0 0 * * 9");
        assert!(e.contains("field 5 (day of week)"), "{e}");
        let e = err("* * * * * 75");
        assert!(e.contains("field 6 (second)"), "{e}");
        let e = err("* * * *");
        assert!(e.contains("4 fields"), "{e}");
        let e = err("0 0 30 2 *");
        assert!(e.contains("never matches"), "{e}");
        let e = Schedule::parse("* * * * *", Some("Europe/Pariss"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown time zone \"Europe/Pariss\""), "{e}");
    }

    #[test]
    fn last_days_nth_weekdays_and_sunday_as_seven() {
        let next = |cron: &str, from: &str| {
            Schedule::parse(cron, None)
                .unwrap()
                .next_after(at(from))
                .unwrap()
        };
        assert_eq!(
            next("0 0 L * *", "2026-02-03T00:00:00Z"),
            at("2026-02-28T00:00:00Z")
        );
        // Second Friday, last Friday of January 2026 (Fridays: 2, 9, 16, 23, 30).
        assert_eq!(
            next("0 0 * * 5#2", "2026-01-01T00:00:00Z"),
            at("2026-01-09T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * 5L", "2026-01-01T00:00:00Z"),
            at("2026-01-30T00:00:00Z")
        );
        // 2026-01-04 is a Sunday.
        assert_eq!(
            next("0 0 * * 7", "2026-01-01T00:00:00Z"),
            at("2026-01-04T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * sun", "2026-01-01T00:00:00Z"),
            at("2026-01-04T00:00:00Z")
        );
        // Either day field matching is enough: the 1st, or a Monday (2026-01-05).
        assert_eq!(
            next("0 0 1 * mon", "2026-01-01T12:00:00Z"),
            at("2026-01-05T00:00:00Z")
        );
    }

    #[test]
    fn nicknames_parse() {
        let s = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
    }

    #[test]
    fn due_ticks_catch_up_but_not_beyond_max_delay() {
        let s = Schedule::parse("* * * * * *", None).unwrap();
        let now = at("2026-01-01T10:00:10.300Z");
        let delay = Duration::from_secs(600);
        // First pass: the latest tick only.
        assert_eq!(s.due_ticks(None, now, delay), [now.timestamp()]);
        // Later: every tick since the last one.
        let since = now.timestamp() - 3;
        assert_eq!(
            s.due_ticks(Some(since), now, delay),
            [since + 1, since + 2, since + 3]
        );
        // Nothing new.
        assert!(s.due_ticks(Some(now.timestamp()), now, delay).is_empty());
        // After a long gap, only ticks within max_delay.
        let ticks = s.due_ticks(Some(since - 10_000), now, Duration::from_secs(5));
        assert_eq!(ticks.first(), Some(&(now.timestamp() - 5)));
        assert_eq!(ticks.len(), 6);
        // A first tick older than max_delay is skipped.
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        assert!(
            hourly
                .due_ticks(None, at("2026-01-01T10:30:00Z"), delay)
                .is_empty()
        );
        assert_eq!(
            hourly.due_ticks(None, at("2026-01-01T10:05:00Z"), delay),
            [at("2026-01-01T10:00:00Z").timestamp()]
        );
    }
}

#[cfg(test)]
mod daylight_saving {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ticks(cron: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let s = Schedule::parse(cron, Some("Europe/Paris")).unwrap();
        let day = std::time::Duration::from_secs(10 * 86_400);
        s.due_ticks(Some(at(from).timestamp()), at(to), day)
            .into_iter()
            .map(|t| Utc.timestamp_opt(t, 0).single().unwrap())
            .collect()
    }

    // Paris, 2026: clocks go forward on March 29 at 02:00 CET (01:00 UTC) to 03:00 CEST,
    // and back on October 25 at 03:00 CEST (01:00 UTC) to 02:00 CET.

    #[test]
    fn a_time_in_the_skipped_hour_runs_when_the_clocks_have_moved() {
        // 02:30 does not exist on March 29: that day's tick is at 03:00 CEST, once.
        assert_eq!(
            ticks("30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                at("2026-03-28T01:30:00Z"), // 02:30 CET
                at("2026-03-29T01:00:00Z"), // 03:00 CEST
                at("2026-03-30T00:30:00Z"), // 02:30 CEST
            ]
        );
        // An hourly schedule has no 02:00 that day, and no extra tick.
        assert_eq!(
            ticks("0 * * * *", "2026-03-28T23:30:00Z", "2026-03-29T02:30:00Z"),
            [
                at("2026-03-29T00:00:00Z"), // 01:00 CET
                at("2026-03-29T01:00:00Z"), // 03:00 CEST
                at("2026-03-29T02:00:00Z"), // 04:00 CEST
            ]
        );
    }

    #[test]
    fn a_time_that_happens_twice_runs_once_unless_the_hour_is_a_wildcard() {
        // 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC (CET): it runs at the first.
        assert_eq!(
            ticks("30 2 * * *", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
            [
                at("2026-10-24T00:30:00Z"),
                at("2026-10-25T00:30:00Z"),
                at("2026-10-26T01:30:00Z"),
            ]
        );
        // Every hour (or more often) keeps its pace through the repeated hour: every real
        // hour runs, so 02:00 runs in CEST and again in CET.
        assert_eq!(
            ticks("0 * * * *", "2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z"),
            [
                at("2026-10-25T00:00:00Z"), // 02:00 CEST
                at("2026-10-25T01:00:00Z"), // 02:00 CET
                at("2026-10-25T02:00:00Z"), // 03:00 CET
            ]
        );
    }
}
