//! OTLP's protobuf (`ExportTraceServiceRequest`, opentelemetry-proto's `trace.proto`),
//! written straight from the SDK's [`SpanData`] into a byte buffer.
//!
//! The OTLP crate's exporter first converts each span into generated message structs
//! (cloning every string and attribute into new allocations), then encodes them, on a
//! thread other than the one that made the span; on a W3T worker that cost more than the
//! rest of a job's span. Here a span is encoded once, where it ends, and its `SpanData`
//! freed on the thread that allocated it. The tests decode what this writes with the
//! generated types and compare it with the OTLP crate's own conversion.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `ExportTraceServiceRequest.resource_spans`.
const RESOURCE_SPANS: u32 = 1;
/// `ScopeSpans.spans`: each span [`span`] writes is this field.
const SPANS: u32 = 2;

fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

/// A length-delimited field whose body `write` appends; its length is then put in front
/// (the body moves by the length's few bytes).
fn message(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let start = buf.len();
    write(buf);
    let mut len = (buf.len() - start) as u64;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    while len >= 0x80 {
        prefix[n] = (len & 0x7f) as u8 | 0x80;
        len >>= 7;
        n += 1;
    }
    prefix[n] = len as u8;
    n += 1;
    buf.extend_from_slice(&prefix[..n]);
    buf[start..].rotate_right(n);
}

/// A `bytes` or `string` field; proto3 leaves an empty one out.
fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        tag(buf, field, LEN);
        varint(buf, value.len() as u64);
        buf.extend_from_slice(value);
    }
}

fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

/// An unsigned or enum field; proto3 leaves a zero out.
fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        tag(buf, field, VARINT);
        varint(buf, value);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// Nanoseconds since the epoch, as the OTLP crate counts them (0 before it).
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The body of an `AnyValue`: one field of its oneof, written even when it holds a
/// default (0, false, ""), since which field is set is the value's type.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(v) => {
            tag(buf, 2, VARINT);
            varint(buf, u64::from(*v));
        }
        Value::I64(v) => {
            tag(buf, 3, VARINT);
            // Two's complement, as protobuf writes an int64.
            varint(buf, *v as u64);
        }
        Value::F64(v) => {
            tag(buf, 4, FIXED64);
            buf.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Value::String(v) => string_value(buf, v.as_str()),
        Value::Array(Array::Bool(values)) => array(buf, values, |v| Value::Bool(*v)),
        Value::Array(Array::I64(values)) => array(buf, values, |v| Value::I64(*v)),
        Value::Array(Array::F64(values)) => array(buf, values, |v| Value::F64(*v)),
        Value::Array(Array::String(values)) => message(buf, 5, |buf| {
            for v in values {
                message(buf, 1, |buf| string_value(buf, v.as_str()));
            }
        }),
        // A kind of value newer than this encoder: its text rather than nothing.
        other => string_value(buf, &other.to_string()),
    }
}

/// An `ArrayValue` (field 5 of `AnyValue`).
fn array<T>(buf: &mut Vec<u8>, values: &[T], value: impl Fn(&T) -> Value) {
    message(buf, 5, |buf| {
        for v in values {
            message(buf, 1, |buf| any_value(buf, &value(v)));
        }
    });
}

/// `AnyValue.string_value`, written even when empty (it is a oneof field).
fn string_value(buf: &mut Vec<u8>, value: &str) {
    tag(buf, 1, LEN);
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value.as_bytes());
}

/// A `KeyValue` in field `field` of the enclosing message.
fn attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    message(buf, field, |buf| {
        string(buf, 1, key);
        message(buf, 2, |buf| any_value(buf, value));
    });
}

fn attributes(buf: &mut Vec<u8>, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        attribute(buf, field, kv.key.as_str(), &kv.value);
    }
}

