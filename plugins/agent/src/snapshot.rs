//! Agent state snapshots: SmartFlow's one-row-per-conversation snapshot table.
//!
//! State layout: `snapshot/<conversation_id>` → [`Snapshot`], upserted (the latest event wins).
//! It never reads or writes chat or timeline keys.

use crate::bindings::switchyard::handler::types::Event;
use crate::kv;
use serde::{Deserialize, Serialize};
use smartflow_kit::{Step, dead, parse_payload, positive, required, seg};

#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub conversation_id: String,
    pub user_id: i64,
    pub phase: String,
    /// The agent's state as JSON text, stored as received.
    pub snapshot_json: String,
}

pub fn persist(event: &Event) -> Step<()> {
    let snap: Snapshot = parse_payload(&event.event_type, &event.payload)?;
    required("conversation_id", &snap.conversation_id)?;
    positive("user_id", snap.user_id)?;
    required("phase", &snap.phase)?;
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&snap.snapshot_json) {
        return dead(format!("snapshot_json is not JSON text: {e}"));
    }
    kv::put(
        &format!("snapshot/{}", seg(snap.conversation_id.trim())),
        &snap,
    )
}
