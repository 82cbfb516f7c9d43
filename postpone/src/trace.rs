//! Tracing spans across the queue, and the OpenTelemetry link from a job's run to the
//! span that deferred it.
//!
//! Postpone's code emits `tracing` spans (always; they cost next to nothing unless a
//! subscriber enables them at `info`):
//!
//! | span | where | fields |
//! |---|---|---|
//! | `postpone.defer` | a defer call (`App::defer`, `Configured::defer`, `defer_in`) | `task`, `queue`, `job_id` |
//! | `postpone.claim` | one claim round trip of a worker | `worker_id`, `limit`, `jobs` |
//! | `postpone.job` | one attempt of a job, the task's own spans inside it | `task`, `queue`, `job_id`, `attempt`, `worker_id`, `outcome` |
//! | `postpone.complete` | one batch of outcomes written | `worker_id`, `jobs` |
//!
//! With the `opentelemetry` feature, and the `tracing-opentelemetry` layer installed
//! (`postpone worker` installs it when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set), a defer call made inside a sampled span
//! keeps that span's W3C `traceparent` beside the job (`postpone_job_traces`, never in
//! its args: a Python task receives its args as keyword arguments), and the job's
//! `postpone.job` span carries an OpenTelemetry *link* to it: the job runs in a trace of
//! its own (it may run much later, or many times), linked to the request that asked for
//! it. See `docs/observability.md`.

use crate::job::Job;

/// The span of one attempt of `job`, linked to the span that deferred it when its trace
/// context was kept.
pub(crate) fn job_span(job: &Job, worker_id: i64) -> tracing::Span {
    let span = tracing::info_span!(
        "postpone.job",
        task = job.task_name.as_str(),
        queue = job.queue_name.as_str(),
        job_id = job.id,
        attempt = job.attempts + 1,
        worker_id,
        outcome = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    if let Some(parent) = job.trace_context.as_deref() {
        otel::link(&span, parent);
    }
    span
}

/// The `traceparent` of `span` (or, when no layer records it, of the current span), when
/// it is a sampled OpenTelemetry span; always `None` without the `opentelemetry` feature.
#[cfg_attr(not(feature = "opentelemetry"), allow(unused_variables))]
pub(crate) fn context_of(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::traceparent(span).or_else(|| otel::traceparent(&tracing::Span::current()))
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// A span's context as a W3C `traceparent`, when valid and sampled.
    pub(super) fn traceparent(span: &tracing::Span) -> Option<String> {
        let context = span.context();
        let span = context.span();
        let span_context = span.span_context();
        (span_context.is_valid() && span_context.is_sampled()).then(|| {
            format!(
                "00-{}-{}-{:02x}",
                span_context.trace_id(),
                span_context.span_id(),
                span_context.trace_flags().to_u8()
            )
        })
    }

    /// Parses a W3C `traceparent` (version 00); `None` when it is not one.
    pub(super) fn parse(traceparent: &str) -> Option<SpanContext> {
        let mut parts = traceparent.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace_id.len() != 32 || span_id.len() != 16
        {
            return None;
        }
        let context = SpanContext::new(
            TraceId::from_hex(trace_id).ok()?,
            SpanId::from_hex(span_id).ok()?,
            TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
            true,
            TraceState::default(),
        );
        context.is_valid().then_some(context)
    }

    /// Links `span` to the span `traceparent` names; a malformed one is ignored (it came
    /// from the database, where anyone may have written it).
    pub(super) fn link(span: &tracing::Span, traceparent: &str) {
        match parse(traceparent) {
            Some(context) => span.add_link(context),
            None => tracing::debug!(
                traceparent,
                "not a W3C traceparent; the job's span is not linked"
            ),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_traceparent_round_trips_and_garbage_is_refused() {
            let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let context = parse(text).expect("a valid traceparent");
            assert_eq!(
                context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
            assert!(context.is_sampled() && context.is_remote());
            for bad in [
                "",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-zzzzzzzzzzzzzzzz-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            ] {
                assert!(parse(bad).is_none(), "{bad:?}");
            }
        }
    }
}
