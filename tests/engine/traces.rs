//! Traces across the chain: a producer's `traceparent` goes into its row, the row's context
//! onto the transport (on Kafka only as the message's `traceparent` header, so an invocation
//! parented on the enqueue proves the header carried it), and each emit's row continues the
//! emitting invocation, so one trace runs from the producer's request to the last handler.
//! The host exports its spans over OTLP/HTTP to a collector the test runs.

use crate::engine_suite;
use crate::support::otlp::{Collector, ReceivedSpan};
use crate::support::{Harness, Setup, component, hash_of};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard::NewEvent;

/// OTLP's span kinds.
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;
/// OTLP's error status code.
const ERROR: i32 = 2;

/// A producer's traceparent with a trace id no other test uses.
fn producer_traceparent() -> (String, String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let trace = format!("{:032x}", nanos ^ (u128::from(std::process::id()) << 96));
    let span = "00f067aa0ba902b7".to_owned();
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn traces_section(collector: &Collector) -> String {
    format!(
        "[traces]\notlp_endpoint = \"{}\"\nservice_name = \"switchyard-test\"\n\
         export_interval_ms = 50\n",
        collector.endpoint()
    )
}

/// `probe.run` → (emits) `probe.run` → (emits) `sink.note`: three invocations, two emits.
fn two_hop_chain() -> serde_json::Value {
    json!({"emit": [{"event_type": "probe.run",
                     "payload": {"emit": [{"event_type": "sink.note", "payload": {"n": 1}}]}}]})
}

async fn traceparent_of(h: &Harness, table: &str, id: i64) -> String {
    h.db.text(&format!(
        "SELECT COALESCE(traceparent, '') FROM {table} WHERE id = {id}"
    ))
    .await
}

/// Waits for the chain's three rows to be consumed; returns the ids of the probe rows (the
/// producer's, then the emitted one) and of the sink row.
async fn run_chain(h: &Harness, event: NewEvent) -> (i64, i64, i64) {
    let first = h.host.publish(event).await.unwrap();
    h.wait_final("probe_outbox_messages", first).await;
    let second =
        crate::support::eventually("the emitted probe row", crate::support::WAIT, || async {
            let ids = h.ids("probe_outbox_messages").await;
            crate::support::until(ids, |ids| ids.len() == 2).map(|ids| ids[1])
        })
        .await;
    h.wait_final("probe_outbox_messages", second).await;
    let sink = crate::support::eventually("the emitted sink row", crate::support::WAIT, || async {
        let ids = h.ids("sink_outbox_messages").await;
        crate::support::until(ids, |ids| ids.len() == 1).map(|ids| ids[0])
    })
    .await;
    let row = h.wait_final("sink_outbox_messages", sink).await;
    assert_eq!(row.status, "consumed");
    (first, second, sink)
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pick: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} span, got {found:#?}");
    found[0]
}

async fn one_trace_runs_from_the_producer_through_every_emit(setup: Setup) {
    let collector = Collector::start().await;
    let mut h = Harness::start_with(setup, &traces_section(&collector)).await;
    let (producer, trace, producer_span) = producer_traceparent();
    let (first, second, sink) = run_chain(
        &h,
        NewEvent::new("probe.run", two_hop_chain()).traceparent(&producer),
    )
    .await;

    let in_trace = |s: &ReceivedSpan| s.trace_id == trace;
    let spans = collector
        .wait_for("the enqueue and three invocations of the trace", |spans| {
            spans.iter().filter(|s| in_trace(s)).count() >= 4
        })
        .await;

    // The producer's request → the enqueue span → the row.
    let enqueue = one(&spans, "enqueue", |s| {
        in_trace(s) && s.name == "switchyard.enqueue"
    });
    assert_eq!(
        enqueue.parent_span_id, producer_span,
        "a child of the producer's span"
    );
    assert_eq!(enqueue.kind, PRODUCER);
    assert_eq!(enqueue.service_name, "switchyard-test");
    assert_eq!(enqueue.attribute("switchyard.event_type"), "probe.run");
    assert_eq!(enqueue.attribute("switchyard.outbox_id"), first.to_string());
    assert_eq!(
        traceparent_of(&h, "probe_outbox_messages", first).await,
        enqueue.traceparent(),
        "the row stores the enqueue span's context"
    );

    // The row's context reached the consumer (on Kafka, only through the header).
    let invoke = |outbox_id: i64, route: &str| {
        one(
            &spans,
            &format!("invocation of {route} #{outbox_id}"),
            |s| {
                in_trace(s)
                    && s.name == "switchyard.invoke"
                    && s.attribute("switchyard.route") == route
                    && s.attribute("switchyard.outbox_id") == outbox_id.to_string()
            },
        )
    };
    let probe_hash = hash_of(&component("probe"));
    let hop0 = invoke(first, "probe.run");
    assert_eq!(hop0.parent_span_id, enqueue.span_id);
    assert_eq!(hop0.kind, CONSUMER);
    assert_eq!(hop0.attribute("switchyard.service"), "probe");
    assert_eq!(hop0.attribute("switchyard.version"), probe_hash);
    assert_eq!(hop0.attribute("switchyard.outcome"), "consumed");
    assert_eq!(hop0.attribute("switchyard.attempt"), "1");

    // Each emit continues the invocation that emitted it.
    assert_eq!(
        traceparent_of(&h, "probe_outbox_messages", second).await,
        hop0.traceparent()
    );
    let hop1 = invoke(second, "probe.run");
    assert_eq!(hop1.parent_span_id, hop0.span_id);
    assert_eq!(
        traceparent_of(&h, "sink_outbox_messages", sink).await,
        hop1.traceparent()
    );
    let hop2 = invoke(sink, "sink.note");
    assert_eq!(hop2.parent_span_id, hop1.span_id);
    assert_eq!(hop2.attribute("switchyard.service"), "sink");

    // Batches are spans of their own, linked to each message they carried; an invocation
    // links back to its consume batch.
    let spans = collector
        .wait_for("the relay and consume batches of the first row", |spans| {
            ["switchyard.relay", "switchyard.consume"]
                .iter()
                .all(|name| {
                    spans.iter().any(|s| {
                        s.name == *name
                            && s.links.contains(&(trace.clone(), enqueue.span_id.clone()))
                    })
                })
        })
        .await;
    let consume = one(&spans, "consume batch of the first row", |s| {
        s.name == "switchyard.consume"
            && s.links.contains(&(trace.clone(), enqueue.span_id.clone()))
    });
    assert_eq!(consume.kind, CONSUMER);
    assert_eq!(consume.attribute("switchyard.service"), "probe");
    assert!(
        hop0.links
            .contains(&(consume.trace_id.clone(), consume.span_id.clone())),
        "the invocation links to its batch: {hop0:#?}"
    );
    h.stop().await;
}

async fn a_failed_attempt_is_an_error_span_and_its_retry_stays_in_the_trace(setup: Setup) {
    let collector = Collector::start().await;
    let mut h = Harness::start_with(setup, &traces_section(&collector)).await;
    let (producer, trace, _) = producer_traceparent();
    // Retried until its attempts (3) are used up, then dead.
    let script = json!({"action": "retry", "reason": "downstream is down"});
    let id = h
        .host
        .publish(NewEvent::new("probe.run", script).traceparent(&producer))
        .await
        .unwrap();
    let row = h.wait_final("probe_outbox_messages", id).await;
    assert_eq!(row.status, "dead");
    let spans = collector
        .wait_for("three attempts", |spans| {
            spans
                .iter()
                .filter(|s| s.trace_id == trace && s.name == "switchyard.invoke")
                .count()
                == 3
        })
        .await;
    let enqueue = one(&spans, "enqueue", |s| {
        s.trace_id == trace && s.name == "switchyard.enqueue"
    });
    let mut attempts: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == "switchyard.invoke")
        .collect();
    attempts.sort_by_key(|s| s.attribute("switchyard.attempt").to_owned());
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attribute("switchyard.attempt"), (n + 1).to_string());
        assert_eq!(
            attempt.parent_span_id, enqueue.span_id,
            "every attempt continues the row's trace"
        );
        assert_eq!(attempt.attribute("switchyard.outcome"), "retry");
        assert_eq!(attempt.status.0, ERROR);
        assert!(
            attempt.status.1.contains("downstream is down"),
            "{attempt:#?}"
        );
    }
    h.stop().await;
}

