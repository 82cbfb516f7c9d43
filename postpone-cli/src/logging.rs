//! Logs to stderr, and traces over OTLP when the standard `OTEL_*` variables ask for it.
//!
//! Logs: `--log-level` / `POSTPONE_LOG_LEVEL`, else `RUST_LOG`, else `warn`.
//!
//! Traces (the `otlp` feature, on by default): when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and neither `OTEL_SDK_DISABLED=true` nor
//! `OTEL_TRACES_EXPORTER=none`), Postpone's spans (`postpone.defer`, `postpone.claim`,
//! `postpone.job`, `postpone.complete`, and your tasks' own spans inside `postpone.job`)
//! are exported over OTLP/HTTP (protobuf) in batches. The exporter reads the other
//! standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`), the resource
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Spans are recorded at `info`,
//! whatever the log level. See `docs/observability.md`.

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
    let (traces, guard) = match otlp::layer() {
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

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::Level;
    use tracing::subscriber::Interest;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, Filter};

    fn set(name: &str) -> bool {
        std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
    }

    /// Whether the environment asks for trace export.
    pub(super) fn wanted() -> bool {
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
        !disabled
            && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    }

    /// The tracing layer exporting spans over OTLP/HTTP, and its provider (to flush).
    pub(super) fn layer<S>() -> Option<(impl Layer<S>, SdkTracerProvider)>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        if !wanted() {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(error) => {
                eprintln!(
                    "postpone: warning: traces not exported: cannot build the OTLP exporter from the OTEL_* variables: {error}"
                );
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        // Only the spans' own fields: the source location, target, thread and busy/idle
        // times the bridge adds by default cost more than the rest of a job's span (W3T).
        // No OpenTelemetry context is attached on each poll of a span: spans inside a job
        // find their parent through tracing's own current span, and `Span::context()`
        // (tracing-opentelemetry's `OpenTelemetrySpanExt`) still gives a task its job's
        // context to propagate; attaching it cost every poll of every job a clock read and
        // a thread-local push.
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("postpone"))
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(SpansAndWarnings);
        Some((layer, provider))
    }

    /// Spans from `info`, events (span events in the trace) from `warn`: a worker's info
    /// logs (one per job) would otherwise cost every job a trip through the layers. The
    /// answer depends on the callsite alone, so tracing caches it per callsite and asks
    /// no filter again for each event.
    struct SpansAndWarnings;

    impl SpansAndWarnings {
        fn wants(metadata: &tracing::Metadata<'_>) -> bool {
            let most = if metadata.is_span() {
                Level::INFO
            } else {
                Level::WARN
            };
            *metadata.level() <= most
        }
    }

    impl<S> Filter<S> for SpansAndWarnings {
        fn enabled(&self, metadata: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
            Self::wants(metadata)
        }

        fn callsite_enabled(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
            if Self::wants(metadata) {
                Interest::always()
            } else {
                Interest::never()
            }
        }

        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::INFO)
        }
    }
}
