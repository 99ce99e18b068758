//! `active_schedule_triggers` and `active_schedule_previews`: the only module of this component
//! that writes SQL.

use crate::decide::{Preview, TriggerRecord};
use crate::trigger::StoredIdentity;
use smartflow_kit::db::{self, Insert, Value};
use smartflow_kit::{Step, parse_db_time};
use time::OffsetDateTime;

/// Statuses after which a trigger row never changes: an event for it is a no-op.
pub const TERMINAL: [&str; 5] = [
    "preview_generated",
    "closed",
    "skipped",
    "rejected",
    "failed",
];

/// The reason of a trigger rejected because its event contradicts its row (SmartFlow's code).
pub const PAYLOAD_MISMATCH: &str = "payload_mismatch";

/// A trigger row already there (written by SmartFlow's scanner or API, or decided before).
pub struct Stored {
    pub identity: StoredIdentity,
    pub status: String,
}

pub fn stored(trigger_id: &str) -> Step<Option<Stored>> {
    let rows = db::query(
        "SELECT user_id, trigger_type, target_type, target_id, status \
         FROM active_schedule_triggers WHERE id = ?",
        &[trigger_id.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Stored {
        identity: StoredIdentity {
            user_id: row.i64("user_id")?,
            trigger_type: row.text("trigger_type")?,
            target_type: row.text("target_type")?,
            target_id: row.text("target_id")?,
        },
        status: row.text("status")?,
    }))
}

fn time(rfc3339: &str) -> Value {
    parse_db_time(rfc3339).map_or(Value::Null, Value::from)
}

/// Records the decision of a trigger heard of for the first time; `false` when another writer
/// recorded it meanwhile (the primary key says so), which leaves the decision to that writer.
pub fn insert_decided(trigger_id: &str, r: &TriggerRecord, now: OffsetDateTime) -> Step<bool> {
    let inserted = db::insert(
        "INSERT INTO active_schedule_triggers (id, user_id, trigger_type, source, target_type, \
         target_id, status, reason, preview_id, dedupe_key, requested_at, event_id, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            trigger_id.into(),
            r.user_id.into(),
            r.trigger_type.as_str().into(),
            r.source.as_str().into(),
            r.target_type.as_str().into(),
            r.target_id.as_str().into(),
            r.status.as_str().into(),
            r.reason.as_str().into(),
            r.preview_id.as_deref().into(),
            r.dedupe_key.as_deref().into(),
            time(&r.requested_at),
            r.event_id.as_str().into(),
            now.into(),
            now.into(),
        ],
    )?;
    Ok(inserted == Insert::Done)
}

/// Moves a row from the non-final `from` status to the decision; `false` when it was no longer
/// in `from` (another writer decided it).
pub fn update_decided(
    trigger_id: &str,
    from: &str,
    r: &TriggerRecord,
    now: OffsetDateTime,
) -> Step<bool> {
    let changed = db::execute(
        "UPDATE active_schedule_triggers SET status = ?, reason = ?, preview_id = ?, \
         dedupe_key = ?, requested_at = ?, event_id = ?, updated_at = ? \
         WHERE id = ? AND status = ?",
        &[
            r.status.as_str().into(),
            r.reason.as_str().into(),
            r.preview_id.as_deref().into(),
            r.dedupe_key.as_deref().into(),
            time(&r.requested_at),
            r.event_id.as_str().into(),
            now.into(),
            trigger_id.into(),
            from.into(),
        ],
    )?;
    Ok(changed > 0)
}

/// Marks a row still in the non-final `from` status `rejected` with `reason`; `false` when it
/// was no longer in `from` (another writer decided it).
pub fn reject(
    trigger_id: &str,
    from: &str,
    reason: &str,
    event_id: &str,
    now: OffsetDateTime,
) -> Step<bool> {
    let changed = db::execute(
        "UPDATE active_schedule_triggers SET status = 'rejected', reason = ?, event_id = ?, \
         updated_at = ? WHERE id = ? AND status = ?",
        &[
            reason.into(),
            event_id.into(),
            now.into(),
            trigger_id.into(),
            from.into(),
        ],
    )?;
    Ok(changed > 0)
}

pub fn insert_preview(p: &Preview) -> Step<()> {
    // A conflict is this trigger's preview, already there: nothing to add.
    db::insert(
        "INSERT INTO active_schedule_previews (id, trigger_id, user_id, conversation_id, \
         summary_text, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        &[
            p.preview_id.as_str().into(),
            p.trigger_id.as_str().into(),
            p.user_id.into(),
            p.conversation_id.as_str().into(),
            p.summary_text.as_str().into(),
            time(&p.created_at),
        ],
    )
    .map(drop)
}
