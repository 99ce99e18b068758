//! The `notification.feishu.requested` payload and SmartFlow's checks. Pure: unit-tested here.

use serde::Deserialize;
use smartflow_kit::{Step, dead, max_len, parse_payload, positive, required, required_time};

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    trigger_id: String,
    #[serde(default)]
    preview_id: String,
    #[serde(default)]
    dedupe_key: String,
    #[serde(default)]
    target_url: String,
    summary_text: Option<String>,
    fallback_text: Option<String>,
    requested_at: Option<String>,
}

/// A validated notification request.
#[derive(Debug, Clone)]
pub struct Request {
    pub user_id: i64,
    pub trigger_id: String,
    pub preview_id: String,
    pub dedupe_key: String,
    pub target_url: String,
    pub summary_text: String,
    pub fallback_text: String,
    pub requested_at: String,
}

impl Request {
    pub fn parse(event_type: &str, payload: &[u8]) -> Step<Request> {
        let raw: Raw = parse_payload(event_type, payload)?;
        positive("user_id", raw.user_id)?;
        // Each fits its notification_records column.
        let trigger_id = max_len("trigger_id", required("trigger_id", &raw.trigger_id)?, 128)?;
        let preview_id = max_len("preview_id", required("preview_id", &raw.preview_id)?, 160)?;
        let dedupe_key = max_len("dedupe_key", required("dedupe_key", &raw.dedupe_key)?, 255)?;
        let (trigger_id, preview_id, dedupe_key) = (
            trigger_id.to_owned(),
            preview_id.to_owned(),
            dedupe_key.to_owned(),
        );
        let target_url = required("target_url", &raw.target_url)?.to_owned();
        if target_url.contains("://") || !target_url.starts_with("/assistant/") {
            return dead(format!(
                "target_url must be a path starting with /assistant/ and no scheme, got {target_url:?}"
            ));
        }
        let requested_at = required_time("requested_at", raw.requested_at.as_deref())?;
        let summary_text = raw.summary_text.unwrap_or_default();
        let fallback_text = raw.fallback_text.unwrap_or_default();
        if summary_text.trim().is_empty() && fallback_text.trim().is_empty() {
            return dead("summary_text and fallback_text are both empty: nothing to send");
        }
        Ok(Request {
            user_id: raw.user_id,
            trigger_id,
            preview_id,
            dedupe_key,
            target_url,
            summary_text,
            fallback_text,
            requested_at: smartflow_kit::rfc3339(requested_at),
        })
    }

    /// The text sent to Feishu: the summary (or the fallback) and the link into the assistant.
    pub fn text(&self) -> String {
        let body = if self.summary_text.trim().is_empty() {
            &self.fallback_text
        } else {
            &self.summary_text
        };
        format!("{body}\n{}", self.target_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(url: &str) -> Step<Request> {
        let v = json!({"user_id": 3, "trigger_id": "t", "preview_id": "p", "dedupe_key": "d",
            "target_url": url, "summary_text": "s", "requested_at": "2026-11-29T09:00:00Z"});
        Request::parse("notification.feishu.requested", v.to_string().as_bytes())
    }

    #[test]
    fn target_url_must_be_an_assistant_path_without_scheme() {
        assert!(parse("/assistant/c9").is_ok());
        assert!(parse("https://evil.example/assistant/c9").is_err());
        assert!(parse("/assistant/x?u=http://evil").is_err());
        assert!(parse("/settings").is_err());
    }
}
