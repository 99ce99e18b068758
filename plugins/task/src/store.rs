//! The `tasks` table: the only module of this component that writes SQL.

use crate::promotion;
use serde::Deserialize;
use smartflow_kit::db::{self, Insert, Value, placeholders};
use smartflow_kit::{Failure, Step, dead, parse_time};
use time::OffsetDateTime;

/// Ids per statement when a request names many tasks.
const CHUNK: usize = 500;

/// A task as events carry it (`task.record.requested`, `task.upsert.requested`).
#[derive(Deserialize)]
pub struct Task {
    pub id: i64,
    pub user_id: i64,
    #[serde(default)]
    pub title: String,
    pub priority: i64,
    /// RFC 3339; `None` means the task never becomes urgent by time alone.
    #[serde(default)]
    pub urgency_threshold_at: Option<String>,
    /// The `completed` column: a done task is never promoted and never triggers the scheduler.
    #[serde(default)]
    pub done: bool,
    /// The assistant conversation the task belongs to; the scheduler opens its preview there.
    #[serde(default)]
    pub conversation_id: Option<String>,
}

/// What the table held for a task before it was saved.
pub struct Before {
    pub priority: i64,
    pub completed: bool,
}

/// Inserts or updates `task` (by id) and returns what the row held before, if it existed.
///
/// # Errors
/// Dead when the id is another user's task; retry on a database failure, or when the row was
/// created by someone else between the read and the insert (the retry then updates it).
pub fn save(task: &Task, now: OffsetDateTime) -> Step<Option<Before>> {
    let rows = db::query(
        "SELECT user_id, priority, completed FROM tasks WHERE id = ?",
        &[task.id.into()],
    )?;
    let threshold = match task.urgency_threshold_at.as_deref() {
        Some(t) => Some(parse_time("urgency_threshold_at", t)?),
        None => None,
    };
    let values: [Value; 7] = [
        task.user_id.into(),
        task.title.as_str().into(),
        task.priority.into(),
        threshold.into(),
        task.done.into(),
        task.conversation_id.as_deref().into(),
        now.into(),
    ];
    if let Some(row) = rows.first() {
        let owner = row.i64("user_id")?;
        if owner != task.user_id {
            return dead(format!(
                "task {} belongs to user {owner}, not {}",
                task.id, task.user_id
            ));
        }
        let before = Before {
            priority: row.i64("priority")?,
            completed: row.bool("completed")?,
        };
        let mut params = values.to_vec();
        params.push(task.id.into());
        db::execute(
            "UPDATE tasks SET user_id = ?, title = ?, priority = ?, urgency_threshold_at = ?, \
             completed = ?, conversation_id = ?, updated_at = ? WHERE id = ?",
            &params,
        )?;
        return Ok(Some(before));
    }
    let mut params = vec![task.id.into()];
    params.extend(values.iter().cloned());
    params.push(now.into());
    match db::insert(
        "INSERT INTO tasks (id, user_id, title, priority, urgency_threshold_at, completed, \
         conversation_id, updated_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &params,
    )? {
        Insert::Done => Ok(None),
        Insert::Conflict(e) => Err(Failure::Retry(format!(
            "task {} was created by another writer meanwhile: {e}",
            task.id
        ))),
    }
}

/// SmartFlow's promotion over the user's tasks among `ids` at `now`; returns how many were
/// promoted. Each UPDATE re-checks the priority it promotes from, so a row changed since it was
/// read is never promoted twice.
///
/// # Errors
/// Retry on a database failure.
pub fn promote_due(user_id: i64, ids: &[i64], now: OffsetDateTime) -> Step<u64> {
    let mut promoted = 0;
    for chunk in ids.chunks(CHUNK) {
        let mut params: Vec<Value> = vec![user_id.into()];
        params.extend(chunk.iter().map(|id| Value::from(*id)));
        let rows = db::query(
            &format!(
                "SELECT id, priority, urgency_threshold_at, completed FROM tasks \
                 WHERE user_id = ? AND id IN ({})",
                placeholders(chunk.len())
            ),
            &params,
        )?;
        let (mut to_1, mut to_3) = (Vec::new(), Vec::new());
        for row in rows.iter() {
            let due = promotion::promoted(
                row.i64("priority")?,
                row.opt_time("urgency_threshold_at")?,
                row.bool("completed")?,
                now,
            );
            match due {
                Some(1) => to_1.push(row.i64("id")?),
                Some(_) => to_3.push(row.i64("id")?),
                None => {}
            }
        }
        for (from, to, ids) in [(2_i64, 1_i64, to_1), (4, 3, to_3)] {
            if ids.is_empty() {
                continue;
            }
            let mut params: Vec<Value> = vec![to.into(), now.into(), user_id.into(), from.into()];
            params.extend(ids.iter().map(|id| Value::from(*id)));
            promoted += db::execute(
                &format!(
                    "UPDATE tasks SET priority = ?, updated_at = ? \
                     WHERE user_id = ? AND priority = ? AND id IN ({})",
                    placeholders(ids.len())
                ),
                &params,
            )?;
        }
    }
    Ok(promoted)
}
