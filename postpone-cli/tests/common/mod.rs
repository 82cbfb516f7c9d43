//! What the CLI's test binaries share: a runtime for their own async calls, the PostgreSQL
//! server (found or started by `postpone-testkit`), and fresh databases.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Runs a future on the shared runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// The server; a test never passes without one.
pub fn server() -> &'static postpone_testkit::Server {
    block_on(postpone_testkit::server()).unwrap_or_else(|error| panic!("{error}"))
}

/// Creates a fresh empty database `<prefix>_<pid>_<n>`; returns its name and URL.
pub fn create_database(prefix: &str) -> (String, String) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let server = server();
    block_on(async {
        server.drop_database(&name).await?;
        server.create_database(&name, None).await
    })
    .unwrap_or_else(|error| panic!("{error}"));
    let url = server.url(&name);
    (name, url)
}

/// Drops a database, on its own thread: this may run inside a panicking test.
pub fn drop_database(name: &str) {
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        let _ = block_on(server().drop_database(&name));
    })
    .join();
}
