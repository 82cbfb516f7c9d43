//! `postpone dashboard` as a process: the refusals (an address beyond loopback without a
//! token, an address that cannot be bound, one that does not parse) are one line and a
//! non-zero exit; a dashboard serves pages and stops on SIGTERM with exit 0.
//!
//! Run with: `cargo test -p postpone-cli --test dashboard`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Output, run};

fn postpone() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_postpone"))
}

/// A refusal: exit 1, exactly one line on stderr holding every needle.
fn assert_refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line: {out:?}");
    assert!(lines[0].starts_with("postpone: error: "), "{out:?}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "stderr lacks {needle:?}: {out:?}"
        );
    }
}

#[test]
fn beyond_loopback_without_a_token_it_refuses_to_start() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let out = run(common::command(
        postpone(),
        url,
        &["dashboard", "--bind", "0.0.0.0:0"],
    ));
    assert_refused(&out, &["0.0.0.0:0", "set POSTPONE_DASHBOARD_TOKEN"]);
    let mut command = common::command(postpone(), url, &["dashboard"]);
    command.env("POSTPONE_DASHBOARD_BIND", "0.0.0.0:0");
    assert_refused(&run(command), &["POSTPONE_DASHBOARD_TOKEN"]);
}

#[test]
fn an_address_that_cannot_be_bound_is_one_line() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(common::command(
        postpone(),
        url,
        &["dashboard", "--bind", &addr],
    ));
    assert_refused(&out, &["cannot listen on", &addr]);
    let out = run(common::command(
        postpone(),
        url,
        &["dashboard", "--bind", "nowhere"],
    ));
    assert_refused(&out, &["--bind \"nowhere\" is not an address"]);
}

#[test]
fn it_serves_pages_and_stops_on_sigterm() {
    let (name, url) = common::create_database("postpone_clidash");
    let applied = run(common::command(postpone(), &url, &["schema", "apply"]));
    assert_eq!(applied.code, 0, "{applied:?}");
    let mut child = common::command(postpone(), &url, &["dashboard", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("postpone dashboard: http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .write_all(b"GET /queues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    common::drop_database(&name);
    assert_eq!(status.code(), Some(0), "{status:?}");
}