async fn without_an_exporter_the_producers_context_is_carried_unchanged(setup: Setup) {
    let mut h = Harness::start(setup).await;
    let (producer, _, _) = producer_traceparent();
    let (first, second, sink) = run_chain(
        &h,
        NewEvent::new("probe.run", two_hop_chain()).traceparent(&producer),
    )
    .await;
    for (table, id) in [
        ("probe_outbox_messages", first),
        ("probe_outbox_messages", second),
        ("sink_outbox_messages", sink),
    ] {
        assert_eq!(
            traceparent_of(&h, table, id).await,
            producer,
            "row {id} of {table} carries the producer's context on to whoever exports"
        );
    }
    // A malformed traceparent never loses the event: it starts no trace.
    let id = h
        .host
        .publish(NewEvent::new("sink.note", json!({})).traceparent("not-a-traceparent"))
        .await
        .unwrap();
    assert_eq!(
        h.wait_final("sink_outbox_messages", id).await.status,
        "consumed"
    );
    assert_eq!(traceparent_of(&h, "sink_outbox_messages", id).await, "");
    h.stop().await;
}

engine_suite!(
    one_trace_runs_from_the_producer_through_every_emit,
    a_failed_attempt_is_an_error_span_and_its_retry_stays_in_the_trace,
    without_an_exporter_the_producers_context_is_carried_unchanged,
);
