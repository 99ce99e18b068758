//! The `active_schedule.triggered` payload and its checks (SmartFlow's enums). Pure: no host
//! import, so every rule is unit-tested here.

use serde::Deserialize;
use smartflow_kit::{Step, dead, max_len, parse_payload, positive, required, required_time};
use time::OffsetDateTime;

pub const TRIGGER_TYPES: [&str; 2] = ["important_urgent_task", "unfinished_feedback"];
pub const SOURCES: [&str; 3] = ["worker_due_job", "api_trigger", "user_feedback"];
pub const TARGET_TYPES: [&str; 3] = ["task_pool", "schedule_event", "task_item"];

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    trigger_id: String,
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    trigger_type: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_id: serde_json::Value,
    requested_at: Option<String>,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    target_status: String,
}

/// A validated trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub trigger_id: String,
    pub user_id: i64,
    pub trigger_type: String,
    pub source: String,
    pub target_type: String,
    /// A positive number or a non-empty string, kept as text; `0` for an `unfinished_feedback`
    /// trigger (SmartFlow's feedback triggers may name no single target).
    pub target_id: String,
    pub requested_at: OffsetDateTime,
    /// The assistant conversation a preview opens in; empty when the producer had none
    /// (SmartFlow's scanner and API never send one).
    pub conversation_id: String,
    /// What the target is called, for the notification text; may be empty.
    pub title: String,
    /// `open` (default), `done` or `cancelled`: the target's state when the trigger fired.
    pub target_status: String,
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Step<String> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        dead(format!(
            "{field} must be one of {}; got {value:?}",
            allowed.join(", ")
        ))
    }
}

impl Trigger {
    pub fn parse(event_type: &str, payload: &[u8]) -> Step<Trigger> {
        let raw: Raw = parse_payload(event_type, payload)?;
        let trigger_id = max_len("trigger_id", required("trigger_id", &raw.trigger_id)?, 128)?;
        let trigger_id = trigger_id.to_owned();
        positive("user_id", raw.user_id)?;
        let trigger_type = one_of("trigger_type", &raw.trigger_type, &TRIGGER_TYPES)?;
        let source = one_of("source", &raw.source, &SOURCES)?;
        let target_type = one_of("target_type", &raw.target_type, &TARGET_TYPES)?;
        let feedback = trigger_type == "unfinished_feedback";
        let target_id = match &raw.target_id {
            serde_json::Value::Number(n) if n.as_i64().is_some_and(|v| v > 0) => n.to_string(),
            serde_json::Value::Number(n) if feedback && n.as_i64() == Some(0) => n.to_string(),
            serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
            other => {
                return dead(format!(
                    "target_id must be a positive number or a non-empty string (0 only for \
                     unfinished_feedback); got {other}"
                ));
            }
        };
        max_len("target_id", &target_id, 64)?;
        let requested_at = required_time("requested_at", raw.requested_at.as_deref())?;
        let target_status = match raw.target_status.as_str() {
            "" => "open".to_owned(),
            s => one_of("target_status", s, &["open", "done", "cancelled"])?,
        };
        Ok(Trigger {
            trigger_id,
            user_id: raw.user_id,
            trigger_type,
            source,
            target_type,
            target_id,
            requested_at,
            conversation_id: max_len("conversation_id", raw.conversation_id.trim(), 128)?
                .to_owned(),
            title: raw.title.trim().to_owned(),
            target_status,
        })
    }
}

/// What a trigger row already in `active_schedule_triggers` says the trigger is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub user_id: i64,
    pub trigger_type: String,
    pub target_type: String,
    pub target_id: String,
}

impl Trigger {
    /// SmartFlow's `payload_mismatch`: the fields of a stored trigger row that the event
    /// contradicts (user_id, trigger_type, target_type, target_id), or `None` when they agree.
    pub fn mismatch(&self, stored: &StoredIdentity) -> Option<String> {
        let mut differ = Vec::new();
        if stored.user_id != self.user_id {
            differ.push(format!(
                "user_id {} (the event says {})",
                stored.user_id, self.user_id
            ));
        }
        for (field, row, event) in [
            ("trigger_type", &stored.trigger_type, &self.trigger_type),
            ("target_type", &stored.target_type, &self.target_type),
            ("target_id", &stored.target_id, &self.target_id),
        ] {
            if row != event {
                differ.push(format!("{field} {row:?} (the event says {event:?})"));
            }
        }
        (!differ.is_empty()).then(|| {
            format!(
                "payload_mismatch: trigger {} is stored with {}",
                self.trigger_id,
                differ.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Step<Trigger> {
        Trigger::parse("active_schedule.triggered", v.to_string().as_bytes())
    }

    fn valid() -> serde_json::Value {
        json!({"trigger_id": "t1", "user_id": 3, "trigger_type": "important_urgent_task",
               "source": "worker_due_job", "target_type": "task_item", "target_id": 7,
               "requested_at": "2026-11-29T09:10:00Z"})
    }

    #[test]
    fn every_enum_is_checked_by_name() {
        for field in ["trigger_type", "source", "target_type"] {
            let mut v = valid();
            v[field] = json!("bogus");
            let Err(smartflow_kit::Failure::Dead(reason)) = parse(v) else {
                panic!("{field} accepted a bogus value")
            };
            assert!(
                reason.starts_with(&format!("{field} must be one of")),
                "{reason}"
            );
        }
        assert!(parse(valid()).is_ok());
    }

    #[test]
    fn a_stored_row_that_disagrees_is_a_payload_mismatch_naming_each_field() {
        let t = parse(valid()).unwrap();
        let mut stored = StoredIdentity {
            user_id: 3,
            trigger_type: "important_urgent_task".into(),
            target_type: "task_item".into(),
            target_id: "7".into(),
        };
        assert_eq!(t.mismatch(&stored), None);
        stored.user_id = 4;
        stored.target_id = "8".into();
        assert_eq!(
            t.mismatch(&stored).as_deref(),
            Some(
                "payload_mismatch: trigger t1 is stored with user_id 4 (the event says 3), \
                 target_id \"8\" (the event says \"7\")"
            )
        );
    }

    #[test]
    fn smartflows_payloads_parse_without_conversation_and_with_feedback_target_0() {
        let t = parse(valid()).unwrap();
        assert_eq!(t.conversation_id, "", "conversation_id is not required");
        let mut feedback = valid();
        feedback["trigger_type"] = json!("unfinished_feedback");
        feedback["target_id"] = json!(0);
        assert_eq!(parse(feedback).unwrap().target_id, "0");
        let mut task = valid();
        task["target_id"] = json!(0);
        let Err(smartflow_kit::Failure::Dead(reason)) = parse(task) else {
            panic!("target_id 0 accepted for a task trigger")
        };
        assert!(
            reason.contains("0 only for unfinished_feedback"),
            "{reason}"
        );
    }

    #[test]
    fn ids_longer_than_their_columns_are_dead() {
        let mut v = valid();
        v["trigger_id"] = json!("t".repeat(129));
        assert!(parse(v).is_err());
        let mut v = valid();
        v["target_id"] = json!("x".repeat(65));
        assert!(parse(v).is_err());
    }
}
