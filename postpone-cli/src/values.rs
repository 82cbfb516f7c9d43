//! Turning raw flag strings into typed values, each refusal one line that names the flag
//! and shows the expected form.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use postpone::JobStatus;

/// The form `--at` expects, shown in errors.
const AT_EXAMPLE: &str = "2026-11-28T12:00:00+00:00";

/// Date-time layouts with an offset, beyond RFC 3339 (which chrono parses first).
const ZONED_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%:z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M%:z",
];

/// The same layouts without an offset: recognised only to say the time zone is missing.
const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// Parses an ISO 8601 date-time with a time zone (`Z` or an offset).
///
/// # Errors
/// One line naming `flag`, the value, and the expected form.
pub(crate) fn parse_at(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ZONED_FORMATS {
        if let Ok(at) = DateTime::parse_from_str(value, format) {
            return Ok(at.with_timezone(&Utc));
        }
    }
    let naive = NAIVE_FORMATS
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(value, f).is_ok())
        || NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok();
    if naive {
        bail!(
            "{flag} {value:?} has no time zone: add one, e.g. {AT_EXAMPLE} (or Z for UTC), so the job runs when you mean"
        );
    }
    bail!(
        "{flag} {value:?} is not an ISO 8601 date-time with a time zone: expected a form like {AT_EXAMPLE}"
    )
}

/// Parses a delay: seconds (`90`, `1.5`) or numbers with units (`90s`, `5m`, `2h`, `1d`,
/// `1h30m`, `250ms`).
///
/// # Errors
/// One line naming `flag`, the value, and the accepted forms.
pub(crate) fn parse_delay(flag: &str, value: &str) -> anyhow::Result<Duration> {
    let text = value.trim();
    let refuse = || {
        anyhow!(
            "{flag} {value:?} is not a delay: give seconds (90) or numbers with units (90s, 5m, 2h, 1d, 1h30m)"
        )
    };
    if text.starts_with('-') {
        bail!("{flag} {value:?} is negative: give a delay of 0 or more (90, 90s, 5m, 2h)");
    }
    let seconds = match text.parse::<f64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let mut total = 0.0;
            let mut rest = text;
            if rest.is_empty() {
                return Err(refuse());
            }
            while !rest.is_empty() {
                let number_len = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .ok_or_else(refuse)?;
                let (number, after) = rest.split_at(number_len);
                let number: f64 = number.parse().map_err(|_| refuse())?;
                let unit_len = after
                    .find(|c: char| c.is_ascii_digit() || c == '.')
                    .unwrap_or(after.len());
                let (unit, after) = after.split_at(unit_len);
                let scale = match unit.trim() {
                    "ms" => 0.001,
                    "s" | "sec" | "secs" => 1.0,
                    "m" | "min" | "mins" => 60.0,
                    "h" | "hr" | "hrs" => 3600.0,
                    "d" | "day" | "days" => 86400.0,
                    _ => return Err(refuse()),
                };
                total += number * scale;
                rest = after.trim_start();
            }
            total
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(refuse());
    }
    Duration::try_from_secs_f64(seconds)
        .with_context(|| format!("{flag} {value:?} is too long a delay"))
}

/// Parses a job timeout: a delay (as [`parse_delay`]) above 0 and at most 30 days.
///
/// # Errors
/// One line naming `flag`, the value, and the accepted range.
pub(crate) fn parse_timeout(flag: &str, value: &str) -> anyhow::Result<Duration> {
    let timeout = parse_delay(flag, value)?;
    if timeout.is_zero() || timeout > postpone::job::TIMEOUT_MAX {
        bail!(
            "{flag} {value:?} is out of range: give a timeout above 0 and at most 30 days (90s, 5m, 2h)"
        );
    }
    Ok(timeout)
}

/// The filter of `postpone queues`, `tasks` and `locks`.
///
/// # Errors
/// An unknown status.
pub(crate) fn count_filter(flags: crate::flags::CountFlags) -> anyhow::Result<postpone::JobFilter> {
    Ok(postpone::JobFilter {
        queue_name: flags.queue,
        task_name: flags.task,
        status: parse_status(flags.status.as_deref())?,
        lock: flags.lock,
        ..postpone::JobFilter::default()
    })
}

