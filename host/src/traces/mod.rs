//! Traces across the chain: OpenTelemetry spans for what a host does to an event (enqueue,
//! relay batch, consume batch, invocation), and the W3C `traceparent` that carries one trace
//! from a producer's request through the row's `traceparent` column, the Kafka message's
//! `traceparent` header and every emit, to the last handler of a chain.
//!
//! The tree a trace shows: producer's span → `switchyard.enqueue` → `switchyard.invoke` (each
//! attempt) → the emitted row's `switchyard.invoke` → ... Batches hold many traces, so a relay
//! or consume batch is a span of its own that links to each message's context (OpenTelemetry's
//! messaging convention for batches), and each invocation links back to its consume batch.
//!
//! Each host owns its tracer provider, never a process-wide one: one process may run several
//! hosts (the tests do), each exporting where its config says. Without `[traces]
//! otlp_endpoint` nothing is recorded and a traceparent passes through unchanged, so a trace a
//! producer started still reaches the next system that exports it.

mod otlp_http;

use crate::config::TracesConfig;
use anyhow::Context as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span as SdkSpan,
};
use std::time::Duration;

/// The row column and the Kafka header that carry a trace context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// How long one export may take before the exporter gives up on it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's tracer, or none when traces are off.
pub struct Traces {
    exporting: Option<(SdkTracerProvider, SdkTracer)>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("exporting", &self.exporting.is_some())
            .finish()
    }
}

impl Traces {
    /// No span recorded; traceparents pass through unchanged.
    pub fn off() -> Traces {
        Traces { exporting: None }
    }

    /// The tracer `[traces]` asks for: an OTLP/HTTP exporter behind a batch processor (its own
    /// thread), or [`Traces::off`] without an endpoint.
    ///
    /// # Errors
    /// An exporter the SDK refuses to build (e.g. an endpoint it cannot parse).
    pub fn from_config(config: &TracesConfig) -> anyhow::Result<Traces> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(Traces::off());
        };
        let endpoint = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
            endpoint.clone()
        } else {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(otlp_http::UreqClient::new(EXPORT_TIMEOUT))
            .with_endpoint(&endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(config.headers.clone().into_iter().collect())
            .build()
            .with_context(|| format!("building the OTLP exporter for {endpoint}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(config.export_interval_ms))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "switchyard");
        Ok(Traces {
            exporting: Some((provider, tracer)),
        })
    }

    /// Whether spans are recorded and exported.
    pub fn is_exporting(&self) -> bool {
        self.exporting.is_some()
    }

    /// Starts a span of `kind` under `parent` (a new trace without one), linked to `links`.
    /// Not exporting, it records nothing and hands the parent's context on.
    fn start(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<SpanContext>,
        links: Vec<Link>,
        // Built only when spans are exported: a host that exports none pays nothing per event.
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Traced {
        let Some((_, tracer)) = &self.exporting else {
            return Traced {
                span: None,
                traceparent: parent.as_ref().map(format),
            };
        };
        let parent_cx = parent.map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        });
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_links(links)
            .with_attributes(attributes())
            .start_with_context(tracer, &parent_cx);
        let traceparent = Some(format(span.span_context()));
        Traced {
            span: Some(span),
            traceparent,
        }
    }

    /// The span of a producer's enqueue (or a devtool's publish) of one event, under the
    /// producer's `traceparent` if it gave one. The row stores the span's context.
    pub fn enqueue(&self, parent: Option<&str>, service: &str, event_type: &str) -> Traced {
        self.start(
            "switchyard.enqueue",
            SpanKind::Producer,
            parent.and_then(parse),
            Vec::new(),
            || {
                vec![
                    KeyValue::new("switchyard.service", service.to_owned()),
                    KeyValue::new("switchyard.event_type", event_type.to_owned()),
                ]
            },
        )
    }

    /// The span of one relay batch of `service`, linked to each published row's context.
    pub fn relay_batch<'a>(
        &self,
        service: &str,
        topic: &str,
        rows: impl Iterator<Item = Option<&'a str>>,
    ) -> Traced {
        self.batch("switchyard.relay", SpanKind::Producer, service, topic, rows)
    }

    /// The span of one consumed batch of `service`, linked to each message's context.
    pub fn consume_batch<'a>(
        &self,
        service: &str,
        topic: &str,
        messages: impl Iterator<Item = Option<&'a str>>,
    ) -> Traced {
        self.batch(
            "switchyard.consume",
            SpanKind::Consumer,
            service,
            topic,
            messages,
        )
    }

    fn batch<'a>(
        &self,
        name: &'static str,
        kind: SpanKind,
        service: &str,
        topic: &str,
        contexts: impl Iterator<Item = Option<&'a str>>,
    ) -> Traced {
        if !self.is_exporting() {
            return Traced::none();
        }
        let links: Vec<Link> = contexts
            .flatten()
            .filter_map(parse)
            .map(Link::with_context)
            .collect();
        let count = links.len() as i64;
        let mut traced = self.start(name, kind, None, links, || {
            vec![
                KeyValue::new("switchyard.service", service.to_owned()),
                KeyValue::new("messaging.destination.name", topic.to_owned()),
                KeyValue::new("messaging.batch.message_count", count),
            ]
        });
        // A batch starts no trace of its own that anything continues.
        traced.traceparent = None;
        traced
    }

    /// The span of one invocation: a child of the message's `traceparent` (the enqueue or emit
    /// that wrote the row), else of its consume batch; linked to that batch.
    pub fn invocation(
        &self,
        parent: Option<&str>,
        batch: &Traced,
        attributes: InvocationAttributes<'_>,
    ) -> Traced {
        let batch_context = batch.span.as_ref().map(|s| s.span_context().clone());
        let (parent, links) = match parent.and_then(parse) {
            Some(message) => (
                Some(message),
                batch_context.map(Link::with_context).into_iter().collect(),
            ),
            None => (batch_context, Vec::new()),
        };
        self.start(
            "switchyard.invoke",
            SpanKind::Consumer,
            parent,
            links,
            || {
                vec![
                    KeyValue::new("switchyard.service", attributes.service.to_owned()),
                    KeyValue::new("switchyard.route", attributes.event_type.to_owned()),
                    KeyValue::new("switchyard.outbox_id", attributes.outbox_id),
                    KeyValue::new("switchyard.attempt", i64::from(attributes.attempt)),
                ]
            },
        )
    }

    /// Sends every finished span now (blocking: call it off the async workers). Used at
    /// shutdown, so the last batch's spans are not lost.
    pub fn flush(&self) {
        if let Some((provider, _)) = &self.exporting
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!(error = %e, "sending the last spans to the OTLP collector failed");
        }
    }
}

