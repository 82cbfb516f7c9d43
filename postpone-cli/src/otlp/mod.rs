//! Trace export over OTLP/HTTP (protobuf), configured by the standard `OTEL_*` variables.
//!
//! - [`Config`] reads the variables: where (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, as
//!   given, or `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), with which headers
//!   (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TRACES_HEADERS`) and timeout
//!   (`OTEL_EXPORTER_OTLP_TIMEOUT`, `..._TRACES_TIMEOUT`), and the batches
//!   (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`).
//!   The SDK's provider reads the rest itself: the sampler (`OTEL_TRACES_SAMPLER`,
//!   `OTEL_TRACES_SAMPLER_ARG`) and the resource (`OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`).
//! - [`processor`] batches the spans and posts them; [`encode`] writes them as protobuf.
//! - [`layer`] puts it together as a `tracing` layer.
//!
//! Why not the SDK's batch processor with the OTLP crate's exporter: ADR 20.

pub(crate) mod encode;
pub(crate) mod processor;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter};

/// Where and how spans are exported, from the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    /// The URL spans are posted to.
    pub(crate) endpoint: String,
    /// Extra request headers (authentication, tenant).
    pub(crate) headers: Vec<(String, String)>,
    /// The longest one request may take.
    pub(crate) timeout: Duration,
    /// Spans per request at most.
    pub(crate) batch_size: usize,
    /// The longest a span waits for its batch to fill.
    pub(crate) schedule_delay: Duration,
    /// Spans waiting to be sent at most; more are dropped and counted.
    pub(crate) queue_size: usize,
    /// Settings that were not understood and left at their defaults, one line each.
    pub(crate) warnings: Vec<String>,
}

impl Config {
    /// Reads the configuration through `var` (the environment, in the binary).
    ///
    /// `Ok(None)`: export is not asked for (no endpoint, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`).
    ///
    /// # Errors
    /// Export is asked for but cannot be done as asked: one line saying why.
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            _ if disabled => return Ok(None),
            (Some(traces), _) => traces,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        match reqwest::Url::parse(&endpoint) {
            Ok(url) if url.scheme() == "http" => {}
            Ok(_) => {
                return Err(format!(
                    "the OTLP endpoint {endpoint} is not an http:// URL, and this build exports over plain http only: point it at a collector's http://…:4318 receiver"
                ));
            }
            Err(error) => {
                return Err(format!(
                    "the OTLP endpoint {endpoint:?} is not a URL ({error}): set OTEL_EXPORTER_OTLP_ENDPOINT to one like http://localhost:4318"
                ));
            }
        }
        // A setting and the variable it came from: the traces' own, else the common one.
        let named = |name: String| var(&name).map(|value| (name, value));
        let signal = |name: &str| {
            named(format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .or_else(|| named(format!("OTEL_EXPORTER_OTLP_{name}")))
        };
        if let Some((name, protocol)) = signal("PROTOCOL").filter(|(_, p)| p != "http/protobuf") {
            return Err(format!(
                "{name} is {protocol:?}; this build exports http/protobuf only: unset it or set it to http/protobuf"
            ));
        }
        let mut warnings = Vec::new();
        if let Some((name, compression)) = signal("COMPRESSION").filter(|(_, c)| c != "none") {
            warnings.push(format!(
                "{name}={compression} is not supported; spans go uncompressed"
            ));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            for pair in var(name).iter().flat_map(|v| v.split(',')) {
                match parse_header(pair) {
                    Some((key, value)) => {
                        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                        headers.push((key, value));
                    }
                    None if pair.trim().is_empty() => {}
                    None => warnings.push(format!(
                        "{name}: {pair:?} is not key=value (URL-encoded); left out"
                    )),
                }
            }
        }
        let mut number = |setting: Option<(String, String)>, default: u64| match setting {
            None => default,
            Some((name, text)) => match text.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!(
                        "{name}={text:?} is not a positive whole number; {default} is used"
                    ));
                    default
                }
            },
        };
        let timeout = number(signal("TIMEOUT"), 10_000);
        let batch_size = number(named("OTEL_BSP_MAX_EXPORT_BATCH_SIZE".into()), 512);
        let schedule_delay = number(named("OTEL_BSP_SCHEDULE_DELAY".into()), 5_000);
        let queue_size = number(named("OTEL_BSP_MAX_QUEUE_SIZE".into()), 2_048);
        Ok(Some(Self {
            endpoint,
            headers,
            timeout: Duration::from_millis(timeout),
            batch_size: usize::try_from(batch_size).unwrap_or(512),
            schedule_delay: Duration::from_millis(schedule_delay),
            queue_size: usize::try_from(queue_size).unwrap_or(2_048),
            warnings,
        }))
    }
}

