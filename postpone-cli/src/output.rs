//! What the commands print: aligned tables and lines for humans, one JSON document for
//! machines (`--json`). Results go to stdout; errors and logs go to stderr.

use std::io::Write as _;

use postpone::JobStatus;
use postpone::store::JobCounts;
use serde::Serialize;

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text for humans.
    Human,
    /// One JSON document.
    Json,
}

impl Format {
    /// `--json` or not.
    #[must_use]
    pub fn from_json_flag(json: bool) -> Self {
        if json { Self::Json } else { Self::Human }
    }

    /// True for `--json`.
    #[must_use]
    pub fn is_json(self) -> bool {
        self == Self::Json
    }
}

/// Writes `text` to stdout; a closed pipe (`postpone jobs list | head`) is not an error.
///
/// # Errors
/// Other I/O errors on stdout.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Prints `value` as one pretty JSON document and a newline.
///
/// # Errors
/// Serialisation or I/O errors.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print(&text)
}

/// A table: a header row and rows of cells, printed with aligned columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    numeric: Vec<bool>,
}

impl Table {
    /// A table with these column names; columns named in `numeric` are right-aligned.
    #[must_use]
    pub fn new(headers: &[&str], numeric: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            numeric: headers.iter().map(|h| numeric.contains(h)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    /// True without rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, columns separated by two spaces, no trailing spaces.
    #[must_use]
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                if self.numeric[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// The statuses shown in count tables (`aborting` is a legacy status, shown in JSON only).
pub const COUNTED_STATUSES: [JobStatus; 6] = [
    JobStatus::Todo,
    JobStatus::Doing,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Cancelled,
    JobStatus::Aborted,
];

/// Per-status counts as a table: `name | jobs | todo | doing | ... | aborted`.
#[must_use]
pub fn counts_table(name: &str, counts: &[JobCounts]) -> Table {
    counts_table_with(name, None, counts.iter().map(|row| (row, None)))
}

/// [`counts_table`] with one more column after the name (`extra`: its header).
fn counts_table_with<'a>(
    name: &str,
    extra: Option<&str>,
    rows: impl Iterator<Item = (&'a JobCounts, Option<String>)>,
) -> Table {
    let mut headers: Vec<&str> = std::iter::once(name).chain(extra).collect();
    headers.push("jobs");
    headers.extend(COUNTED_STATUSES.iter().map(|s| s.as_str()));
    let mut numeric = vec!["jobs"];
    numeric.extend(COUNTED_STATUSES.iter().map(|s| s.as_str()));
    let mut table = Table::new(&headers, &numeric);
    for (row, extra) in rows {
        let mut cells: Vec<String> = std::iter::once(row.name.clone()).chain(extra).collect();
        cells.push(row.jobs_count.to_string());
        cells.extend(COUNTED_STATUSES.iter().map(|s| row.count(*s).to_string()));
        table.push(cells);
    }
    table
}

/// Per-status counts as JSON objects, every status present (Procrastinate's
/// `list_queues` shape): `{"name", "jobs_count", "todo", "doing", ...}`.
#[must_use]
pub fn counts_json(counts: &[JobCounts]) -> serde_json::Value {
    counts
        .iter()
        .map(|row| serde_json::Value::Object(count_object(row)))
        .collect()
}

/// One row of [`counts_json`].
fn count_object(row: &JobCounts) -> serde_json::Map<String, serde_json::Value> {
    let mut object = serde_json::Map::new();
    object.insert("name".to_owned(), row.name.clone().into());
    object.insert("jobs_count".to_owned(), row.jobs_count.into());
    for status in JobStatus::ALL {
        object.insert(status.as_str().to_owned(), row.count(status).into());
    }
    object
}

/// One queue of `postpone queues`: its counts, and since when it is paused.
#[derive(Debug)]
pub(crate) struct QueueRow {
    pub(crate) counts: JobCounts,
    pub(crate) paused_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The queues of `postpone queues`: [`counts_table`] with a `paused` column (`since
/// <time>`, or `-`).
#[must_use]
pub(crate) fn queues_table(rows: &[QueueRow]) -> Table {
    let paused = |row: &QueueRow| {
        row.paused_at.map_or_else(
            || "-".to_owned(),
            |at| {
                format!(
                    "since {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            },
        )
    };
    counts_table_with(
        "queue",
        Some("paused"),
        rows.iter().map(|row| (&row.counts, Some(paused(row)))),
    )
}

/// The queues as JSON: [`counts_json`]'s objects with `paused` and `paused_at`.
#[must_use]
pub(crate) fn queues_json(rows: &[QueueRow]) -> serde_json::Value {
    rows.iter()
        .map(|row| {
            let mut object = count_object(&row.counts);
            object.insert("paused".to_owned(), row.paused_at.is_some().into());
            object.insert("paused_at".to_owned(), serde_json::json!(row.paused_at));
            serde_json::Value::Object(object)
        })
        .collect()
}

/// An optional cell: the value, or `-`.
#[must_use]
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut table = Table::new(&["name", "jobs"], &["jobs"]);
        table.push(vec!["default".into(), "3".into()]);
        table.push(vec!["q".into(), "120".into()]);
        assert_eq!(
            table.render(),
            "name     jobs\ndefault     3\nq         120\n"
        );
    }
}
