//! SmartFlow's agent service on its tables: chat history rows and the conversation's counters
//! (and the memory follow-up), token usage, state snapshots and the timeline with its seq
//! repair, each with its invalid payloads, version and redelivery. The rules that write rows
//! run on every backend.

use crate::support::sink::Sink;
use crate::support::smartflow::{
    assert_dead, instant, publish_v, redeliver, row_json, rows_json, run_ok, start, start_on,
    wait_consumed,
};
use crate::support::{Backend, Harness, TestDb};
use serde_json::{Value, json};

const AGENT: &str = "agent_outbox_messages";
const MEMORY: &str = "memory_outbox_messages";

crate::backend_suite!(
    a_user_chat_message_is_stored_counted_and_asks_memory_for_one_extraction,
    token_usage_adds_up_and_refuses_smartflows_invalid_adjustments,
    state_snapshots_are_upserted_by_conversation,
    timeline_rows_are_idempotent_and_seq_clashes_move_to_the_end,
);

fn chat(role: &str) -> Value {
    json!({"user_id": 3, "conversation_id": "conv-3", "role": role, "message": "hello there",
           "tokens_consumed": 5, "created_at": "2026-11-29T09:00:00Z"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

async fn conversation(h: &Harness) -> Value {
    row_json(
        &h.db,
        "SELECT user_id, message_count, last_message_at, tokens_used FROM agent_chats \
         WHERE chat_id = 'conv-3'",
    )
    .await
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.scalar(sql).await
}

async fn a_user_chat_message_is_stored_counted_and_asks_memory_for_one_extraction(
    backend: Backend,
) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let id = publish_v(&h, "chat.history.persist.requested", "", chat("user")).await;
    wait_consumed(&h, AGENT, id).await;
    let msg = row_json(
        &h.db,
        "SELECT user_id, chat_id, event_id, role, message, reasoning_content, tokens_consumed, \
         created_at FROM chat_histories",
    )
    .await;
    assert_eq!(
        (
            msg["user_id"].as_i64(),
            msg["chat_id"].as_str(),
            msg["event_id"].as_str(),
            msg["role"].as_str(),
            msg["message"].as_str(),
            msg["tokens_consumed"].as_i64()
        ),
        (
            Some(3),
            Some("conv-3"),
            Some(id.to_string().as_str()),
            Some("user"),
            Some("hello there"),
            Some(5)
        )
    );
    assert_eq!(msg["reasoning_content"], Value::Null);
    assert_eq!(
        instant(&msg["created_at"]),
        instant(&json!("2026-11-29T09:00:00Z"))
    );
    let conv = conversation(&h).await;
    assert_eq!(conv["message_count"], 1);
    assert_eq!(
        instant(&conv["last_message_at"]),
        instant(&json!("2026-11-29T09:00:00Z"))
    );
    let memory = h.rows(MEMORY).await;
    assert_eq!(
        memory.len(),
        1,
        "a user message emits memory.extract.requested"
    );
    assert_eq!(memory[0].biz_type, "memory.extract.requested");
    h.wait_final(MEMORY, h.ids(MEMORY).await[0]).await;
    let job = row_json(
        &h.db,
        &format!(
            "SELECT status, source_text FROM memory_jobs WHERE idempotency_key = 'chat:conv-3:{id}'"
        ),
    )
    .await;
    assert_eq!(
        (job["status"].as_str(), job["source_text"].as_str()),
        (Some("pending"), Some("hello there"))
    );

    // An assistant message is stored and counted, without a memory follow-up; a message
    // without created_at takes the consume-time clock.
    let id2 = publish_v(
        &h,
        "chat.history.persist.requested",
        "v1",
        with(chat("assistant"), "created_at", Value::Null),
    )
    .await;
    wait_consumed(&h, AGENT, id2).await;
    let conv = conversation(&h).await;
    assert_eq!(conv["message_count"], 2);
    assert!(
        instant(&conv["last_message_at"]) > instant(&json!("2026-11-29T09:00:00Z")),
        "{conv}"
    );
    assert_eq!(h.rows(MEMORY).await.len(), 1);

    // The same event (same event_id) enqueued twice: one message, one count, one follow-up.
    let wrapper = json!({"event_id": "evt-twice", "event_type": "chat.history.persist.requested",
                         "payload": with(chat("user"), "message", json!("said twice"))})
    .to_string();
    let a = h
        .insert_raw(AGENT, "chat.history.persist.requested", &wrapper, 20)
        .await;
    let b = h
        .insert_raw(AGENT, "chat.history.persist.requested", &wrapper, 20)
        .await;
    wait_consumed(&h, AGENT, a).await;
    wait_consumed(&h, AGENT, b).await;
    assert_eq!(
        count(
            &h.db,
            "SELECT COUNT(*) FROM chat_histories WHERE event_id = 'evt-twice'"
        )
        .await,
        1
    );
    assert_eq!(conversation(&h).await["message_count"], 3);
    assert_eq!(h.rows(MEMORY).await.len(), 2, "one follow-up for the event");

    // Another user cannot write into this conversation.
    assert_dead(
        &h,
        AGENT,
        "chat.history.persist.requested",
        "",
        with(chat("user"), "user_id", json!(4)),
        "conversation \"conv-3\" belongs to user 3, not 4",
    )
    .await;

    // The first row delivered again changes nothing and emits nothing.
    redeliver(
        &h,
        "agent",
        AGENT,
        id,
        (
            "chat.token.usage.adjust.requested",
            "",
            json!({"user_id": 3, "conversation_id": "marker", "tokens_delta": 1}),
        ),
    )
    .await;
    assert_eq!(conversation(&h).await["message_count"], 3);
    assert_eq!(
        count(
            &h.db,
            "SELECT COUNT(*) FROM chat_histories WHERE chat_id = 'conv-3'"
        )
        .await,
        3
    );
    assert_eq!(h.rows(MEMORY).await.len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chat_messages_and_versions_are_dead_with_their_reason() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "chat.history.persist.requested";
    for (payload, reason) in [
        (
            with(chat("user"), "user_id", json!(0)),
            "user_id must be positive, got 0",
        ),
        (
            with(chat("user"), "conversation_id", json!(" ")),
            "conversation_id must not be empty",
        ),
        (
            with(chat("user"), "conversation_id", json!("c".repeat(129))),
            "conversation_id is 129 bytes, at most 128 are accepted",
        ),
        (
            with(chat("user"), "role", json!("robot")),
            "role must be one of user, assistant, system",
        ),
        (
            with(chat("user"), "message", json!("")),
            "message must not be empty",
        ),
        (
            with(chat("user"), "tokens_consumed", json!(-1)),
            "tokens_consumed must not be negative",
        ),
        (
            with(chat("user"), "created_at", json!("yesterday")),
            "created_at is not an RFC 3339 time",
        ),
        (
            json!("not an object"),
            "invalid chat.history.persist.requested payload",
        ),
    ] {
        assert_dead(&h, AGENT, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        AGENT,
        ty,
        "v2",
        chat("user"),
        "unsupported event_version \"v2\"",
    )
    .await;
    assert!(
        h.rows(MEMORY).await.is_empty(),
        "a dead event emits nothing"
    );
    for table in ["chat_histories", "agent_chats"] {
        assert_eq!(
            count(&h.db, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "a dead event writes no {table} row"
        );
    }
    h.stop().await;
}

async fn token_usage_adds_up_and_refuses_smartflows_invalid_adjustments(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let ty = "chat.token.usage.adjust.requested";
    let ok = json!({"user_id": 3, "conversation_id": "conv-3", "tokens_delta": 250});
    let first = publish_v(&h, ty, "", ok.clone()).await;
    run_ok(
        &h,
        AGENT,
        ty,
        "",
        with(ok.clone(), "tokens_delta", json!(50)),
    )
    .await;
    wait_consumed(&h, AGENT, first).await;
    let conv = conversation(&h).await;
    assert_eq!(
        (conv["tokens_used"].as_i64(), conv["user_id"].as_i64()),
        (Some(300), Some(3))
    );
    assert_eq!(conv["message_count"], 0, "usage counts no message");
    // The conversation's first message after its usage keeps the usage.
    run_ok(
        &h,
        AGENT,
        "chat.history.persist.requested",
        "",
        chat("assistant"),
    )
    .await;
    let conv = conversation(&h).await;
    assert_eq!(
        (conv["tokens_used"].as_i64(), conv["message_count"].as_i64()),
        (Some(300), Some(1))
    );
    for (payload, reason) in [
        (
            with(ok.clone(), "user_id", json!(-4)),
            "user_id must be positive, got -4",
        ),
        (
            with(ok.clone(), "conversation_id", json!("")),
            "conversation_id must not be empty",
        ),
        (
            with(ok.clone(), "tokens_delta", json!(0)),
            "tokens_delta must be positive, got 0",
        ),
        (
            with(ok.clone(), "tokens_delta", json!(-10)),
            "tokens_delta must be positive, got -10",
        ),
    ] {
        assert_dead(&h, AGENT, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        AGENT,
        ty,
        "2",
        ok.clone(),
        "unsupported event_version \"2\"",
    )
    .await;
    redeliver(
        &h,
        "agent",
        AGENT,
        first,
        (
            ty,
            "",
            json!({"user_id": 3, "conversation_id": "marker", "tokens_delta": 1}),
        ),
    )
    .await;
    assert_eq!(
        conversation(&h).await["tokens_used"],
        300,
        "a redelivered adjustment is not added twice"
    );
    h.stop().await;
}

async fn state_snapshots_are_upserted_by_conversation(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let ty = "agent.state.snapshot.persist";
    let snap = |phase: &str| json!({"conversation_id": "conv-3", "user_id": 3, "phase": phase, "snapshot_json": "{\"step\": 1}"});
    let first = publish_v(&h, ty, "", snap("planning")).await;
    run_ok(&h, AGENT, ty, "", snap("executing")).await;
    wait_consumed(&h, AGENT, first).await;
    let stored = row_json(
        &h.db,
        "SELECT chat_id, user_id, phase, snapshot_json FROM agent_state_snapshot_records",
    )
    .await;
    assert_eq!(
        (
            stored["chat_id"].as_str(),
            stored["phase"].as_str(),
            stored["snapshot_json"].as_str()
        ),
        (Some("conv-3"), Some("executing"), Some("{\"step\": 1}")),
        "one row per conversation, the latest snapshot wins"
    );
    for (payload, reason) in [
        (
            with(snap("x"), "user_id", json!(0)),
            "user_id must be positive",
        ),
        (
            with(snap("x"), "conversation_id", json!("")),
            "conversation_id must not be empty",
        ),
        (
            with(snap("x"), "phase", json!("")),
            "phase must not be empty",
        ),
        (
            with(snap("x"), "snapshot_json", json!("{broken")),
            "snapshot_json is not JSON text",
        ),
    ] {
        assert_dead(&h, AGENT, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        AGENT,
        ty,
        "v9",
        snap("x"),
        "unsupported event_version \"v9\"",
    )
    .await;
    redeliver(
        &h,
        "agent",
        AGENT,
        first,
        (
            ty,
            "",
            with(snap("marker"), "conversation_id", json!("other")),
        ),
    )
    .await;
    let phases: Vec<Value> = rows_json(
        &h.db,
        "SELECT chat_id, phase FROM agent_state_snapshot_records ORDER BY chat_id",
    )
    .await;
    assert_eq!(
        phases,
        vec![
            json!({"chat_id": "conv-3", "phase": "executing"}),
            json!({"chat_id": "other", "phase": "marker"})
        ]
    );
    h.stop().await;
}

fn entry(seq: i64, content: &str) -> Value {
    json!({"user_id": 3, "conversation_id": "conv-3", "seq": seq,
           "kind": "message", "role": "user", "content": content, "tokens_consumed": 1})
}

/// (seq, requested_seq, content) of conv-3's timeline, by seq.
async fn timeline(h: &Harness) -> Vec<(i64, i64, String)> {
    rows_json(
        &h.db,
        "SELECT seq, requested_seq, content FROM agent_timeline_events \
         WHERE user_id = 3 AND chat_id = 'conv-3' ORDER BY seq",
    )
    .await
    .iter()
    .map(|r| {
        (
            r["seq"].as_i64().unwrap(),
            r["requested_seq"].as_i64().unwrap(),
            r["content"].as_str().unwrap().to_owned(),
        )
    })
    .collect()
}

async fn timeline_rows_are_idempotent_and_seq_clashes_move_to_the_end(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    let ty = "agent.timeline.persist.requested";
    let first = publish_v(&h, ty, "", entry(1, "a")).await;
    wait_consumed(&h, AGENT, first).await;
    run_ok(&h, AGENT, ty, "", entry(2, "b")).await;
    // The same row again: success, nothing new.
    run_ok(&h, AGENT, ty, "", entry(1, "a")).await;
    // A different row at a taken seq moves to max + 1.
    run_ok(&h, AGENT, ty, "", entry(1, "c")).await;
    // That moved row sent again is found where it went, not stored a second time.
    run_ok(&h, AGENT, ty, "", entry(1, "c")).await;
    // The same seq in another user's conversation of the same id is no clash.
    run_ok(&h, AGENT, ty, "", with(entry(1, "z"), "user_id", json!(4))).await;
    assert_eq!(
        timeline(&h).await,
        vec![
            (1, 1, "a".to_owned()),
            (2, 2, "b".to_owned()),
            (3, 1, "c".to_owned())
        ]
    );
    for (payload, reason) in [
        (
            with(entry(5, "x"), "user_id", json!(0)),
            "user_id must be positive",
        ),
        (
            with(entry(5, "x"), "conversation_id", json!("")),
            "conversation_id must not be empty",
        ),
        (with(entry(5, "x"), "seq", json!(0)), "seq must be positive"),
        (
            with(entry(5, "x"), "kind", json!("")),
            "kind must not be empty",
        ),
        (
            with(entry(5, "x"), "payload_json", json!("{nope")),
            "payload_json is not JSON text",
        ),
    ] {
        assert_dead(&h, AGENT, ty, "", payload, reason).await;
    }
    assert_dead(
        &h,
        AGENT,
        ty,
        "v2",
        entry(5, "x"),
        "unsupported event_version",
    )
    .await;
    redeliver(
        &h,
        "agent",
        AGENT,
        first,
        (
            ty,
            "",
            with(entry(1, "m"), "conversation_id", json!("marker")),
        ),
    )
    .await;
    assert_eq!(
        timeline(&h).await.len(),
        3,
        "a redelivered row adds nothing"
    );
    h.stop().await;
}

/// A trigger that takes every seq a `squatted` row asks for just before it is inserted (by
/// inserting another row there in the same statement), so every try clashes on the unique key.
/// MariaDB cannot do this (a trigger may not write the table it fires on), so the test runs on
/// SQLite and PostgreSQL; on PostgreSQL a sequence, which no rollback undoes, counts the tries.
async fn squat_every_seq(db: &TestDb) {
    let squatter = "INSERT INTO agent_timeline_events (user_id, chat_id, seq, requested_seq, \
                    kind, content, tokens_consumed) VALUES (NEW.user_id, NEW.chat_id, NEW.seq, \
                    NEW.seq, 'squatter', 'other', 0)";
    match db {
        TestDb::Sqlite(_) => {
            db.exec(&format!(
                "CREATE TRIGGER squat BEFORE INSERT ON agent_timeline_events \
                 WHEN NEW.content = 'squatted' BEGIN {squatter}; END"
            ))
            .await;
        }
        _ => {
            db.exec(&format!(
                "CREATE SEQUENCE squat_tries; \
                 CREATE FUNCTION squat() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 PERFORM nextval('squat_tries'); {squatter}; RETURN NEW; END $$; \
                 CREATE TRIGGER squat BEFORE INSERT ON agent_timeline_events FOR EACH ROW \
                 WHEN (NEW.content = 'squatted') EXECUTE FUNCTION squat()"
            ))
            .await;
        }
    }
}

async fn a_seq_clash_that_persists_is_given_up_after_three_tries(backend: Backend) {
    let sink = Sink::start().await;
    let mut h = start_on(backend, &sink.addr).await;
    squat_every_seq(&h.db).await;
    let ty = "agent.timeline.persist.requested";
    let id = publish_v(&h, ty, "", entry(1, "squatted")).await;
    let row = h.wait_final(AGENT, id).await;
    assert_eq!(row.status, "dead", "{row:?}");
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains("timeline seq clash in conversation \"conv-3\" not repaired after 3 tries"),
        "{error}"
    );
    assert!(
        timeline(&h).await.is_empty(),
        "nothing of a retried invocation stays, not even the squatters"
    );
    if let TestDb::Postgres(..) = h.db {
        // Each attempt's first run is the host's optimistic one, which stops at the first
        // failed write (on PostgreSQL it cannot be undone alone) and runs the batch again with
        // a savepoint per invocation: that careful run is where the handler's 3 tries happen.
        let tries = h.db.scalar("SELECT last_value FROM squat_tries").await;
        assert_eq!(
            tries,
            (1 + 3) * i64::from(row.retry_count),
            "1 optimistic + 3 careful tries per attempt, {} attempts",
            row.retry_count
        );
    }
    h.stop().await;
}

mod seq_clash {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_gives_up_after_three_tries() {
        super::a_seq_clash_that_persists_is_given_up_after_three_tries(
            crate::support::Backend::Sqlite,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_gives_up_after_three_tries() {
        super::a_seq_clash_that_persists_is_given_up_after_three_tries(
            crate::support::Backend::Postgres,
        )
        .await;
    }
}