/// `key=value`, the value URL-encoded (`%20`); `None` when it is not one.
fn parse_header(pair: &str) -> Option<(String, String)> {
    let (key, value) = pair.split_once('=')?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty()
        || value.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return None;
    }
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    // A header value cannot hold a line break.
    (!value.contains(['\r', '\n'])).then(|| (key.to_owned(), value))
}

/// The tracing layer exporting spans over OTLP/HTTP, and its provider (to flush at exit);
/// `None` when the environment does not ask for export. A configuration that cannot be
/// used is reported on one line, and the command runs without export.
pub(crate) fn layer<S>() -> Option<(impl Layer<S>, SdkTracerProvider)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let config = match Config::from_env(|name| std::env::var(name).ok()) {
        Ok(Some(config)) => config,
        Ok(None) => return None,
        Err(error) => {
            eprintln!("postpone: warning: traces not exported: {error}");
            return None;
        }
    };
    for warning in &config.warnings {
        eprintln!("postpone: warning: {warning}");
    }
    let processor = match processor::OtlpProcessor::start(config) {
        Ok(processor) => processor,
        Err(error) => {
            eprintln!("postpone: warning: traces not exported: {error}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Config;

    fn from(vars: &[(&str, &str)]) -> Result<Option<Config>, String> {
        Config::from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn config(vars: &[(&str, &str)]) -> Config {
        from(vars)
            .expect("a usable configuration")
            .expect("export asked for")
    }

    #[test]
    fn export_is_asked_for_by_an_endpoint_and_turned_off_by_the_standard_switches() {
        assert_eq!(from(&[]), Ok(None));
        assert_eq!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]), Ok(None));
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]),
                Ok(None)
            );
        }
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            (c.timeout, c.batch_size, c.schedule_delay, c.queue_size),
            (Duration::from_secs(10), 512, Duration::from_secs(5), 2_048)
        );
        assert!(c.headers.is_empty() && c.warnings.is_empty());
        // The signal's own endpoint is taken as it is, and wins.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        assert_eq!(c.endpoint, "http://traces:9999/custom");
    }

    #[test]
    fn an_endpoint_or_protocol_it_cannot_serve_is_one_line_saying_what_to_set() {
        for (vars, says) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "plain http",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
                "plain http",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
                "is not a URL",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL is \"grpc\"; this build exports http/protobuf only",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is \"http/json\"",
            ),
        ] {
            let error = from(&vars).expect_err("refused");
            assert!(
                error.contains(says) && !error.contains('\n'),
                "{vars:?}: {error}"
            );
        }
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(c.endpoint, "http://c:4318/v1/traces");
    }

    #[test]
    fn headers_are_decoded_and_the_signals_own_win() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20YWxhZGRpbg%3D%3D, x-tenant = acme ,,broken,=empty,bad key=v",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-tenant=traces-team,x-line=a%0Ab",
            ),
        ]);
        assert_eq!(
            c.headers,
            [
                ("Authorization".to_owned(), "Basic YWxhZGRpbg==".to_owned()),
                ("x-tenant".to_owned(), "traces-team".to_owned()),
            ]
        );
        // Each entry left out is named, on a line of its own.
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        for (warning, entry) in c
            .warnings
            .iter()
            .zip(["broken", "=empty", "bad key=v", "x-line"])
        {
            assert!(warning.contains(entry), "{warning}");
        }
    }

    #[test]
    fn numbers_not_understood_keep_their_defaults_with_a_warning() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "1s"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8192"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ]);
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.batch_size, 512);
        assert_eq!(c.schedule_delay, Duration::from_secs(5));
        assert_eq!(c.queue_size, 8_192);
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip"));
        assert!(c.warnings[1].contains("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"0\""));
        assert!(c.warnings[2].contains("OTEL_BSP_SCHEDULE_DELAY=\"1s\""));
    }
}
