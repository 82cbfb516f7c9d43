//! The browser harness drives a real headless Chromium: a page served here is opened,
//! clicked and read, escaped markup shows as text, screenshots are PNG files, and two
//! sessions run side by side on the one shared chromedriver.
//!
//! `cargo test -p postpone-testkit --test browser` (installs Chromium on first run as root).

use std::time::{Duration, Instant};

use postpone_testkit::{Browser, Error, WINDOW_SIZE, screenshot_path};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// What a "user" typed, which the server must show as text and never run.
const HOSTILE: &str = "<script>document.title = 'pwned'</script>";

/// The PNG file signature.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Escapes text for an HTML text node, as a server rendering user data must.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: a button whose click changes a text, and a hostile string, escaped.
fn page(label: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>harness {label}</title></head>
<body style="font-family: sans-serif">
  <h1>Postpone browser harness ({label})</h1>
  <p id="status">waiting</p>
  <button id="go" onclick="document.getElementById('status').textContent = 'clicked {label}'">Go</button>
  <p id="note">{note}</p>
</body></html>"#,
        note = escape_html(HOSTILE),
    )
}

/// Serves `page(label)` for `/?label` on a free port of 127.0.0.1 until the test ends;
/// returns the base URL.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port on 127.0.0.1");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request line is in the first read for requests as small as these.
                let mut request = vec![0; 4096];
                let Ok(read) = stream.read(&mut request).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&request[..read]);
                let target = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match target.split_once('?') {
                    Some(("/", label)) => ("200 OK", page(label)),
                    _ => ("404 Not Found", "not found".to_owned()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

/// A blocking `GET` to the WebDriver at `base` (`http://127.0.0.1:port`): status and
/// response. chromedriver keeps the connection open, so read up to `Content-Length`.
fn get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to chromedriver");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream.read(&mut buffer).expect("read the response");
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response);
        let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            let length = head.lines().find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            length.is_some_and(|length| body.len() >= length)
        });
        if read == 0 || complete {
            break;
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// One person's visit: open, click, read, screenshot. Returns the session id.
async fn visit(base: &str, label: &str) -> Result<String, Error> {
    let browser = Browser::shared().await?;
    let begun = Instant::now();
    let session = browser.session().await?;
    eprintln!("session {label} started in {:?}", begun.elapsed());
    let id = session.id().to_owned();

    session.goto(&format!("{base}/?{label}")).await?;
    assert_eq!(session.text("#status").await?, "waiting");
    session.click("#go").await?;
    session
        .wait_for_text("#status", &format!("clicked {label}"))
        .await?;

    // Escaped by the server, the script is text on the page and never ran.
    assert_eq!(session.text("#note").await?, HOSTILE);
    assert!(session.page_text().await?.contains(HOSTILE));
    assert_eq!(
        session.title().await.expect("title"),
        format!("harness {label}")
    );

    let path = screenshot_path(&format!("harness-{label}"));
    let _ = std::fs::remove_file(&path);
    session.screenshot(&path).await?;
    let png = std::fs::read(&path).expect("the screenshot was written");
    assert!(
        png.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
    // IHDR: width and height, big-endian, right after the signature and chunk header.
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((size(16), size(20)), WINDOW_SIZE, "the screenshot's size");
    eprintln!("screenshot {} ({}x{})", path.display(), size(16), size(20));

    session.close().await?;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_click_read_and_screenshot_in_parallel() {
    let base = serve().await;
    let begun = Instant::now();
    let browser = Browser::shared()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!(
        "chromedriver at {} ready after {:?} (install included when it ran)",
        browser.webdriver_url(),
        begun.elapsed()
    );
    let (first, second) = tokio::join!(visit(&base, "one"), visit(&base, "two"));
    let first = first.unwrap_or_else(|error| panic!("{error}"));
    let second = second.unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(first, second, "each visit has a session of its own");
}

#[tokio::test]
async fn a_missing_element_is_a_one_line_error_after_the_deadline() {
    let base = serve().await;
    let browser = Browser::shared()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let begun = Instant::now();
    let session = browser
        .session()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    eprintln!("one session alone started in {:?}", begun.elapsed());
    session
        .goto(&format!("{base}/?missing"))
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let begun = Instant::now();
    let error = session
        .wait_for_within("#nowhere", Duration::from_millis(300))
        .await
        .expect_err("no such element");
    assert!(begun.elapsed() >= Duration::from_millis(300));
    let message = error.to_string();
    assert!(matches!(error, Error::Browser(_)), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains("#nowhere") && message.contains(&base),
        "names the selector and the page: {message}"
    );
    // Not closed: dropping the session ends it.
    let id = session.id().to_owned();
    drop(session);
    let (status, body) = get(browser.webdriver_url(), &format!("/session/{id}/url"));
    assert_eq!(status, 404, "the dropped session is gone: {body}");
    assert!(body.contains("invalid session id"), "{body}");
    let again = browser
        .session()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(again.id(), id);
    again
        .close()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}
