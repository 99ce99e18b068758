//! Running beside another system (issue 14): a legacy shared table drained to the owners of
//! its rows' types, a row no route of this host names left `pending` for its owner (never
//! claimed in a loop), and an `external` service whose rows this host only inserts.

use crate::support::{Harness, Setup, WAIT, config_text, eventually, until};
use std::path::Path;
use switchyard::Switchyard;
use switchyard::config::Config;

crate::engine_suite!(a_legacy_shared_table_drains_to_the_owners_of_its_rows);

/// SmartFlow's pre-phase-1 layout: one table carrying every service's types, `service_name`
/// empty. Here `probe_outbox_messages` plays the shared table.
async fn a_legacy_shared_table_drains_to_the_owners_of_its_rows(setup: Setup) {
    let h = Harness::start(setup).await;
    let shared = "probe_outbox_messages";
    let wrapper = |t: &str, p: &str| format!(r#"{{"event_type":"{t}","payload":{p}}}"#);
    let for_sink = h
        .insert_raw(
            shared,
            "sink.note",
            &wrapper("sink.note", r#"{"set":{"drained":"yes"}}"#),
            20,
        )
        .await;
    let own = h
        .insert_raw(
            shared,
            "probe.run",
            &wrapper("probe.run", r#"{"set":{"own":"yes"}}"#),
            20,
        )
        .await;
    let unrouted = h
        .insert_raw(shared, "legacy.gone", &wrapper("legacy.gone", "{}"), 20)
        .await;

    // The sink's row is handled by the sink service, from its own table.
    eventually("the moved row to be handled by its owner", WAIT, || async {
        until(h.state("sink", "drained").await, |v| v.is_some())
    })
    .await;
    let own_row = h.wait_final(shared, own).await;
    assert_eq!(own_row.status, "consumed");
    assert_eq!(h.state("probe", "own").await.as_deref(), Some("yes"));
    let moved = h.wait_final(shared, for_sink).await;
    assert_eq!(moved.status, "consumed");
    assert_eq!(moved.handler_version.as_deref(), Some("moved"));
    let note = moved.last_error.unwrap();
    assert!(
        note.contains("moved to sink_outbox_messages as row"),
        "{note}"
    );
    let sink_ids = h.ids("sink_outbox_messages").await;
    assert_eq!(sink_ids.len(), 1, "one row written in the owner's table");
    let copy = h.wait_final("sink_outbox_messages", sink_ids[0]).await;
    assert_eq!(copy.status, "consumed");
    let wrapper: serde_json::Value = serde_json::from_str(&copy.payload).unwrap();
    assert_eq!(
        wrapper["event_id"],
        for_sink.to_string(),
        "the event keeps the id it had in the shared table"
    );

    // A type nobody routes waits for its owner: never claimed, never published.
    let row = h.row(shared, unrouted).await.unwrap();
    assert_eq!(row.status, "pending");
    assert!(h.db.never_published(shared, unrouted).await);
    let status = h.host.status().await.unwrap();
    let probe = status.iter().find(|(s, _)| s.name == "probe").unwrap();
    assert_eq!(probe.1.foreign, 1, "the unrouted row is the backlog left");
    let sink = status.iter().find(|(s, _)| s.name == "sink").unwrap();
    assert_eq!(sink.1.foreign, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_to_an_external_service_only_inserts_its_row() {
    // `sink` belongs to another system: its route names the owner and no component.
    let setup = Setup::SQLITE_EMBEDDED;
    let mut h = Harness::start_edited(setup, "", |text| {
        text.replace("[services.sink]", "[services.sink]\nmode = \"external\"")
            .replace(
                &format!(
                    "service = \"sink\"\ncomponent = \"{}\"",
                    crate::support::component("probe").display()
                ),
                "service = \"sink\"",
            )
    })
    .await;
    let id = h
        .publish(
            "probe.run",
            serde_json::json!({"emit": [{"event_type": "sink.note", "payload": {"n": 1}}]}),
        )
        .await;
    assert_eq!(
        h.wait_final("probe_outbox_messages", id).await.status,
        "consumed"
    );
    let ids = h.ids("sink_outbox_messages").await;
    assert_eq!(ids.len(), 1);
    // The row was inserted with the probe row's commit; no loop of this host claims it.
    let row = h.row("sink_outbox_messages", ids[0]).await.unwrap();
    assert_eq!(
        row.status, "pending",
        "the other system's relay takes it from here"
    );
    assert!(h.db.never_published("sink_outbox_messages", ids[0]).await);
    let status = h.host.status().await.unwrap();
    let sink = status.iter().find(|(s, _)| s.name == "sink").unwrap();
    assert_eq!(sink.0.mode.as_str(), "external");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_whose_other_half_is_another_process_needs_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let text =
        config_text(&url, "").replace("[services.sink]", "[services.sink]\nmode = \"relay\"");
    let e = Config::parse(&text, Path::new("m.toml"), dir.path().to_owned()).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("service \"sink\" runs in mode \"relay\""), "{e}");
    assert!(e.contains("transport = \"kafka\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_a_consumed_service_must_name_its_component() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let text = format!(
        "database_url = \"{url}\"\n[services.task]\n[[routes]]\nevent_type = \"task.x\"\n\
         service = \"task\"\n"
    );
    let e = Config::parse(&text, Path::new("m.toml"), dir.path().to_owned()).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("names no component"), "{e}");
    assert!(e.contains("mode = \"relay\" or \"external\""), "{e}");
    // The same route on an external service only names the owner.
    let text = text.replace("[services.task]", "[services.task]\nmode = \"external\"");
    let config = Config::parse(&text, Path::new("m.toml"), dir.path().to_owned()).unwrap();
    let host = Switchyard::open(config).await.unwrap();
    host.migrate().await.unwrap();
    let id = host
        .publish(switchyard::NewEvent::new(
            "task.x",
            serde_json::json!({"a": 1}),
        ))
        .await
        .unwrap();
    assert!(id > 0, "a producer may enqueue an external service's event");
}
