//! Dead letters from the command line (issue 16): dead rows listed with filters, shown,
//! requeued by id and by filter (recorded with who, when and why) and then consumed by the
//! running host, purged only with confirmation and only when dead; on every backend, through
//! the library and through the binary. And Kafka's dead-letter topic: listed without a consumer
//! group, replayed to the service's topic, an undecodable message coming back to the DLQ.

use crate::support::{
    Backend, Harness, Setup, TransportKind, WAIT, config_text, eventually, until,
};
use serde_json::json;
use std::process::{Command, Stdio};
use switchyard::engine::{Operator, ReplaySelection};
use switchyard::store::dead::{ActedRow, DeadChange, DeadFilter, DeadSelection};
use switchyard::store::{earlier, later, now};

const PROBE: &str = "probe_outbox_messages";
const SINK: &str = "sink_outbox_messages";

crate::backend_suite!(dead_rows_are_listed_shown_requeued_and_consumed_by_the_running_host);

fn operator(actor: &str, note: &str) -> Operator {
    Operator {
        actor: actor.into(),
        note: note.into(),
    }
}

fn filter() -> DeadFilter {
    DeadFilter::default()
}

/// Whether row `id` was published more than `times` times (COUNT keeps the value a BIGINT on
/// every backend).
async fn published_over(h: &Harness, table: &str, id: i64, times: i64) -> bool {
    h.db.scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE id = {id} AND publish_count > {times}"
    ))
    .await
        == 1
}

/// Waits until a requeued row, published `before` times when it died, was published again and
/// reached a final status.
async fn wait_handled_again(
    h: &Harness,
    table: &str,
    id: i64,
    before: i64,
) -> crate::support::RowView {
    eventually(format!("row {id} handled again"), WAIT, || async {
        let row = h.row(table, id).await.unwrap();
        let again = published_over(h, table, id, before).await;
        if again && (row.status == "consumed" || row.status == "dead") {
            Ok(row)
        } else {
            Err(row)
        }
    })
    .await
}

