//! `[consumer] lanes`: a batch split by message key into lanes handled side by side, each in
//! its own transaction, and the next batch's lanes started as the same lanes of the batch
//! before commit. Each key's events must still be handled in their order, and every event
//! exactly once, on every backend and transport.

use crate::support::{Harness, Setup, WAIT, eventually, until};
use serde_json::json;
use switchyard::NewEvent;

crate::engine_suite!(lanes_handle_every_event_once_and_each_key_in_order);

const KEYS: usize = 8;
const PER_KEY: usize = 25;

async fn lanes_handle_every_event_once_and_each_key_in_order(setup: Setup) {
    // Small batches, so each key's events span many batches, two of them in flight at once.
    let mut h = Harness::start_edited(setup, "", |t| {
        format!("{t}\n[consumer]\nlanes = 4\nbatch_size = 10\n")
    })
    .await;
    // Every event in one transaction, so the relay publishes them together. Per key: each
    // event expects `last/<key>` to hold the sequence number of the key's event before it (so
    // one handled out of order ends dead) and overwrites it with its own; `count/<key>` is
    // incremented (a read under the key's lock).
    let outbox = h.host.outbox();
    let mut rows = Vec::new();
    for seq in 1..=PER_KEY {
        for k in 0..KEYS {
            let before = if seq == 1 {
                String::new()
            } else {
                (seq - 1).to_string()
            };
            let event = NewEvent::new(
                "probe.run",
                json!({
                    "expect": {format!("last/{k}"): before},
                    "set": {format!("last/{k}"): seq.to_string()},
                    "incr": [format!("count/{k}")],
                }),
            )
            .key(format!("user-{k}"));
            rows.push(outbox.row(event).unwrap());
        }
    }
    h.host
        .store()
        .insert(&rows, switchyard::store::now())
        .await
        .unwrap();
    outbox.wake("probe");
    let consumed = "SELECT COUNT(*) FROM probe_outbox_messages WHERE status = 'consumed'";
    let finished = "SELECT COUNT(*) FROM probe_outbox_messages \
                    WHERE status IN ('consumed', 'dead')";
    eventually("every event finished", WAIT, || async {
        until(h.db.scalar(finished).await, |n| {
            *n == (KEYS * PER_KEY) as i64
        })
    })
    .await;
    for id in h.db.ids("probe_outbox_messages").await {
        let row = h.db.row("probe_outbox_messages", id).await.unwrap();
        assert_eq!(
            row.status, "consumed",
            "an event was handled out of its key's order: {row:?}"
        );
    }
    assert_eq!(h.db.scalar(consumed).await, (KEYS * PER_KEY) as i64);
    for k in 0..KEYS {
        assert_eq!(
            h.state("probe", &format!("last/{k}")).await.as_deref(),
            Some(PER_KEY.to_string().as_str()),
            "key user-{k}: its last event was not the last one handled"
        );
        assert_eq!(
            h.state("probe", &format!("count/{k}")).await.as_deref(),
            Some(PER_KEY.to_string().as_str()),
            "key user-{k}: each event handled exactly once"
        );
    }
    h.stop().await;
}
