//! SmartFlow's `active-scheduler` service as a Switchyard handler component, on SmartFlow's
//! `active_schedule_triggers` and `active_schedule_previews` tables (DDL in
//! `examples/smartflow/schema/`; the route grants both `"rw"`).
//!
//! `active_schedule.triggered` accepts version `""` or `"1"` only. The payload checks live in
//! [`trigger`], the deterministic decision rule (in place of SmartFlow's LLM step) in
//! [`decide`], the SQL in [`store`]. SmartFlow's rules for the trigger row:
//! - no row yet (the event is the first the service hears of the trigger): the decision is
//!   inserted as the row (`closed`, `preview_generated` or `rejected`);
//! - a row in a terminal status: nothing happens (the same trigger again, or a redelivery);
//! - a non-final row (`pending`/`processing`, written by SmartFlow's scanner or API) whose
//!   user_id, trigger_type, target_type or target_id differ from the event's: the row is
//!   marked `rejected` with reason `payload_mismatch` (the log names each field), no preview,
//!   no notification, and the event is consumed; otherwise the row takes the decision.
//!
//! When a preview is generated it is stored and `notification.feishu.requested` (version
//! `"1"`) is emitted in the same transaction as the rows. It never sends anything itself.

mod decide;
mod store;
mod trigger;

use smartflow_kit::{Step, check_version_1, dead};
use switchyard_sdk::{Event, Handler, HandlerResult, emit, log};

struct Component;
switchyard_sdk::handler!(Component);

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        check_version_1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "active_schedule.triggered" => handle_trigger(event),
                other => dead(format!(
                    "the active-scheduler handler does not handle {other}"
                )),
            }
        })
    }
}

fn handle_trigger(event: &Event) -> Step<()> {
    let trigger = trigger::Trigger::parse(&event.event_type, &event.payload)?;
    let id = &trigger.trigger_id;
    let now = smartflow_kit::now();
    let decision = decide::decide(&trigger, &event.event_id);
    let recorded = match store::stored(id)? {
        Some(row) if store::TERMINAL.contains(&row.status.as_str()) => {
            log::info(&format!(
                "trigger {id} was already decided ({})",
                row.status
            ));
            return Ok(());
        }
        Some(row) => {
            if let Some(detail) = trigger.mismatch(&row.identity) {
                return reject_mismatch(id, &row.status, &event.event_id, &detail, now);
            }
            store::update_decided(id, &row.status, &decision.record, now)?
        }
        None => store::insert_decided(id, &decision.record, now)?,
    };
    if !recorded {
        log::info(&format!(
            "trigger {id} was decided by another writer meanwhile"
        ));
        return Ok(());
    }
    if let Some(preview) = &decision.preview {
        store::insert_preview(preview)?;
    }
    if let Some(notification) = &decision.notification {
        emit::event("notification.feishu.requested", notification)
            .version("1")
            .aggregate(id)
            .key(trigger.user_id)
            .send()?;
    }
    log::info(&format!(
        "trigger {id} decided {}: {}",
        decision.record.status, decision.record.reason
    ));
    Ok(())
}

/// SmartFlow's `payload_mismatch`: the stored row, still in its non-final status `from`,
/// becomes `rejected` with that reason; nothing else is written or emitted.
fn reject_mismatch(
    id: &str,
    from: &str,
    event_id: &str,
    detail: &str,
    now: time::OffsetDateTime,
) -> Step<()> {
    let outcome = if store::reject(id, from, store::PAYLOAD_MISMATCH, event_id, now)? {
        "rejected"
    } else {
        "left to the writer that decided it meanwhile"
    };
    log::warn(&format!("{detail}: {outcome}"));
    Ok(())
}
