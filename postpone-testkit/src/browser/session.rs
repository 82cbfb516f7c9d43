//! One browser session: a headless Chromium of its own, closed by [`Session::close`] or
//! when dropped, with helpers whose waits all have deadlines and whose errors name the page.

use std::fmt;
use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::{Browser, CHROMIUM, WAIT_DEFAULT, WINDOW_SIZE, first_line, http};
use crate::Error;

/// One headless Chromium, open until [`Session::close`] or drop. Derefs to the
/// [`fantoccini::Client`] for everything the helpers here do not cover.
pub struct Session {
    /// `None` once closed.
    client: Option<Client>,
    id: String,
    port: u16,
    profile: PathBuf,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client()
    }
}

impl Session {
    /// Starts a Chromium on `browser`'s chromedriver with its profile in `profile`.
    pub(super) async fn open(browser: &Browser, profile: PathBuf) -> Result<Session, Error> {
        let begun = Instant::now();
        let (width, height) = WINDOW_SIZE;
        let options = serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                format!("--window-size={width},{height}"),
                "--force-device-scale-factor=1",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-extensions",
                "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&browser.url)
            .await
            .map_err(|e| {
                Error::Browser(format!(
                    "chromedriver at {} could not start {CHROMIUM}: {} (see {})",
                    browser.url,
                    first_line(&e),
                    browser.dir.join("chromedriver.log").display()
                ))
            })?;
        let id = match client.session_id().await {
            Ok(Some(id)) => id,
            other => {
                let _ = client.close().await;
                return Err(Error::Browser(format!(
                    "chromedriver at {} started a session without telling its id ({other:?})",
                    browser.url
                )));
            }
        };
        let session = Session {
            client: Some(client),
            id,
            port: browser.port,
            profile,
        };
        // Dropped on error, which ends the session.
        session.fit_viewport().await?;
        tracing::debug!(id = %session.id, elapsed = ?begun.elapsed(), "browser session started");
        Ok(session)
    }

