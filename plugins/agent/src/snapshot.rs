//! Agent state snapshots: SmartFlow's `agent_state_snapshot_records`, one row per
//! conversation, upserted (the latest event wins). It never touches chat or timeline rows.

use crate::chat::MAX_CHAT_ID;
use serde::Deserialize;
use smartflow_kit::db::{self, Insert, Value};
use smartflow_kit::{Step, dead, max_len, parse_payload, positive, required};
use switchyard_sdk::Event;

#[derive(Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub conversation_id: String,
    #[serde(default)]
    pub user_id: i64,
    #[serde(default)]
    pub phase: String,
    /// The agent's state as JSON text, stored as received.
    #[serde(default)]
    pub snapshot_json: String,
}

const UPDATE: &str = "UPDATE agent_state_snapshot_records SET user_id = ?, phase = ?, \
                      snapshot_json = ?, updated_at = ? WHERE chat_id = ?";

pub fn persist(event: &Event) -> Step<()> {
    let snap: Snapshot = parse_payload(&event.event_type, &event.payload)?;
    let chat_id = max_len(
        "conversation_id",
        required("conversation_id", &snap.conversation_id)?,
        MAX_CHAT_ID,
    )?;
    positive("user_id", snap.user_id)?;
    let phase = max_len("phase", required("phase", &snap.phase)?, 64)?;
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&snap.snapshot_json) {
        return dead(format!("snapshot_json is not JSON text: {e}"));
    }
    let now = smartflow_kit::now();
    let fields: [Value; 4] = [
        snap.user_id.into(),
        phase.into(),
        snap.snapshot_json.as_str().into(),
        now.into(),
    ];
    let exists = !db::query(
        "SELECT chat_id FROM agent_state_snapshot_records WHERE chat_id = ?",
        &[chat_id.into()],
    )?
    .is_empty();
    if !exists {
        let mut params = vec![chat_id.into()];
        params.extend(fields.iter().cloned());
        match db::insert(
            "INSERT INTO agent_state_snapshot_records (chat_id, user_id, phase, snapshot_json, \
             updated_at) VALUES (?, ?, ?, ?, ?)",
            &params,
        )? {
            Insert::Done => return Ok(()),
            // Another writer inserted it meanwhile: update that row instead.
            Insert::Conflict(_) => {}
        }
    }
    let mut params = fields.to_vec();
    params.push(chat_id.into());
    db::execute(UPDATE, &params).map(drop)
}
