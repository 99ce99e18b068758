//! The scheduler's decision, a deterministic rule in place of SmartFlow's LLM step. Pure: it
//! reads nothing and writes nothing, it only says what to store (the trigger row's decision, a
//! preview row) and what to emit.
//!
//! The rule, in order:
//! 1. `closed` when the target is no longer open (`target_status` `done` or `cancelled`):
//!    nothing to suggest, no notification.
//! 2. `preview_generated` otherwise: a preview is stored and a notification is due, with dedupe
//!    key `"<user_id>:<trigger_type>:<RFC 3339 start of the 30-minute window of requested_at>"`
//!    and target url `/assistant/<conversation_id>`, or `/assistant/preview/<preview_id>` for a
//!    trigger without a conversation (SmartFlow's scanner and API send none; its sessions,
//!    which would give the preview a conversation, are not shipped).

use crate::trigger::Trigger;
use serde::Serialize;
use smartflow_kit::{rfc3339, window_start};

/// The trigger row's decision (`active_schedule_triggers`).
#[derive(Debug)]
pub struct TriggerRecord {
    /// `closed` or `preview_generated` (`rejected` is written only for a payload mismatch,
    /// by the component).
    pub status: String,
    /// Why, in English.
    pub reason: String,
    pub user_id: i64,
    pub trigger_type: String,
    pub source: String,
    pub target_type: String,
    pub target_id: String,
    pub requested_at: String,
    pub preview_id: Option<String>,
    pub dedupe_key: Option<String>,
    /// The event that carried the trigger.
    pub event_id: String,
}

/// An `active_schedule_previews` row.
#[derive(Debug)]
pub struct Preview {
    pub preview_id: String,
    pub trigger_id: String,
    pub user_id: i64,
    pub conversation_id: String,
    pub summary_text: String,
    pub created_at: String,
}

/// The `notification.feishu.requested` payload.
#[derive(Serialize, Debug)]
pub struct NotificationRequest {
    pub user_id: i64,
    pub trigger_id: String,
    pub preview_id: String,
    pub dedupe_key: String,
    pub target_url: String,
    pub summary_text: String,
    pub fallback_text: String,
    pub requested_at: String,
}

pub struct Decision {
    pub record: TriggerRecord,
    pub preview: Option<Preview>,
    pub notification: Option<NotificationRequest>,
}

pub fn decide(t: &Trigger, event_id: &str) -> Decision {
    let requested_at = rfc3339(t.requested_at);
    let mut record = TriggerRecord {
        status: String::new(),
        reason: String::new(),
        user_id: t.user_id,
        trigger_type: t.trigger_type.clone(),
        source: t.source.clone(),
        target_type: t.target_type.clone(),
        target_id: t.target_id.clone(),
        requested_at: requested_at.clone(),
        preview_id: None,
        dedupe_key: None,
        event_id: event_id.to_owned(),
    };
    if t.target_status != "open" {
        record.status = "closed".into();
        record.reason = format!("{} {} is {}", t.target_type, t.target_id, t.target_status);
        return Decision {
            record,
            preview: None,
            notification: None,
        };
    }
    let preview_id = format!("preview-{}", t.trigger_id);
    let target_url = if t.conversation_id.is_empty() {
        format!("/assistant/preview/{preview_id}")
    } else {
        format!("/assistant/{}", t.conversation_id)
    };
    let dedupe_key = format!(
        "{}:{}:{}",
        t.user_id,
        t.trigger_type,
        window_start(t.requested_at)
    );
    let summary_text = summary(t);
    record.status = "preview_generated".into();
    record.reason = "target is open".into();
    record.preview_id = Some(preview_id.clone());
    record.dedupe_key = Some(dedupe_key.clone());
    let preview = Preview {
        preview_id: preview_id.clone(),
        trigger_id: t.trigger_id.clone(),
        user_id: t.user_id,
        conversation_id: t.conversation_id.clone(),
        summary_text: summary_text.clone(),
        created_at: requested_at.clone(),
    };
    let notification = NotificationRequest {
        user_id: t.user_id,
        trigger_id: t.trigger_id.clone(),
        preview_id,
        dedupe_key,
        target_url,
        summary_text,
        fallback_text: "SmartFlow has a new suggestion for you: open the assistant to review it."
            .into(),
        requested_at,
    };
    Decision {
        record,
        preview: Some(preview),
        notification: Some(notification),
    }
}

fn summary(t: &Trigger) -> String {
    let what = if t.title.is_empty() {
        format!("{} {}", t.target_type.replace('_', " "), t.target_id)
    } else {
        format!("\"{}\"", t.title)
    };
    match t.trigger_type.as_str() {
        "important_urgent_task" => format!("{what} is important and urgent: plan time for it now."),
        _ => format!("{what} is waiting for your feedback."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trigger(extra: serde_json::Value) -> Trigger {
        let mut v = json!({"trigger_id": "t1", "user_id": 3, "trigger_type": "important_urgent_task",
            "source": "worker_due_job", "target_type": "task_pool", "target_id": 7,
            "requested_at": "2026-11-29T09:44:00Z", "conversation_id": "c9"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Trigger::parse("active_schedule.triggered", v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn open_target_with_a_conversation_gets_a_preview_and_a_windowed_notification() {
        let d = decide(&trigger(json!({})), "1");
        assert_eq!(d.record.status, "preview_generated");
        let n = d.notification.unwrap();
        assert_eq!(n.dedupe_key, "3:important_urgent_task:2026-11-29T09:30:00Z");
        assert_eq!(n.target_url, "/assistant/c9");
    }

    #[test]
    fn done_target_is_closed_and_a_trigger_without_conversation_opens_its_preview() {
        let d = decide(&trigger(json!({"target_status": "done"})), "1");
        assert_eq!(d.record.status, "closed");
        assert!(d.notification.is_none());
        let d = decide(&trigger(json!({"conversation_id": ""})), "1");
        assert_eq!(d.record.status, "preview_generated");
        assert_eq!(d.preview.unwrap().conversation_id, "");
        assert_eq!(
            d.notification.unwrap().target_url,
            "/assistant/preview/preview-t1"
        );
    }
}