    /// The WebDriver client of this session.
    #[allow(clippy::missing_panics_doc)] // Only `close` takes the client, and it takes `self`.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a session's client is only taken by close(self)")
    }

    /// The WebDriver session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Opens `url` and waits until it has loaded.
    ///
    /// # Errors
    /// [`Error::Browser`] when the page cannot be opened.
    pub async fn goto(&self, url: &str) -> Result<(), Error> {
        self.client()
            .goto(url)
            .await
            .map_err(|e| Error::Browser(format!("cannot open {url}: {}", first_line(&e))))
    }

    /// The first element matching CSS selector `css`, waiting up to [`WAIT_DEFAULT`] for it.
    ///
    /// # Errors
    /// [`Error::Browser`] naming the selector and page when none appears in time.
    pub async fn wait_for(&self, css: &str) -> Result<Element, Error> {
        self.wait_for_within(css, WAIT_DEFAULT).await
    }

    /// [`Session::wait_for`] with a deadline of one's own.
    ///
    /// # Errors
    /// As [`Session::wait_for`].
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) -> Result<Element, Error> {
        match self
            .client()
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => Ok(element),
            Err(e) => Err(Error::Browser(format!(
                "no element matches `{css}` on {} within {:?}: {} (check the selector, or that the page renders it)",
                self.page().await,
                timeout,
                first_line(&e)
            ))),
        }
    }

    /// Waits up to [`WAIT_DEFAULT`] until the first element matching `css` shows text
    /// containing `expected`; returns that element.
    ///
    /// # Errors
    /// [`Error::Browser`] with the text last seen when it does not come in time.
    pub async fn wait_for_text(&self, css: &str, expected: &str) -> Result<Element, Error> {
        let deadline = Instant::now() + WAIT_DEFAULT;
        let mut seen;
        loop {
            // The element may be missing, or replaced between finding and reading it.
            match self.client().find(Locator::Css(css)).await {
                Ok(element) => match element.text().await {
                    Ok(text) if text.contains(expected) => return Ok(element),
                    Ok(text) => seen = format!("its text was {text:?}"),
                    Err(e) => seen = format!("its text could not be read: {}", first_line(&e)),
                },
                Err(e) => seen = format!("not found: {}", first_line(&e)),
            }
            if Instant::now() > deadline {
                return Err(Error::Browser(format!(
                    "`{css}` on {} did not show {expected:?} within {WAIT_DEFAULT:?}: {seen}",
                    self.page().await
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching `css`, waiting for it as [`Session::wait_for`] does.
    ///
    /// # Errors
    /// [`Error::Browser`] when it does not appear or cannot be clicked.
    pub async fn click(&self, css: &str) -> Result<(), Error> {
        match self.wait_for(css).await?.click().await {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::Browser(format!(
                "cannot click `{css}` on {}: {} (is it visible and not covered?)",
                self.page().await,
                first_line(&e)
            ))),
        }
    }

    /// The rendered text of the first element matching `css` (waiting for it).
    ///
    /// # Errors
    /// [`Error::Browser`] when it does not appear or its text cannot be read.
    pub async fn text(&self, css: &str) -> Result<String, Error> {
        match self.wait_for(css).await?.text().await {
            Ok(text) => Ok(text),
            Err(e) => Err(Error::Browser(format!(
                "cannot read the text of `{css}` on {}: {}",
                self.page().await,
                first_line(&e)
            ))),
        }
    }

    /// The page's rendered text (the `body`'s, as a person reads it: no markup, no scripts).
    ///
    /// # Errors
    /// As [`Session::text`].
    pub async fn page_text(&self) -> Result<String, Error> {
        self.text("body").await
    }

    /// Saves a PNG of the visible page ([`WINDOW_SIZE`]) to `path`, creating its directory.
    ///
    /// # Errors
    /// [`Error::Browser`] when the browser cannot take it or the file cannot be written.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let png = match self.client().screenshot().await {
            Ok(png) => png,
            Err(e) => {
                return Err(Error::Browser(format!(
                    "cannot take a screenshot of {}: {}",
                    self.page().await,
                    first_line(&e)
                )));
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| {
                Error::Browser(format!(
                    "cannot create {} for a screenshot: {e}",
                    parent.display()
                ))
            })?;
        }
        fs::write(path, png).map_err(|e| {
            Error::Browser(format!(
                "cannot write the screenshot {}: {e}",
                path.display()
            ))
        })
    }

    /// Ends the session: Chromium quits and its profile is removed.
    ///
    /// # Errors
    /// [`Error::Browser`] when `chromedriver` does not end it cleanly (its watchdog still
    /// will, when the process exits).
    pub async fn close(mut self) -> Result<(), Error> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let closed = client.close().await.map_err(|e| {
            Error::Browser(format!(
                "cannot close browser session {}: {}",
                self.id,
                first_line(&e)
            ))
        });
        let _ = fs::remove_dir_all(&self.profile);
        closed
    }

    /// Grows the window by what the (invisible) browser frame takes, so that the page itself
    /// gets [`WINDOW_SIZE`]: `--window-size` sizes the window, frame included.
    async fn fit_viewport(&self) -> Result<(), Error> {
        let fail = |what: &str, detail: String| {
            Error::Browser(format!(
                "cannot size the window of browser session {} to a {}x{} page ({what}): {detail}",
                self.id, WINDOW_SIZE.0, WINDOW_SIZE.1
            ))
        };
        let frame = self
            .client()
            .execute(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
                Vec::new(),
            )
            .await
            .map_err(|e| fail("measuring the frame", first_line(&e)))?;
        let extra = |index: usize| {
            frame[index]
                .as_u64()
                .and_then(|value| u32::try_from(value).ok())
                .unwrap_or(0)
        };
        let (width, height) = (WINDOW_SIZE.0 + extra(0), WINDOW_SIZE.1 + extra(1));
        if (width, height) != WINDOW_SIZE {
            self.client()
                .set_window_size(width, height)
                .await
                .map_err(|e| fail("resizing", first_line(&e)))?;
        }
        Ok(())
    }

    /// The page's URL, naming where something failed.
    async fn page(&self) -> String {
        match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(_) => format!("the page of browser session {}", self.id),
        }
    }
}

impl Drop for Session {
    /// Not closed by the test (it returned early or panicked): end the session with a
    /// blocking `DELETE` to `chromedriver`, since the test's runtime may be shutting down.
    fn drop(&mut self) {
        if self.client.take().is_none() {
            return;
        }
        let path = format!("/session/{}", self.id);
        if let Err(e) = http(self.port, "DELETE", &path, Duration::from_secs(10)) {
            tracing::warn!(id = %self.id, error = %e, "could not close a dropped browser session");
        }
        let _ = fs::remove_dir_all(&self.profile);
    }
}