async fn dead_rows_are_listed_shown_requeued_and_consumed_by_the_running_host(backend: Backend) {
    let mut h = Harness::start(Setup {
        backend,
        transport: TransportKind::Embedded,
    })
    .await;
    let host = &h.host;
    // Dead on the handler's word: three "card declined", one "address unknown", one in the
    // sink service.
    let mut declined = Vec::new();
    for _ in 0..3 {
        declined.push(
            h.publish(
                "probe.run",
                json!({"action": "dead", "reason": "card declined"}),
            )
            .await,
        );
    }
    let unknown = h
        .publish(
            "probe.run",
            json!({"action": "dead", "reason": "address unknown"}),
        )
        .await;
    let sink_dead = h
        .publish(
            "sink.note",
            json!({"action": "dead", "reason": "sink broke"}),
        )
        .await;
    let acked = h.publish("probe.run", json!({"set": {"a": "1"}})).await;
    for id in declined.iter().chain([&unknown, &acked]) {
        h.wait_final(PROBE, *id).await;
    }
    assert_eq!(h.wait_final(SINK, sink_dead).await.status, "dead");
    // Dead after its attempts ran out: the database refused its emit's insert each time.
    h.refuse_inserts(SINK).await;
    let refused = h
        .publish(
            "probe.run",
            json!({"set": {"fixed": "yes"}, "emit": [{"event_type": "sink.note", "payload": {}}]}),
        )
        .await;
    let row = h.wait_final(PROBE, refused).await;
    assert_eq!(
        (row.status.as_str(), row.retry_count),
        ("dead", 3),
        "{row:?}"
    );
    assert!(row.last_error.unwrap().contains("refused by test"));

    // List: every service without --service, each filter.
    let pages = host.dead_rows(None, &filter(), None).await.unwrap();
    let totals: Vec<(String, u64)> = pages
        .iter()
        .map(|(s, p)| (s.name.clone(), p.total))
        .collect();
    assert_eq!(
        totals,
        [("probe".into(), 5), ("sink".into(), 1), ("task".into(), 0)]
    );
    let probe = &pages[0].1;
    let mut ids: Vec<i64> = declined.clone();
    ids.extend([unknown, refused]);
    assert_eq!(probe.rows.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let first = &probe.rows[0];
    assert_eq!(
        (
            first.biz_type.as_str(),
            first.last_error.as_deref(),
            first.max_attempts
        ),
        ("probe.run", Some("card declined"), 3)
    );
    assert!(first.dead_at.is_some_and(|t| t <= now()));
    let count = |f: DeadFilter, limit: Option<u64>| async move {
        let pages = host.dead_rows(Some("probe"), &f, limit).await.unwrap();
        let (_, page) = &pages[0];
        (page.rows.len() as u64, page.total)
    };
    let reason = |text: &str| DeadFilter {
        reason: Some(text.into()),
        ..filter()
    };
    assert_eq!(count(reason("card declined"), None).await, (3, 3));
    assert_eq!(count(reason("declined"), None).await, (3, 3));
    assert_eq!(
        count(reason("Card"), None).await,
        (0, 0),
        "case-sensitive everywhere"
    );
    assert_eq!(count(reason("100%_"), None).await, (0, 0), "no wildcards");
    let of_type = |t: &str| DeadFilter {
        event_type: Some(t.into()),
        ..filter()
    };
    assert_eq!(count(of_type("probe.run"), None).await, (5, 5));
    assert_eq!(count(of_type("sink.note"), None).await, (0, 0));
    let since = |t| DeadFilter {
        since: Some(t),
        ..filter()
    };
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(count(since(earlier(now(), hour)), None).await, (5, 5));
    assert_eq!(count(since(later(now(), hour)), None).await, (0, 0));
    assert_eq!(
        count(filter(), Some(2)).await,
        (2, 5),
        "limited, total kept"
    );
    let err = host.dead_rows(Some("nope"), &filter(), None).await;
    let err = format!("{:#}", err.unwrap_err());
    assert!(err.contains("no service \"nope\""), "{err}");

    // Show: one row whole.
    let row = host.whole_row("probe", declined[0]).await.unwrap().unwrap();
    assert_eq!(row.status, "dead");
    assert!(row.payload.unwrap().contains("card declined"));
    assert_eq!((row.topic.is_empty(), row.publish_count), (false, 1));
    assert!(host.whole_row("probe", 999_999).await.unwrap().is_none());

    // Requeue by id: all or nothing, each row that is not dead named with its state.
    let change = host
        .requeue_dead(
            "probe",
            &DeadSelection::Ids(vec![declined[0], acked, 999_999]),
            &operator("alice", ""),
        )
        .await
        .unwrap();
    assert_eq!(
        change,
        DeadChange::NotDead(vec![(acked, Some("consumed".into())), (999_999, None)])
    );
    assert_eq!(h.row(PROBE, declined[0]).await.unwrap().status, "dead");
    // The cause is fixed; the row goes back and the running host consumes it.
    h.allow_inserts(SINK).await;
    let change = host
        .requeue_dead(
            "probe",
            &DeadSelection::Ids(vec![refused]),
            &operator("alice", "sink table fixed"),
        )
        .await
        .unwrap();
    assert_eq!(
        change,
        DeadChange::Done(vec![ActedRow {
            id: refused,
            biz_type: "probe.run".into()
        }])
    );
    let row = wait_handled_again(&h, PROBE, refused, 3).await;
    assert_eq!(
        (row.status.as_str(), row.retry_count),
        ("consumed", 0),
        "{row:?}"
    );
    assert_eq!(row.last_error, None);
    assert_eq!(h.state("probe", "fixed").await.as_deref(), Some("yes"));
    assert_eq!(h.rows(SINK).await.len(), 2, "the emit landed this time");
    let record = |action: &str, id: i64| {
        format!(
            "SELECT {{}} FROM switchyard_dead_letter_actions WHERE action = '{action}' \
             AND row_id = {id} AND table_name = '{PROBE}'"
        )
    };
    let q = record("requeue", refused);
    assert_eq!(h.db.text(&q.replace("{}", "actor")).await, "alice");
    assert_eq!(
        h.db.text(&q.replace("{}", "note")).await,
        "sink table fixed"
    );
    assert_eq!(h.db.text(&q.replace("{}", "service")).await, "probe");
    assert_eq!(
        h.db.scalar(
            &q.replace("{}", "COUNT(*)")
                .replace(" WHERE ", " WHERE retry_count = 3 AND ")
        )
        .await,
        1,
        "the attempts the row had are kept in the record"
    );
    assert!(
        h.db.text(&q.replace("{}", "last_error"))
            .await
            .contains("refused by test"),
        "the reason the row died is kept in the record"
    );
    // A row no longer dead is refused, saying what it is now.
    let change = host
        .requeue_dead(
            "probe",
            &DeadSelection::Ids(vec![refused]),
            &operator("bob", ""),
        )
        .await
        .unwrap();
    assert_eq!(
        change,
        DeadChange::NotDead(vec![(refused, Some("consumed".into()))])
    );

    // Requeue by filter: only the matching dead rows; the host handles them again (the probe
    // says dead again: each is published a second time and ends dead once more).
    let change = host
        .requeue_dead(
            "probe",
            &DeadSelection::Matching(reason("card declined")),
            &operator("bob", "retry the declined cards"),
        )
        .await
        .unwrap();
    let DeadChange::Done(rows) = change else {
        panic!("{change:?}")
    };
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), declined);
    for id in &declined {
        let row = wait_handled_again(&h, PROBE, *id, 1).await;
        assert_eq!(row.status, "dead", "{row:?}");
        assert_eq!(row.last_error.as_deref(), Some("card declined"));
    }
    assert_eq!(
        h.db.scalar(
            "SELECT COUNT(*) FROM switchyard_dead_letter_actions WHERE action = 'requeue' \
             AND actor = 'bob'"
        )
        .await,
        3
    );
    assert!(
        !published_over(&h, PROBE, unknown, 1).await,
        "not matched, untouched"
    );

    // Purge: only dead rows, all or nothing by id, recorded.
    let change = host
        .purge_dead(
            "probe",
            &DeadSelection::Ids(vec![unknown, acked]),
            &operator("carol", ""),
        )
        .await
        .unwrap();
    assert_eq!(
        change,
        DeadChange::NotDead(vec![(acked, Some("consumed".into()))])
    );
    assert!(h.row(PROBE, unknown).await.is_some());
    let change = host
        .purge_dead(
            "probe",
            &DeadSelection::Matching(reason("address")),
            &operator("carol", "customer gone"),
        )
        .await
        .unwrap();
    assert_eq!(
        change,
        DeadChange::Done(vec![ActedRow {
            id: unknown,
            biz_type: "probe.run".into()
        }])
    );
    assert!(h.row(PROBE, unknown).await.is_none());
    let q = record("purge", unknown);
    assert_eq!(h.db.text(&q.replace("{}", "note")).await, "customer gone");
    // Everything dead in the service goes; consumed rows stay.
    let change = host
        .purge_dead(
            "probe",
            &DeadSelection::Matching(filter()),
            &operator("carol", ""),
        )
        .await
        .unwrap();
    let DeadChange::Done(rows) = change else {
        panic!("{change:?}")
    };
    assert_eq!(rows.len(), 3);
    let left: Vec<String> = h.rows(PROBE).await.into_iter().map(|r| r.status).collect();
    assert_eq!(left, ["consumed", "consumed"]);
    let emitted = *h.ids(SINK).await.last().unwrap();
    h.wait_final(SINK, emitted).await;
    let change = host
        .purge_dead(
            "sink",
            &DeadSelection::Matching(filter()),
            &operator("carol", ""),
        )
        .await
        .unwrap();
    assert!(matches!(change, DeadChange::Done(rows) if rows.len() == 1));
    let sink: Vec<String> = h.rows(SINK).await.into_iter().map(|r| r.status).collect();
    assert_eq!(sink, ["consumed"], "the emitted row stays");
    h.stop().await;
}

