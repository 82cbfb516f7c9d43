//! Who may look and act: the token (bearer header or login cookie), the CSRF token of
//! every action, and the base path pages link from.
//!
//! Both secrets are random per process (the OS's random source): restarting the dashboard
//! logs everyone out and makes old forms stale. Should the random source fail, the
//! dashboard fails closed: no login succeeds and no action passes the CSRF check.
//! Tokens are compared in constant time.

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::{Shared, views};

/// The login cookie's name.
pub(crate) const SESSION_COOKIE: &str = "postpone_dashboard_session";

/// The per-process secrets: the CSRF token of forms and the session cookie's value.
pub(crate) struct Secrets {
    csrf: Option<String>,
    session: Option<String>,
}

fn random_hex() -> Option<String> {
    let mut bytes = [0_u8; 32];
    match getrandom::fill(&mut bytes) {
        Ok(()) => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Err(error) => {
            tracing::error!(%error, "no random source: logins and actions are refused");
            None
        }
    }
}

/// Equal, in constant time (lengths apart).
pub(crate) fn same(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

impl Secrets {
    pub(crate) fn generate() -> Self {
        Self {
            csrf: random_hex(),
            session: random_hex(),
        }
    }

    /// The token forms carry (empty when there is none: no form then passes).
    pub(crate) fn csrf(&self) -> &str {
        self.csrf.as_deref().unwrap_or("")
    }

    /// Whether a form's token is this process's.
    pub(crate) fn csrf_ok(&self, given: Option<&str>) -> bool {
        match (given, &self.csrf) {
            (Some(given), Some(expected)) => same(given, expected),
            _ => false,
        }
    }

    fn session_ok(&self, given: &str) -> bool {
        self.session
            .as_deref()
            .is_some_and(|expected| same(given, expected))
    }
}

/// Where the dashboard is mounted (`""` at the root, `"/dashboard"` when nested): pages
/// link relative to `<base href="{0}/">`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Base(pub(crate) String);

fn base_of(request: &Request) -> Base {
    let inner = request.uri().path();
    let outer = request
        .extensions()
        .get::<OriginalUri>()
        .map_or(inner, |uri| uri.0.path());
    let prefix = if inner == "/" {
        outer.trim_end_matches('/')
    } else {
        outer.strip_suffix(inner).unwrap_or("")
    };
    Base(prefix.to_owned())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Every request: records the base path; with a token configured, lets through only the
/// right bearer token or session cookie (and the login page and assets).
pub(crate) async fn require(
    State(state): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let base = base_of(&request);
    request.extensions_mut().insert(base.clone());
    let Some(token) = &state.config.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/login" || path.starts_with("/assets/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    let allowed = bearer(headers).is_some_and(|given| same(given, token))
        || cookie(headers, SESSION_COOKIE).is_some_and(|given| state.secrets.session_ok(given));
    if allowed {
        return next.run(request).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, views::login_page(&base, None)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"postpone dashboard\""),
    );
    response
}

/// `GET /login`.
pub(crate) async fn login_form(axum::Extension(base): axum::Extension<Base>) -> Response {
    views::login_page(&base, None).into_response()
}

/// `POST /login`: the right token sets the session cookie and goes to the overview.
pub(crate) async fn login(
    State(state): State<Shared>,
    axum::Extension(base): axum::Extension<Base>,
    body: axum::body::Bytes,
) -> Response {
    let token = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned());
    let right = match (&state.config.token, token) {
        (Some(expected), Some(given)) => same(&given, expected),
        _ => false,
    };
    let session = state.secrets.session.as_deref().filter(|_| right);
    let Some(session) = session else {
        return (
            StatusCode::UNAUTHORIZED,
            views::login_page(&base, Some("wrong token")),
        )
            .into_response();
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path={}/",
        base.0
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{}/", base.0))],
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
