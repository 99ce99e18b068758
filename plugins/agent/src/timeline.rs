//! The agent timeline: SmartFlow's `agent_timeline_events`, unique on (user, conversation,
//! seq). It never touches chat or snapshot rows.
//!
//! SmartFlow's rules: the same row again is a success (no second row); a seq already taken by a
//! different row is repaired by storing the new row at the conversation's `max(seq) + 1`, at
//! most 3 tries in all, after which the event is retried. The unique key's `constraint` error
//! is what says a seq is taken, so two writers racing for one seq are told apart by the
//! database, not by a read that may be stale.
//!
//! A repaired row keeps the seq its producer asked for in `requested_seq`, so the same row sent
//! again is found where the repair put it instead of being stored a second time.

use crate::chat::MAX_CHAT_ID;
use serde::Deserialize;
use smartflow_kit::db::{self, Insert, Row};
use smartflow_kit::{Failure, Step, dead, max_len, parse_payload, positive, required};
use switchyard_sdk::{Event, log};

/// Tries to place a row: at its own seq, then at `max + 1` (SmartFlow: 3 tries in all).
pub const MAX_TRIES: u32 = 3;

#[derive(Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    #[serde(default)]
    pub user_id: i64,
    #[serde(default)]
    pub conversation_id: String,
    #[serde(default)]
    pub seq: i64,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub payload_json: Option<String>,
    #[serde(default)]
    pub tokens_consumed: i64,
}

impl Entry {
    /// Two rows are "the same row" when everything but the seq matches (the user and the
    /// conversation are the query's).
    fn same_row(&self, row: &Row<'_>) -> Step<bool> {
        Ok(row.text("kind")? == self.kind
            && row.opt_text("role")? == self.role
            && row.opt_text("content")? == self.content
            && row.opt_text("payload_json")? == self.payload_json
            && row.i64("tokens_consumed")? == self.tokens_consumed)
    }

    /// Whether this row is already stored: at the seq it asks for, or where an earlier repair
    /// moved it (its `requested_seq`).
    fn already_stored(&self, chat_id: &str) -> Step<bool> {
        let rows = db::query(
            "SELECT kind, role, content, payload_json, tokens_consumed FROM agent_timeline_events \
             WHERE user_id = ? AND chat_id = ? AND (seq = ? OR requested_seq = ?)",
            &[
                self.user_id.into(),
                chat_id.into(),
                self.seq.into(),
                self.seq.into(),
            ],
        )?;
        for row in rows.iter() {
            if self.same_row(&row)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn max_seq(user_id: i64, chat_id: &str) -> Step<i64> {
    let rows = db::query(
        "SELECT max(seq) AS max_seq FROM agent_timeline_events WHERE user_id = ? AND chat_id = ?",
        &[user_id.into(), chat_id.into()],
    )?;
    Ok(match rows.first() {
        Some(row) => row.opt_i64("max_seq")?.unwrap_or(0),
        None => 0,
    })
}

pub fn persist(event: &Event) -> Step<()> {
    let entry: Entry = parse_payload(&event.event_type, &event.payload)?;
    positive("user_id", entry.user_id)?;
    let chat_id = max_len(
        "conversation_id",
        required("conversation_id", &entry.conversation_id)?,
        MAX_CHAT_ID,
    )?;
    positive("seq", entry.seq)?;
    max_len("kind", required("kind", &entry.kind)?, 64)?;
    if let Some(role) = &entry.role {
        max_len("role", role, 16)?;
    }
    if entry.tokens_consumed < 0 {
        return dead(format!(
            "tokens_consumed must not be negative, got {}",
            entry.tokens_consumed
        ));
    }
    if let Some(p) = entry.payload_json.as_deref()
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        return dead(format!("payload_json is not JSON text: {e}"));
    }
    let now = smartflow_kit::now();
    let mut seq = entry.seq;
    for _ in 0..MAX_TRIES {
        let placed = db::insert(
            "INSERT INTO agent_timeline_events (user_id, chat_id, seq, requested_seq, kind, role, \
             content, payload_json, tokens_consumed, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                entry.user_id.into(),
                chat_id.into(),
                seq.into(),
                entry.seq.into(),
                entry.kind.as_str().into(),
                entry.role.as_deref().into(),
                entry.content.as_deref().into(),
                entry.payload_json.as_deref().into(),
                entry.tokens_consumed.into(),
                now.into(),
            ],
        )?;
        let Insert::Conflict(_) = placed else {
            if seq != entry.seq {
                log::info(&format!(
                    "timeline of {chat_id:?}: seq {} was taken, stored at {seq}",
                    entry.seq
                ));
            }
            return Ok(());
        };
        // The seq is taken: by this very row (a redelivery, or one a repair already moved),
        // or by a different row, in which case SmartFlow moves the new one after the last.
        if entry.already_stored(chat_id)? {
            return Ok(());
        }
        seq = max_seq(entry.user_id, chat_id)? + 1;
    }
    Err(Failure::Retry(format!(
        "timeline seq clash in conversation {chat_id:?} not repaired after {MAX_TRIES} tries"
    )))
}