async fn publish(host: &switchyard::Switchyard, payload: serde_json::Value) -> i64 {
    host.publish(switchyard::NewEvent::new("probe.run", payload))
        .await
        .unwrap()
}

fn switchyard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_lists_shows_requeues_and_purges_only_with_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let url = format!("sqlite://{}", dir.path().join("dead.db").display());
    std::fs::write(&path, config_text(&url, "")).unwrap();
    let cfg = path.to_str().unwrap();

    // Before migrate: no DDL, an error saying to migrate.
    let err = failed(&switchyard(&["dead", "list", "-c", cfg]));
    assert!(err.contains("run `switchyard migrate -c"), "{err}");
    ok(&switchyard(&["migrate", "-c", cfg]));

    // A host running beside the commands, from the same file.
    let config = switchyard::config::Config::load(&path).unwrap();
    let host = switchyard::Switchyard::open(config).await.unwrap();
    let running = host
        .start(std::sync::Arc::new(
            switchyard::transport::embedded::EmbeddedTransport::new(),
        ))
        .await
        .unwrap();
    let db = crate::support::TestDb::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap());
    let boom1 = publish(&host, json!({"action": "dead", "reason": "boom\nline two"})).await;
    let boom2 = publish(&host, json!({"action": "dead", "reason": "boom"})).await;
    let acked = publish(&host, json!({})).await;
    for id in [boom1, boom2, acked] {
        eventually(format!("row {id} final"), WAIT, || async {
            until(db.row(PROBE, id).await.unwrap(), |r| {
                r.status == "dead" || r.status == "consumed"
            })
        })
        .await;
    }

    let text = ok(&switchyard(&["dead", "list", "-c", cfg]));
    assert!(
        text.contains("boom\\nline two"),
        "escaped, one line: {text}"
    );
    assert!(
        text.contains("2 dead rows (probe 2, sink 0, task 0)"),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&ok(&switchyard(&[
        "dead",
        "list",
        "-c",
        cfg,
        "--service",
        "probe",
        "--since",
        "1h",
        "--json",
    ])))
    .unwrap();
    assert_eq!(doc["totals"]["probe"], 2, "{doc}");
    assert_eq!(doc["rows"][0]["id"], boom1);
    assert_eq!(doc["rows"][0]["event_type"], "probe.run");
    assert!(doc["rows"][0]["age_seconds"].as_f64().unwrap() >= 0.0);
    let doc: serde_json::Value = serde_json::from_str(&ok(&switchyard(&[
        "dead",
        "show",
        "-c",
        cfg,
        "--service",
        "probe",
        "--id",
        &boom2.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(doc["status"], "dead");
    assert!(doc["payload"].as_str().unwrap().contains("boom"), "{doc}");

    // Bad input: clear errors, nothing changed.
    let err = failed(&switchyard(&[
        "dead",
        "list",
        "-c",
        cfg,
        "--since",
        "yesterday",
    ]));
    assert!(err.contains("neither a duration"), "{err}");
    let err = failed(&switchyard(&[
        "dead",
        "list",
        "-c",
        cfg,
        "--service",
        "nope",
    ]));
    assert!(err.contains("no service \"nope\""), "{err}");
    let err = failed(&switchyard(&[
        "dead",
        "requeue",
        "-c",
        cfg,
        "--service",
        "probe",
        "--by",
        "ops",
    ]));
    assert!(err.contains("say which dead rows"), "{err}");
    let err = failed(&switchyard(&[
        "dead",
        "requeue",
        "-c",
        cfg,
        "--service",
        "probe",
        "--id",
        &acked.to_string(),
        "--by",
        "ops",
    ]));
    assert!(err.contains(&format!("row {acked} is consumed")), "{err}");
    let err = failed(&switchyard(&[
        "dead",
        "requeue",
        "-c",
        cfg,
        "--service",
        "probe",
        "--id",
        "999999",
        "--by",
        "ops",
    ]));
    assert!(
        err.contains("there is no row 999999 in probe_outbox_messages") && !err.contains("migrate"),
        "{err}"
    );
    let err = failed(&switchyard(&[
        "dead",
        "purge",
        "-c",
        cfg,
        "--service",
        "probe",
        "--all",
        "--by",
        "ops",
    ]));
    assert!(err.contains("pass --yes"), "{err}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM probe_outbox_messages WHERE status = 'dead'")
            .await,
        2,
        "no confirmation, nothing deleted"
    );

    // A database migrated by an earlier version (no actions table): requeue refuses, saying
    // to migrate, and changes nothing; after migrate it works.
    db.exec(
        "DROP TABLE switchyard_dead_letter_actions; \
         DELETE FROM _sqlx_migrations WHERE version = 3",
    )
    .await;
    let requeue = [
        "dead",
        "requeue",
        "-c",
        cfg,
        "--service",
        "probe",
        "--id",
        &boom2.to_string(),
        "--by",
        "ops",
        "--note",
        "after the fix",
    ];
    let err = failed(&switchyard(&requeue));
    assert!(err.contains("run `switchyard migrate -c"), "{err}");
    assert_eq!(db.row(PROBE, boom2).await.unwrap().status, "dead");
    ok(&switchyard(&["migrate", "-c", cfg]));
    let text = ok(&switchyard(&requeue));
    assert!(text.contains("1 dead rows back to pending"), "{text}");
    eventually("the requeued row handled again", WAIT, || async {
        let again = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM {PROBE} WHERE id = {boom2} AND status = 'dead' \
                 AND publish_count = 2"
            ))
            .await;
        until(again, |n| *n == 1)
    })
    .await;
    assert_eq!(
        db.text("SELECT note FROM switchyard_dead_letter_actions WHERE actor = 'ops'")
            .await,
        "after the fix"
    );

    // On a terminal it asks; only a typed "yes" deletes.
    let purge = [
        "dead",
        "purge",
        "-c",
        cfg,
        "--service",
        "probe",
        "--by",
        "ops",
    ];
    let (code, screen) = on_terminal(&[&purge[..], &["--reason", "boom"]].concat(), "no\n");
    assert!(!code.success(), "{screen}");
    assert!(
        screen.contains("2 dead rows would be deleted") && screen.contains("not confirmed"),
        "{screen}"
    );
    assert_eq!(db.ids(PROBE).await.len(), 3);
    let (code, screen) = on_terminal(
        &[&purge[..], &["--id", &boom1.to_string()]].concat(),
        "yes\n",
    );
    assert!(code.success(), "{screen}");
    assert!(screen.contains("deleted 1 dead rows"), "{screen}");
    let text = ok(&switchyard(
        &[&purge[..], &["--reason", "boom", "--yes"]].concat(),
    ));
    assert!(text.contains("1 dead rows would be deleted"), "{text}");
    assert!(text.contains("deleted 1 dead rows"), "{text}");
    let left: Vec<i64> = db.ids(PROBE).await;
    assert_eq!(left, [acked]);
    assert!(running.shutdown(std::time::Duration::from_secs(10)).await);
}

