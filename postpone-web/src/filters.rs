//! The jobs list's query string: filters, search and cursor, parsed into a
//! [`JobPageParams`] with a message for each value that is not valid. Nothing here reaches
//! SQL but as a typed parameter.

use postpone::manager::{JobPageParams, PageCursor};
use postpone::{JobFilter, JobStatus};

/// Jobs per page.
pub(crate) const PAGE_SIZE: i64 = 50;
/// Jobs a page looks at, at most (see `JobPageParams::scan_limit`).
pub(crate) const SCAN_LIMIT: i64 = 20_000;

/// The filter fields of the form, in order: (query key, label).
pub(crate) const FIELDS: [(&str, &str); 8] = [
    ("id", "id"),
    ("queue", "queue"),
    ("task", "task"),
    ("status", "status"),
    ("lock", "lock"),
    ("queueing_lock", "queueing lock"),
    ("worker", "worker"),
    ("q", "args contain"),
];

/// A parsed jobs query.
#[derive(Debug, Clone)]
pub(crate) struct JobsQuery {
    /// What to read.
    pub(crate) params: JobPageParams,
    /// The filter values as given (non-empty ones), to fill the form and build links.
    pub(crate) given: Vec<(String, String)>,
    /// Why some value is not valid.
    pub(crate) errors: Vec<String>,
}

fn parse_id(key: &str, value: &str, errors: &mut Vec<String>) -> Option<i64> {
    match value.parse::<i64>() {
        Ok(id) if id >= 0 => Some(id),
        _ => {
            errors.push(format!(
                "{key} {value:?} is not a number: give a whole number, like 42"
            ));
            None
        }
    }
}

pub(crate) fn parse(query: Option<&str>) -> JobsQuery {
    let mut filter = JobFilter::default();
    let mut search = None;
    let mut cursor = PageCursor::Newest;
    let mut given = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = value.trim().to_owned();
        if value.is_empty() {
            continue;
        }
        match key.as_ref() {
            "id" => filter.id = parse_id("id", &value, &mut errors),
            "queue" => filter.queue_name = Some(value.clone()),
            "task" => filter.task_name = Some(value.clone()),
            "status" => match value.parse::<JobStatus>() {
                Ok(status) => filter.status = Some(status),
                Err(_) => errors.push(format!(
                    "status {value:?} is not a job status: give one of todo, doing, succeeded, failed, cancelled, aborted"
                )),
            },
            "lock" => filter.lock = Some(value.clone()),
            "queueing_lock" => filter.queueing_lock = Some(value.clone()),
            "worker" => filter.worker_id = parse_id("worker", &value, &mut errors),
            "q" => search = Some(value.clone()),
            "before" => {
                if let Some(id) = parse_id("before", &value, &mut errors) {
                    cursor = PageCursor::Before(id);
                }
                continue;
            }
            "after" => {
                if let Some(id) = parse_id("after", &value, &mut errors) {
                    cursor = PageCursor::After(id);
                }
                continue;
            }
            _ => continue,
        }
        given.push((key.into_owned(), value));
    }
    JobsQuery {
        params: JobPageParams {
            filter,
            search,
            cursor,
            limit: PAGE_SIZE,
            scan_limit: SCAN_LIMIT,
        },
        given,
        errors,
    }
}

impl JobsQuery {
    /// The value given for `key`, if any.
    pub(crate) fn value(&self, key: &str) -> &str {
        self.given
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `jobs?<filters>&<key>=<id>`: the same filters from another cursor.
    pub(crate) fn link(&self, cursor: Option<(&str, i64)>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.given {
            query.append_pair(key, value);
        }
        if let Some((key, id)) = cursor {
            query.append_pair(key, &id.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            "jobs".to_owned()
        } else {
            format!("jobs?{query}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use postpone::manager::PageCursor;

    #[test]
    fn bad_values_are_named_and_good_ones_kept() {
        let query = parse(Some("status=bogus&id=abc&queue=a%26b&before=10&x=1"));
        assert_eq!(query.errors.len(), 2, "{:?}", query.errors);
        assert!(query.errors[0].contains("bogus"));
        assert_eq!(query.params.filter.queue_name.as_deref(), Some("a&b"));
        assert_eq!(query.params.cursor, PageCursor::Before(10));
        assert_eq!(
            query.link(Some(("after", 3))),
            "jobs?status=bogus&id=abc&queue=a%26b&after=3"
        );
    }
}