/// A time from `--at` or `--in` (at most one is given; clap refuses both).
///
/// # Errors
/// As [`parse_at`] and [`parse_delay`], or a delay too far in the future.
pub(crate) fn at_or_in(
    at: Option<&str>,
    delay: Option<&str>,
) -> anyhow::Result<(Option<DateTime<Utc>>, Option<Duration>)> {
    let at = at.map(|v| parse_at("--at", v)).transpose()?;
    let delay = delay.map(|v| parse_delay("--in", v)).transpose()?;
    Ok((at, delay))
}

/// `now + delay`, refusing a delay too far in the future.
///
/// # Errors
/// One line naming the delay.
pub(crate) fn after(delay: Duration) -> anyhow::Result<DateTime<Utc>> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .ok_or_else(|| anyhow!("--in of {delay:?} is too far in the future"))
}

/// Parses a job status with the library's own message for an unknown one.
///
/// # Errors
/// `unknown job status ...: expected one of ...`.
pub(crate) fn parse_status(value: Option<&str>) -> anyhow::Result<Option<JobStatus>> {
    Ok(value
        .map(|v| v.trim().to_ascii_lowercase().parse::<JobStatus>())
        .transpose()?)
}

/// Parses the JSON keyword arguments of `defer`, saying where malformed JSON breaks.
///
/// # Errors
/// `JSON arguments for task "x" are not valid JSON: ... at line L column C`.
pub(crate) fn parse_args_json(task: &str, text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|error| {
        anyhow!(
            "arguments for task {task:?} are not valid JSON: {error}; expected an object like '{{\"a\": 1}}'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_zoned_iso_8601_only() {
        let expected = "2026-11-28T11:00:00Z".parse::<DateTime<Utc>>().ok();
        for ok in [
            "2026-11-28T12:00:00+01:00",
            "2026-11-28T11:00:00Z",
            "2026-11-28 11:00:00Z",
            "2026-11-28T11:00:00.000+00:00",
            "2026-11-28T12:00+01:00",
            "2026-11-28T12:00:00+0100",
        ] {
            assert_eq!(parse_at("--at", ok).ok(), expected, "{ok}");
        }
        let naive = parse_at("--at", "2026-11-28T12:00:00")
            .expect_err("refused")
            .to_string();
        assert!(naive.contains("no time zone"), "{naive}");
        let date = parse_at("--at", "2026-11-28")
            .expect_err("refused")
            .to_string();
        assert!(date.contains("no time zone"), "{date}");
        let junk = parse_at("--at", "tomorrow")
            .expect_err("refused")
            .to_string();
        assert!(junk.contains(AT_EXAMPLE), "{junk}");
    }

    #[test]
    fn delays_in_seconds_and_units() {
        let secs = |v: &str| parse_delay("--in", v).ok().map(|d| d.as_secs_f64());
        assert_eq!(secs("90"), Some(90.0));
        assert_eq!(secs("1.5"), Some(1.5));
        assert_eq!(secs("90s"), Some(90.0));
        assert_eq!(secs("5m"), Some(300.0));
        assert_eq!(secs("2h"), Some(7200.0));
        assert_eq!(secs("1d"), Some(86400.0));
        assert_eq!(secs("1h30m"), Some(5400.0));
        assert_eq!(secs("250ms"), Some(0.25));
        for bad in ["", "-5", "5x", "m", "1e400", "abc", "5 m s"] {
            assert!(parse_delay("--in", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timeouts_are_above_zero_and_at_most_30_days() {
        let secs = |v: &str| parse_timeout("--timeout", v).ok().map(|d| d.as_secs_f64());
        assert_eq!(secs("90"), Some(90.0));
        assert_eq!(secs("250ms"), Some(0.25));
        assert_eq!(secs("30d"), Some(30.0 * 86400.0));
        for bad in ["0", "0s", "31d", "-1", "soon"] {
            let error = parse_timeout("--timeout", bad)
                .expect_err("refused")
                .to_string();
            assert!(error.starts_with("--timeout"), "{error}");
        }
    }

    #[test]
    fn malformed_json_says_where() {
        let error = parse_args_json("t", "{\"a\": }")
            .expect_err("refused")
            .to_string();
        assert!(error.contains("line 1 column 7"), "{error}");
    }
}
