//! `GET /metrics`, served on an address of its own or mounted in your router.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// What can go wrong serving metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address is not `host:port`.
    #[error(
        "metrics address {address:?} is not host:port: give one like 127.0.0.1:9464 or 0.0.0.0:9464"
    )]
    InvalidAddress {
        /// As given.
        address: String,
    },
    /// The address cannot be bound.
    #[error(
        "cannot serve metrics on {address}: {source} (is another process using that port? pick another with --metrics-addr)"
    )]
    Bind {
        /// As given.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the metrics server on {address} failed: {source}")]
    Serve {
        /// Where it listened.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The OpenMetrics text format's content type (Prometheus asks for it and reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    /// A router answering `GET /metrics`, to merge into your own axum service.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = self.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response() }
            }),
        )
    }
}

/// Binds `address` (`host:port`; port 0 picks a free one), so that a bad or taken address
/// stops a worker before it starts.
///
/// # Errors
/// [`Error::InvalidAddress`], [`Error::Bind`].
pub async fn bind(address: &str) -> Result<TcpListener, Error> {
    let invalid = || Error::InvalidAddress {
        address: address.to_owned(),
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid());
    }
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind {
            address: address.to_owned(),
            source,
        })
}

/// Serves `GET /metrics` on `listener` until `stop` is cancelled.
///
/// # Errors
/// [`Error::Serve`] when the server fails.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    tracing::info!(%address, "serving metrics on /metrics");
    axum::serve(listener, metrics.router())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|source| Error::Serve { address, source })
}
