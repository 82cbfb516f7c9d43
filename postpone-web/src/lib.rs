//! Postpone's web dashboard: queues, jobs, workers and periodic tasks of a Postpone (or
//! Procrastinate) database, with actions (retry, cancel, abort, delete, pause, resume),
//! served by `postpone dashboard` or mounted in your own axum service with [`router`].
//!
//! Everything it reads goes through [`postpone::JobManager`] (no SQL here, no connection of
//! its own), and every read stays cheap on a table of millions of jobs: see
//! `docs/dashboard.md` for the figures, the security model and how to mount it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let app = postpone::App::builder().database_url("postgres:///jobs")?.build()?;
//! let dashboard = postpone_web::router(&app, postpone_web::DashboardConfig::new());
//! // Mounted under a prefix of your own service:
//! let service = axum::Router::new().nest("/dashboard", dashboard);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, service).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod actions;
mod auth;
mod filters;
mod metrics;
mod pages;
mod throughput;
mod views;

/// The dashboard's guide (`docs/dashboard.md`), compiled here so that its example of
/// mounting the router is tested.
pub mod guide {
    #[doc = include_str!("../../docs/dashboard.md")]
    pub mod dashboard {}
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use postpone::{App, JobManager, Periodic};

/// Where `postpone dashboard` listens by default: loopback only.
pub const BIND_DEFAULT: &str = "127.0.0.1:8080";

/// How often pages refresh themselves, and the throughput sampler reads new events.
pub const REFRESH_INTERVAL_DEFAULT: Duration = Duration::from_secs(2);

/// Why the dashboard cannot serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// Bound beyond loopback without a token.
    #[error(
        "refusing to serve the dashboard on {addr} without authentication: set POSTPONE_DASHBOARD_TOKEN (or bind to 127.0.0.1)"
    )]
    Unprotected {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the dashboard's server failed")]
    Serve(#[source] std::io::Error),
}

/// How the dashboard behaves: read-only or not, its token.
#[derive(Clone, Default)]
pub struct DashboardConfig {
    read_only: bool,
    token: Option<String>,
}

impl std::fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("read_only", &self.read_only)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl DashboardConfig {
    /// Actions allowed, no authentication (fit for loopback only).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Read-only: no action buttons, and every action is refused with 403.
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Requires this token: as `Authorization: Bearer <token>`, or typed once into the
    /// login form (which sets a session cookie). An empty token is no token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Whether actions are refused.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether a token is required.
    #[must_use]
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }
}

/// What the dashboard shows: a job manager, and the periodic registrations of an app
/// (their schedules and next ticks) when built from one.
#[derive(Debug, Clone)]
pub struct DashboardSource {
    manager: JobManager,
    periodic: Vec<Periodic>,
}

impl From<&App> for DashboardSource {
    /// The app's store, its connections without JIT compilation (the dashboard's reads on
    /// a large table are estimated costly and run in milliseconds; compiling them would
    /// take hundreds), or as it is where sessions cannot be set (poll-only mode).
    fn from(app: &App) -> Self {
        let settings = postpone::store::SessionSettings::default().with_jit_off(true);
        let manager = match app.store().with_session(&settings) {
            Ok(store) => JobManager::new(store),
            Err(error) => {
                tracing::info!(%error, "dashboard: JIT stays as the server sets it");
                app.job_manager()
            }
        };
        Self {
            manager,
            periodic: app.periodic_tasks().to_vec(),
        }
    }
}

impl From<JobManager> for DashboardSource {
    fn from(manager: JobManager) -> Self {
        Self {
            manager,
            periodic: Vec::new(),
        }
    }
}

/// What every handler shares.
pub(crate) struct State {
    pub(crate) manager: JobManager,
    pub(crate) periodic: Vec<Periodic>,
    pub(crate) config: DashboardConfig,
    pub(crate) secrets: auth::Secrets,
    pub(crate) throughput: Arc<throughput::Throughput>,
}

pub(crate) type Shared = Arc<State>;

/// The dashboard as a router: mount it at the root or under a prefix (`nest`). Its pages
/// link relative to where it is mounted. The throughput sampler starts with the first
/// request and stops when the router is dropped.
pub fn router(source: impl Into<DashboardSource>, config: DashboardConfig) -> Router {
    let source = source.into();
    let state: Shared = Arc::new(State {
        manager: source.manager,
        periodic: source.periodic,
        config,
        secrets: auth::Secrets::generate(),
        throughput: Arc::new(throughput::Throughput::default()),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/bulk", post(actions::bulk))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/{action}", post(actions::job))
        .route("/queues", get(pages::queues))
        .route("/queues/{name}/{action}", post(actions::queue))
        .route("/workers", get(pages::workers))
        .route("/periodic", get(pages::periodic))
        .route("/metrics", get(metrics::metrics))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/assets/dashboard.js", get(views::script))
        .route("/assets/dashboard.css", get(views::style))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

/// Refuses an address beyond loopback when no token is configured.
///
/// # Errors
/// [`DashboardError::Unprotected`].
pub fn check_bind(addr: SocketAddr, config: &DashboardConfig) -> Result<(), DashboardError> {
    if !addr.ip().is_loopback() && !config.requires_token() {
        return Err(DashboardError::Unprotected { addr });
    }
    Ok(())
}

/// Serves the dashboard on `addr` until `shutdown` completes (requests in flight finish).
/// Refuses to start beyond loopback without a token ([`check_bind`]).
///
/// # Errors
/// [`DashboardError::Unprotected`], [`DashboardError::Bind`], [`DashboardError::Serve`].
pub async fn serve(
    source: impl Into<DashboardSource>,
    addr: SocketAddr,
    config: DashboardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    check_bind(addr, &config)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| DashboardError::Bind { addr, source })?;
    tracing::info!(%local, read_only = config.read_only(), "dashboard listening");
    serve_on(listener, source, config, shutdown).await
}

/// [`serve`] on a listener you bound (port 0 in tests, a socket handed over by systemd).
/// The loopback rule is checked against the listener's address.
///
/// # Errors
/// As [`serve`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    source: impl Into<DashboardSource>,
    config: DashboardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    let addr = listener.local_addr().map_err(DashboardError::Serve)?;
    check_bind(addr, &config)?;
    axum::serve(listener, router(source, config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(DashboardError::Serve)
}
