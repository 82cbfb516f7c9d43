//! The layers of `postpone/src`, read from the code (docs/architecture.md says why):
//! the storage layer imports nothing above it, the domain imports no runtime part, and the
//! worker names no PostgreSQL type. Same reading as `../shared/tools/layers.py`: the
//! `crate::<module>` paths of each file, its `#[cfg(test)] mod tests` left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The storage layer: it imports only itself.
const STORAGE: &[&str] = &["store", "schema", "job", "protocol", "connect", "error"];
/// The domain: what tasks, deferring and the manager are; it may import the storage layer.
const DOMAIN: &[&str] = &[
    "app",
    "blueprint",
    "builtin",
    "context",
    "defer",
    "flow",
    "manager",
    "middleware",
    "periodic",
    "result",
    "retry",
    "task",
    "telemetry",
    "trace",
    "workflow",
];
/// The runtime: the worker and its services; it may import the domain and the storage.
const RUNTIME: &[&str] = &["worker", "maintenance"];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Every `crate::<module>` a source names (in `use crate::{a, b::c}` groups too).
fn imports(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `postpone_crate::` or the like
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(ident(item.trim()));
            }
        } else {
            found.insert(ident(rest));
        }
    }
    // Modules are lower case; `crate::Error` and the like are re-exports at the root.
    found.retain(|m| m.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'));
    found
}

#[test]
fn each_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs"))
            .expect("a file name");
        let allowed: Vec<&str> = if STORAGE.contains(&top) {
            STORAGE.to_vec()
        } else if DOMAIN.contains(&top) {
            [STORAGE, DOMAIN].concat()
        } else if RUNTIME.contains(&top) {
            [STORAGE, DOMAIN, RUNTIME].concat()
        } else {
            continue; // lib.rs and testing.rs (helpers for users' tests) sit on top
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for module in imports(&text) {
            if module != "self" && !allowed.contains(&module.as_str()) {
                wrong.push(format!("{} -> {module}", relative.display()));
            }
        }
    }
    assert!(files.len() > 40, "sources found: {}", files.len());
    assert_eq!(wrong, Vec::<String>::new(), "imports against the layers");
}

#[test]
fn the_worker_names_no_postgresql_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for part in RUNTIME {
        sources(&src.join(part), &mut files);
    }
    let mut named = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for needle in [
            "tokio_postgres",
            "deadpool",
            "postgres::",
            "PgStore",
            "connect::",
        ] {
            if text.contains(needle) {
                named.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(files.len() >= 10, "sources found: {}", files.len());
    assert_eq!(
        named,
        Vec::<String>::new(),
        "the worker goes around the store"
    );
}

#[test]
fn the_reading_finds_grouped_and_plain_imports() {
    let text = "use crate::{Error, job::Job, store};\nuse crate::worker::X;\n\
                #[cfg(test)]\nmod tests { use crate::app::App; }";
    assert_eq!(
        imports(text).into_iter().collect::<Vec<_>>(),
        ["job", "store", "worker"]
    );
}