/// Runs the binary with a terminal as its stdin (util-linux `script`), typing `input`; returns
/// its exit status and what the terminal showed.
fn on_terminal(args: &[&str], input: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let command: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_switchyard"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect();
    let mut child = Command::new("script")
        .args(["-qec", &command.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the binary on a terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Writes a message with headers straight to a topic.
async fn write(topic: &str, key: &str, value: &[u8], headers: &[(&str, &str)]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", crate::kafka::brokers())
        .create()
        .unwrap();
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value).headers(h),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_dlq_is_listed_without_a_group_and_replayed_losing_nothing() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let path = cfg_dir.path().join("switchyard.toml");
    let mut h = Harness::start_from(Setup::SQLITE_KAFKA, |url| {
        let text = config_text(url, &crate::kafka::config_extra());
        std::fs::write(&path, &text).unwrap();
        text
    })
    .await;
    let topic = h.host.catalog().service("probe").unwrap().topic.clone();
    let dlq = switchyard::transport::kafka::dlq_topic(&topic);
    let listed = |want: usize| {
        let host = &h.host;
        eventually(
            format!("{want} messages in {dlq}"),
            WAIT,
            move || async move {
                let read = host.dlq_messages(Some("probe")).await.unwrap();
                let messages = read.into_iter().next().unwrap().1.unwrap();
                until(messages, |m| m.len() >= want)
            },
        )
    };
    // An undecodable message: the consumer copies it to the DLQ with its reason.
    let garbage: &[u8] = b"\x00not json\xff";
    write(&topic, "g", garbage, &[]).await;
    let messages = listed(1).await;
    assert_eq!(messages[0].value, garbage);
    assert!(
        messages[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("undecodable envelope"),
        "{messages:?}"
    );
    assert!(
        messages[0]
            .origin
            .as_deref()
            .unwrap()
            .starts_with(&format!("{topic}/"))
    );
    // A valid envelope an earlier host dead-lettered, naming a row not yet due (so only the
    // replay can deliver it).
    h.db.exec(&format!(
        "INSERT INTO {PROBE} (biz_type, service_name, topic, message_key, payload, status, \
         retry_count, max_retry, next_retry_at) VALUES ('probe.run', 'probe', 't', 'k', \
         '{{\"event_type\":\"probe.run\",\"payload\":{{\"set\":{{\"replayed\":\"yes\"}}}}}}', \
         'pending', 0, 3, '2999-01-01 00:00:00')"
    ))
    .await;
    let id = h.db.scalar(&format!("SELECT MAX(id) FROM {PROBE}")).await;
    let envelope = json!({"outbox_id": id, "event_id": id.to_string(), "event_type": "probe.run",
        "event_version": "v1", "service_name": "probe", "aggregate_id": "",
        "payload": {"set": {"replayed": "yes"}}});
    write(
        &dlq,
        "k",
        envelope.to_string().as_bytes(),
        &[
            (
                "dlq_reason",
                "undecodable envelope: refused by an older host",
            ),
            ("dlq_origin", "elsewhere/0@7"),
        ],
    )
    .await;
    let messages = listed(2).await;
    assert_eq!(messages.len(), 2, "{messages:?}");

    // The binary lists the same, from the config file.
    let out = switchyard(&[
        "dead",
        "list",
        "--dlq",
        "-c",
        path.to_str().unwrap(),
        "--service",
        "probe",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let listed_json = doc["messages"].as_array().unwrap();
    assert_eq!(listed_json.len(), 2, "{doc}");
    assert!(
        listed_json
            .iter()
            .any(|m| m["preview"] == "\\x00not json\\xff"),
        "{doc}"
    );
    assert!(
        listed_json.iter().any(|m| m["origin"] == "elsewhere/0@7"),
        "{doc}"
    );

    // An offset the DLQ does not hold: nothing sent.
    let err = h
        .host
        .dlq_replay("probe", &ReplaySelection::Offsets(vec![(None, 999_999)]))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("no message at offset 999999"),
        "{err:#}"
    );

    // Replay everything: the envelope is consumed, the garbage comes back to the DLQ.
    let report = h
        .host
        .dlq_replay("probe", &ReplaySelection::All)
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 2);
    assert_eq!(h.wait_final(PROBE, id).await.status, "consumed");
    assert_eq!(h.state("probe", "replayed").await.as_deref(), Some("yes"));
    let messages = listed(3).await;
    let again: Vec<_> = messages.iter().filter(|m| m.value == garbage).collect();
    assert_eq!(again.len(), 2, "kept, and back once more: {messages:?}");
    assert!(
        again.iter().all(|m| m
            .reason
            .as_deref()
            .unwrap()
            .contains("undecodable envelope")),
        "{again:?}"
    );
    h.stop().await;
}
