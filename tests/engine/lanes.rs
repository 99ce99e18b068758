//! `[consumer] lanes`: a batch split by message key into lanes handled side by side, each in
//! its own transaction. Each key's events must still be handled in their order, and every
//! event exactly once, on every backend and transport.

use crate::support::{Harness, Setup, WAIT, eventually, until};
use serde_json::json;
use switchyard::NewEvent;

crate::engine_suite!(lanes_handle_every_event_once_and_each_key_in_order);

const KEYS: usize = 8;
const PER_KEY: usize = 25;

async fn lanes_handle_every_event_once_and_each_key_in_order(setup: Setup) {
    let mut h = Harness::start_edited(setup, "", |t| {
        format!("{t}\n[consumer]\nlanes = 4\nbatch_size = 500\n")
    })
    .await;
    // Every event in one transaction, so the relay publishes them together and a batch holds
    // many events of each key (what lanes split). Per key: `last/<key>` is overwritten with
    // the event's sequence number (only the key's last event may be the last to write it, as
    // lanes commit in any order), `count/<key>` is incremented (a read under the key's lock).
    let outbox = h.host.outbox();
    let mut rows = Vec::new();
    for seq in 1..=PER_KEY {
        for k in 0..KEYS {
            let event = NewEvent::new(
                "probe.run",
                json!({"set": {format!("last/{k}"): seq.to_string()}, "incr": [format!("count/{k}")]}),
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
    eventually("every event consumed", WAIT, || async {
        until(h.db.scalar(consumed).await, |n| {
            *n == (KEYS * PER_KEY) as i64
        })
    })
    .await;
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
