//! SmartFlow's agent service: chat history (and its memory follow-up), token usage, state
//! snapshots and the timeline, each with its happy path, invalid payloads, version and
//! redelivery.

use crate::support::sink::Sink;
use crate::support::smartflow::{assert_dead, publish_v, redeliver, run, start, state_json};
use serde_json::{Value, json};

const AGENT: &str = "agent_outbox_messages";
const MEMORY: &str = "memory_outbox_messages";

fn chat(role: &str) -> Value {
    json!({"user_id": 3, "conversation_id": "conv-3", "role": role, "message": "hello there",
           "tokens_consumed": 5, "created_at": "2026-11-29T09:00:00Z"})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_chat_message_is_stored_and_asks_memory_for_one_extraction() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let id = publish_v(&h, "chat.history.persist.requested", "", chat("user")).await;
    assert_eq!(h.wait_final(AGENT, id).await.status, "consumed");
    let conv = state_json(&h, "agent", "chat/conv-3").await.unwrap();
    assert_eq!(conv["message_count"], 1);
    assert_eq!(conv["last_message_at"], "2026-11-29T09:00:00Z");
    let msg = state_json(&h, "agent", "chat/conv-3/message/00000001")
        .await
        .unwrap();
    assert_eq!(msg["message"], "hello there");
    let memory = h.rows(MEMORY).await;
    assert_eq!(
        memory.len(),
        1,
        "a user message emits memory.extract.requested"
    );
    assert_eq!(memory[0].biz_type, "memory.extract.requested");
    h.wait_final(MEMORY, h.ids(MEMORY).await[0]).await;
    let key = format!("job/chat:conv-3:{id}");
    let job = state_json(&h, "memory", &key).await.unwrap();
    assert_eq!(
        (job["status"].as_str(), job["source_text"].as_str()),
        (Some("pending"), Some("hello there"))
    );

    // An assistant message is stored without a memory follow-up.
    let id2 = publish_v(
        &h,
        "chat.history.persist.requested",
        "v1",
        chat("assistant"),
    )
    .await;
    assert_eq!(h.wait_final(AGENT, id2).await.status, "consumed");
    assert_eq!(
        state_json(&h, "agent", "chat/conv-3").await.unwrap()["message_count"],
        2
    );
    assert_eq!(h.rows(MEMORY).await.len(), 1);

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
    assert_eq!(
        state_json(&h, "agent", "chat/conv-3").await.unwrap()["message_count"],
        2
    );
    assert_eq!(h.rows(MEMORY).await.len(), 1);
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
    assert_eq!(h.state("agent", "chat/conv-3").await, None);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_usage_adds_up_and_refuses_smartflows_invalid_adjustments() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "chat.token.usage.adjust.requested";
    let ok = json!({"user_id": 3, "conversation_id": "conv-3", "tokens_delta": 250});
    let first = publish_v(&h, ty, "", ok.clone()).await;
    assert_eq!(
        run(
            &h,
            AGENT,
            ty,
            "",
            with(ok.clone(), "tokens_delta", json!(50))
        )
        .await
        .0,
        "consumed"
    );
    assert_eq!(h.wait_final(AGENT, first).await.status, "consumed");
    assert_eq!(
        state_json(&h, "agent", "chat/conv-3").await.unwrap()["tokens_used"],
        300
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
        state_json(&h, "agent", "chat/conv-3").await.unwrap()["tokens_used"],
        300,
        "a redelivered adjustment is not added twice"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_snapshots_are_upserted_by_conversation() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "agent.state.snapshot.persist";
    let snap = |phase: &str| json!({"conversation_id": "conv-3", "user_id": 3, "phase": phase, "snapshot_json": "{\"step\": 1}"});
    let first = publish_v(&h, ty, "", snap("planning")).await;
    assert_eq!(
        run(&h, AGENT, ty, "", snap("executing")).await.0,
        "consumed"
    );
    assert_eq!(h.wait_final(AGENT, first).await.status, "consumed");
    let stored = state_json(&h, "agent", "snapshot/conv-3").await.unwrap();
    assert_eq!(stored["phase"], "executing", "the latest snapshot wins");
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
    assert_eq!(
        state_json(&h, "agent", "snapshot/conv-3").await.unwrap()["phase"],
        "executing"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_rows_are_idempotent_and_seq_clashes_move_to_the_end() {
    let sink = Sink::start().await;
    let mut h = start(&sink.addr).await;
    let ty = "agent.timeline.persist.requested";
    let entry = |seq: i64, content: &str| {
        json!({"user_id": 3, "conversation_id": "conv-3", "seq": seq,
        "kind": "message", "role": "user", "content": content, "tokens_consumed": 1})
    };
    let key = |seq: i64| format!("timeline/conv-3/{seq:010}");
    let first = publish_v(&h, ty, "", entry(1, "a")).await;
    assert_eq!(h.wait_final(AGENT, first).await.status, "consumed");
    assert_eq!(run(&h, AGENT, ty, "", entry(2, "b")).await.0, "consumed");
    // The same row again: success, nothing new.
    assert_eq!(run(&h, AGENT, ty, "", entry(1, "a")).await.0, "consumed");
    assert_eq!(h.state("agent", &key(3)).await, None);
    // A different row at a taken seq moves to max + 1.
    assert_eq!(run(&h, AGENT, ty, "", entry(1, "c")).await.0, "consumed");
    assert_eq!(
        state_json(&h, "agent", &key(3)).await.unwrap()["content"],
        "c"
    );
    assert_eq!(
        state_json(&h, "agent", &key(1)).await.unwrap()["content"],
        "a"
    );
    // That moved row sent again is found where it went, not stored a second time.
    assert_eq!(run(&h, AGENT, ty, "", entry(1, "c")).await.0, "consumed");
    assert_eq!(h.state("agent", &key(4)).await, None);
    assert_eq!(
        h.state("agent", "timeline/conv-3/max_seq").await.as_deref(),
        Some("3")
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
        h.state("agent", &key(4)).await,
        None,
        "a redelivered row adds nothing"
    );
    h.stop().await;
}
