//! The HTML around every page, the assets, and small pieces shared by pages. Every value is
//! written through maud's `html!`, which escapes it (`<script>` in a job's args shows as
//! text); nothing is inserted with `PreEscaped` but the embedded assets and the SVG shapes
//! built here from numbers.
//!
//! Elements tests and browsers look for carry `id`s or `data-testid`s: `flash`,
//! `count-<queue>-<status>`, the filter fields (`filter-<key>`), `csrf`, the action buttons
//! (`action-<action>`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::State;
use crate::auth::Base;

const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

/// `GET /assets/dashboard.js`.
pub(crate) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /assets/dashboard.css`.
pub(crate) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

const NAV: [(&str, &str); 5] = [
    ("", "Overview"),
    ("jobs", "Jobs"),
    ("queues", "Queues"),
    ("workers", "Workers"),
    ("periodic", "Periodic"),
];

/// A whole page.
pub(crate) fn page(base: &Base, state: &State, title: &str, active: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                base href={ (base.0) "/" };
                title { (title) " · Postpone" }
                link rel="stylesheet" href="assets/dashboard.css";
                script src="assets/dashboard.js" defer {}
            }
            body {
                header {
                    strong { "Postpone" }
                    nav {
                        @for (href, label) in NAV {
                            @let href = if href.is_empty() { "./" } else { href };
                            a href=(href) class=[(label.eq_ignore_ascii_case(active)).then_some("active")] { (label) }
                        }
                    }
                    @if state.config.read_only() {
                        span.badge data-testid="read-only" { "read-only" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page that says one thing: an error, or what an action did.
/// The 404 page of a job: why it is not there, and a link to the list.
pub(crate) fn job_not_found(base: &Base, state: &State, why: String) -> Response {
    message(
        base,
        state,
        StatusCode::NOT_FOUND,
        "Job not found",
        &[why],
        Some(("jobs", "Jobs")),
    )
}

pub(crate) fn message(
    base: &Base,
    state: &State,
    status: StatusCode,
    title: &str,
    lines: &[String],
    back: Option<(&str, &str)>,
) -> Response {
    let kind = if status.is_success() { "ok" } else { "error" };
    let body = html! {
        h1 { (title) }
        div #flash .flash.(kind) data-testid="flash" role="status" {
            @for line in lines { p { (line) } }
        }
        @if let Some((href, label)) = back {
            p { a href=(href) { (label) } }
        }
    };
    (status, page(base, state, title, "", &body)).into_response()
}

/// The login form (token configured, no session).
pub(crate) fn login_page(base: &Base, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                base href={ (base.0) "/" };
                title { "Log in · Postpone" }
                link rel="stylesheet" href="assets/dashboard.css";
            }
            body {
                main {
                    h1 { "Postpone dashboard" }
                    @if let Some(error) = error {
                        div #flash .flash.error data-testid="flash" { p { (error) } }
                    }
                    form method="post" action="login" {
                        label { "Token " input type="password" name="token" id="token" autofocus; }
                        " "
                        button type="submit" { "Log in" }
                    }
                    p.hint { "The token is the dashboard's POSTPONE_DASHBOARD_TOKEN; scripts send it as Authorization: Bearer." }
                }
            }
        }
    }
}

/// The hidden CSRF field of every action form.
pub(crate) fn csrf_field(state: &State) -> Markup {
    html! { input type="hidden" name="csrf" id="csrf" data-testid="csrf" value=(state.secrets.csrf()); }
}

/// A one-button action form, asking for confirmation (JS `confirm`; without JS the server
/// shows a confirmation page).
pub(crate) fn action_button(
    state: &State,
    action: &str,
    href: &str,
    label: &str,
    question: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(href) data-confirm=(question) {
            (csrf_field(state))
            button type="submit" id={ "action-" (action) } data-testid={ "action-" (action) } { (label) }
        }
    }
}

/// A count that is a lower bound shows as "n+".
pub(crate) fn capped(n: i64, lower_bound: bool) -> String {
    if lower_bound {
        format!("{}+", thousands(n))
    } else {
        thousands(n)
    }
}

/// 1234567 as "1,234,567".
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Seconds as "4s", "3m 12s", "2h 5m", "3d 4h".
pub(crate) fn age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "0s".to_owned();
    }
    // Whole seconds of any realistic age fit.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A time as `2024-05-01 12:00:00 UTC`.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Bars of per-minute counts, succeeded over failed, as inline SVG.
pub(crate) fn chart(succeeded: &[(DateTime<Utc>, i64)], failed: &[(DateTime<Utc>, i64)]) -> Markup {
    const W: i64 = 24;
    const H: i64 = 80;
    let max = succeeded
        .iter()
        .zip(failed)
        .map(|((_, s), (_, f))| s + f)
        .max()
        .unwrap_or(0)
        .max(1);
    let width = W * i64::try_from(succeeded.len()).unwrap_or(0);
    let mut shapes = String::new();
    for (i, ((minute, s), (_, f))) in (0_i64..).zip(succeeded.iter().zip(failed)) {
        let hs = s * H / max;
        let hf = f * H / max;
        let x = i * W;
        let label = format!("{} succeeded {s}, failed {f}", minute.format("%H:%M"));
        shapes.push_str(&format!(
            "<g><title>{label}</title><rect class=\"ok\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{hs}\"/><rect class=\"ko\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{hf}\"/></g>",
            H - hs - hf,
            W - 2,
            H - hf,
            W - 2
        ));
    }
    html! {
        svg.chart data-testid="throughput-chart" width=(width) height=(H) viewBox={ "0 0 " (width) " " (H) } role="img" {
            (PreEscaped(shapes))
        }
    }
}