/// What names an invocation in its span.
#[derive(Debug, Clone, Copy)]
pub struct InvocationAttributes<'a> {
    pub service: &'a str,
    pub event_type: &'a str,
    pub outbox_id: i64,
    pub attempt: u32,
}

/// A started span (ended when dropped), or none when traces are off, with the traceparent its
/// children carry: its own context, or, when traces are off, the parent's unchanged.
#[derive(Debug)]
pub struct Traced {
    span: Option<SdkSpan>,
    traceparent: Option<String>,
}

impl Traced {
    pub fn none() -> Traced {
        Traced {
            span: None,
            traceparent: None,
        }
    }

    /// The context a row written under this span stores (and a Kafka header carries).
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Adds an attribute (a no-op when not recording).
    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `reason`.
    pub fn fail(&mut self, reason: &str) {
        if let Some(span) = &mut self.span {
            span.set_status(Status::error(reason.to_owned()));
        }
    }
}

/// A W3C traceparent's span context (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`),
/// or `None` when the text is not a valid one (it is then ignored, as W3C asks). Parsed by
/// hand rather than through the SDK's propagator: it runs for every message, and the
/// propagator's carrier is a map built per call.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    // A later version may append fields; version 00 has exactly four, `ff` is invalid.
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The W3C traceparent of a span context (version 00).
pub fn format(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// A producer's traceparent as a row stores it: normalized, or `None` (with a warning) when it
/// is not a valid W3C traceparent, so a malformed one never loses the event.
pub fn normalized(traceparent: Option<&str>) -> Option<String> {
    let text = traceparent?;
    match parse(text) {
        Some(sc) => Some(format(&sc)),
        None => {
            tracing::warn!(
                traceparent = text,
                "ignoring a traceparent that is not W3C's 00-<trace id>-<span id>-<flags>: the \
                 event starts a new trace"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips_and_a_malformed_one_is_ignored() {
        let sc = parse(PRODUCER).unwrap();
        assert_eq!(format(&sc), PRODUCER);
        assert!(sc.is_sampled());
        assert_eq!(
            normalized(Some(&format!(" {PRODUCER} "))).as_deref(),
            Some(PRODUCER)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} must be ignored");
            assert_eq!(normalized(Some(bad)), None);
        }
    }

    #[test]
    fn without_an_exporter_the_parent_passes_through_unchanged() {
        let traces = Traces::off();
        let enqueue = traces.enqueue(Some(PRODUCER), "task", "task.x");
        assert_eq!(enqueue.traceparent(), Some(PRODUCER));
        let batch = traces.consume_batch("task", "t", [Some(PRODUCER)].into_iter());
        let attributes = InvocationAttributes {
            service: "task",
            event_type: "task.x",
            outbox_id: 1,
            attempt: 1,
        };
        let invocation = traces.invocation(enqueue.traceparent(), &batch, attributes);
        assert_eq!(invocation.traceparent(), Some(PRODUCER));
        assert_eq!(
            traces.invocation(None, &batch, attributes).traceparent(),
            None
        );
        assert_eq!(
            traces
                .enqueue(Some("garbage"), "task", "task.x")
                .traceparent(),
            None
        );
    }
}
