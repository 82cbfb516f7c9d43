//! Logs to stderr, and traces over OTLP when the standard `OTEL_*` variables ask for it.
//!
//! Logs: `--log-level` / `POSTPONE_LOG_LEVEL`, else `RUST_LOG`, else `warn`.
//!
//! Traces (the `otlp` feature, on by default): when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and neither `OTEL_SDK_DISABLED=true` nor
//! `OTEL_TRACES_EXPORTER=none`), Postpone's spans (`postpone.defer`, `postpone.claim`,
//! `postpone.job`, `postpone.complete`, and your tasks' own spans inside `postpone.job`)
//! are exported over OTLP/HTTP (protobuf) in batches by [`crate::otlp`], which reads the
//! other standard variables. Spans are recorded at `info`, whatever the log level. See
//! `docs/observability.md`.

/// Keeps the trace exporter alive; dropping it flushes the spans not sent yet.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("postpone: warning: could not flush the last traces: {error}");
            }
        }
    }
}

/// Installs the subscriber: logs, and the OTLP layer when asked; an exporter that cannot
/// be built is reported on one line and the command runs without it.
pub(crate) fn init(level: Option<&str>) -> Guard {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = level
        .and_then(|l| EnvFilter::try_new(l).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    #[cfg(feature = "otlp")]
    let (traces, guard) = match crate::otlp::layer() {
        Some((layer, provider)) => (
            Some(layer),
            Guard {
                provider: Some(provider),
            },
        ),
        None => (None, Guard::default()),
    };
    #[cfg(not(feature = "otlp"))]
    let (traces, guard) = (
        None::<tracing_subscriber::layer::Identity>,
        Guard::default(),
    );
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    guard
}

use tracing_subscriber::Layer as _;