/// `SpanFlags`: the W3C trace flags, that remoteness is known (0x100), and whether the
/// parent (for a span) or the linked span (for a link) is remote (0x200).
fn flags(context: &SpanContext, remote: bool) -> u32 {
    u32::from(context.trace_flags().to_u8()) | 0x100 | if remote { 0x200 } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Appends one span, as field 2 (`spans`) of a `ScopeSpans`.
pub(crate) fn span(buf: &mut Vec<u8>, span: &SpanData) {
    message(buf, SPANS, |buf| {
        let context = &span.span_context;
        bytes(buf, 1, &context.trace_id().to_bytes());
        bytes(buf, 2, &context.span_id().to_bytes());
        string(buf, 3, &context.trace_state().header());
        if span.parent_span_id != SpanId::INVALID {
            bytes(buf, 4, &span.parent_span_id.to_bytes());
        }
        string(buf, 5, &span.name);
        uint(buf, 6, kind(&span.span_kind));
        fixed64(buf, 7, nanos(span.start_time));
        fixed64(buf, 8, nanos(span.end_time));
        attributes(buf, 9, &span.attributes);
        uint(buf, 10, u64::from(span.dropped_attributes_count));
        for event in span.events.iter() {
            message(buf, 11, |buf| {
                fixed64(buf, 1, nanos(event.timestamp));
                string(buf, 2, &event.name);
                attributes(buf, 3, &event.attributes);
                uint(buf, 4, u64::from(event.dropped_attributes_count));
            });
        }
        uint(buf, 12, u64::from(span.events.dropped_count));
        for link in span.links.iter() {
            message(buf, 13, |buf| {
                let linked = &link.span_context;
                bytes(buf, 1, &linked.trace_id().to_bytes());
                bytes(buf, 2, &linked.span_id().to_bytes());
                string(buf, 3, &linked.trace_state().header());
                attributes(buf, 4, &link.attributes);
                uint(buf, 5, u64::from(link.dropped_attributes_count));
                fixed32(buf, 6, flags(linked, linked.is_remote()));
            });
        }
        uint(buf, 14, u64::from(span.links.dropped_count));
        // Always present, as the OTLP crate writes it.
        message(buf, 15, |buf| match &span.status {
            Status::Unset => {}
            Status::Ok => uint(buf, 3, 1),
            Status::Error { description } => {
                string(buf, 2, description);
                uint(buf, 3, 2);
            }
        });
        fixed32(buf, 16, flags(context, span.parent_span_is_remote));
    });
}

/// The body of a `Resource` message: its attributes.
pub(crate) fn resource(resource: &Resource) -> Vec<u8> {
    let mut buf = Vec::new();
    for (key, value) in resource.iter() {
        attribute(&mut buf, 1, key.as_str(), value);
    }
    buf
}

/// Spans of one instrumentation scope, each already written by [`span`].
#[derive(Debug)]
pub(crate) struct ScopeBatch {
    pub(crate) scope: InstrumentationScope,
    pub(crate) spans: Vec<u8>,
}

/// The whole request: one resource (its body from [`resource`]), its schema URL, and the
/// spans grouped by scope.
pub(crate) fn request(resource: &[u8], schema_url: &str, scopes: &[ScopeBatch]) -> Vec<u8> {
    let size = scopes.iter().map(|s| s.spans.len() + 64).sum::<usize>() + resource.len() + 64;
    let mut buf = Vec::with_capacity(size);
    message(&mut buf, RESOURCE_SPANS, |buf| {
        message(buf, 1, |buf| buf.extend_from_slice(resource));
        for batch in scopes {
            message(buf, 2, |buf| {
                let scope = &batch.scope;
                message(buf, 1, |buf| {
                    string(buf, 1, scope.name());
                    string(buf, 2, scope.version().unwrap_or_default());
                    attributes_of_scope(buf, scope);
                });
                buf.extend_from_slice(&batch.spans);
                string(buf, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(buf, 3, schema_url);
    });
    buf
}

fn attributes_of_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    for kv in scope.attributes() {
        attribute(buf, 3, kv.key.as_str(), &kv.value);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::{ScopeBatch, request, resource, span};

    fn context(trace: u128, span: u64, flags: u8, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::new(flags),
            remote,
            state.parse::<TraceState>().expect("a trace state"),
        )
    }

    fn data(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let at = std::time::UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789);
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                1,
                false,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: at,
            end_time: at + Duration::from_micros(1_500),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Spans covering every field and kind of value OTLP has for them.
    fn spans() -> Vec<SpanData> {
        let postpone = InstrumentationScope::builder("postpone").build();
        let other = InstrumentationScope::builder("app")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.key", "v")])
            .build();
        let mut job = data("postpone.job", &postpone);
        job.attributes = vec![
            KeyValue::new("task", "tests.add"),
            KeyValue::new("job_id", 1_234_567_i64),
            KeyValue::new("attempt", 0_i64),
            KeyValue::new("negative", -42_i64),
            KeyValue::new("empty", ""),
            KeyValue::new("ok", false),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("zero", 0.0),
            KeyValue::new("unicode", "é — <script>"),
            KeyValue::new("long", "x".repeat(300)),
        ];
        job.links.links = vec![Link::new(
            context(7, 8, 1, true, "vendor=value"),
            vec![KeyValue::new("link.kind", "deferred by")],
            1,
        )];
        job.links.dropped_count = 3;
        job.status = Status::error("task failed: <boom>");
        let mut child = data("step", &other);
        child.span_context = context(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            99,
            1,
            false,
            "a=b,c=d",
        );
        child.parent_span_id = SpanId::from(0x00f0_67aa_0ba9_02b7);
        child.parent_span_is_remote = true;
        child.span_kind = SpanKind::Consumer;
        child.dropped_attributes_count = 2;
        child.attributes = vec![
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, -2, 0]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, -0.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from(""),
                ])),
            ),
            KeyValue::new("none", Value::Array(Array::String(Vec::new()))),
        ];
        child.events.events = vec![
            Event::new(
                "retry",
                child.start_time,
                vec![KeyValue::new("n", 2_i64)],
                1,
            ),
            Event::new("", std::time::UNIX_EPOCH, Vec::new(), 0),
        ];
        child.events.dropped_count = 5;
        child.status = Status::Ok;
        let mut server = data("postpone.claim", &postpone);
        server.span_kind = SpanKind::Server;
        server.span_context = context(1, 2, 0, false, "");
        let mut client = data("client", &other);
        client.span_kind = SpanKind::Client;
        let mut producer = data("postpone.defer", &postpone);
        producer.span_kind = SpanKind::Producer;
        producer.end_time = std::time::UNIX_EPOCH - Duration::from_secs(1);
        vec![job, child, server, client, producer]
    }

    /// What this module writes, batched as the processor batches it.
    fn ours(resource_: &Resource, spans: &[SpanData]) -> Vec<u8> {
        let mut scopes: Vec<ScopeBatch> = Vec::new();
        for data in spans {
            match scopes
                .iter_mut()
                .find(|s| s.scope == data.instrumentation_scope)
            {
                Some(batch) => span(&mut batch.spans, data),
                None => {
                    let mut batch = ScopeBatch {
                        scope: data.instrumentation_scope.clone(),
                        spans: Vec::new(),
                    };
                    span(&mut batch.spans, data);
                    scopes.push(batch);
                }
            }
        }
        request(
            &resource(resource_),
            resource_.schema_url().unwrap_or_default(),
            &scopes,
        )
    }

    #[test]
    fn what_it_writes_decodes_to_what_the_otlp_crate_converts() {
        let resource = Resource::builder_empty()
            .with_service_name("postpone-test")
            .with_attributes([
                KeyValue::new("deployment.environment", "ci"),
                KeyValue::new("host.cpus", 2_i64),
            ])
            .with_schema_url(
                Vec::<KeyValue>::new(),
                "https://opentelemetry.io/schemas/1.30.0",
            )
            .build();
        let spans = spans();
        let bytes = ours(&resource, &spans);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        let expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans.clone(),
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        assert_eq!(decoded, expected);
        // Byte for byte, too: field order and defaults left out as prost writes them.
        assert_eq!(bytes, expected.encode_to_vec());
        // Each span on its own, so that one span's fields cannot hide another's.
        for one in &spans {
            let decoded = ExportTraceServiceRequest::decode(
                ours(&resource, std::slice::from_ref(one)).as_slice(),
            )
            .expect("valid protobuf");
            let expected = group_spans_by_resource_and_scope(
                vec![one.clone()],
                &ResourceAttributesWithSchema::from(&resource),
            );
            assert_eq!(decoded.resource_spans, expected, "{}", one.name);
        }
    }

    #[test]
    fn lengths_past_one_varint_byte_are_written_right() {
        let scope = InstrumentationScope::builder("postpone").build();
        let mut big = data("big", &scope);
        // A 20,000-byte value: its length takes three varint bytes, and so do the
        // lengths of every message around it.
        big.attributes = vec![KeyValue::new("payload", "é".repeat(10_000))];
        let resource = Resource::builder_empty().build();
        let bytes = ours(&resource, &[big.clone()]);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid protobuf");
        let expected = group_spans_by_resource_and_scope(
            vec![big],
            &ResourceAttributesWithSchema::from(&resource),
        );
        assert_eq!(decoded.resource_spans, expected);
    }
}
