//! Webhook channels: where a user's Feishu notifications go (`notification_channels`, a
//! Switchyard addition: SmartFlow kept the webhook in its own config).
//!
//! One row per user; `user_id` 0 is the default for users without their own. When neither
//! exists, the route's configuration value `FEISHU_WEBHOOK_URL` (a granted env entry,
//! `env = { FEISHU_WEBHOOK_URL = "..." }`) is used. Only the URL's shape is checked here;
//! whether the host may be reached is the host's decision (the route's `allowed_hosts`), made
//! at send time.

use serde::Deserialize;
use smartflow_kit::db::{self, Insert};
use smartflow_kit::{Step, dead, parse_payload, required};
use switchyard_sdk::Event;

#[derive(Deserialize)]
struct ConfigureRequest {
    /// 0 sets the default channel.
    #[serde(default)]
    user_id: i64,
    #[serde(default)]
    webhook_url: String,
}

pub fn configure(event: &Event) -> Step<()> {
    let req: ConfigureRequest = parse_payload(&event.event_type, &event.payload)?;
    if req.user_id < 0 {
        return dead(format!(
            "user_id must be 0 (the default channel) or positive, got {}",
            req.user_id
        ));
    }
    let url = required("webhook_url", &req.webhook_url)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return dead(format!(
            "webhook_url must be an absolute http:// or https:// URL, got {url:?}"
        ));
    }
    let now = smartflow_kit::now();
    let inserted = db::insert(
        "INSERT INTO notification_channels (user_id, webhook_url, updated_at) VALUES (?, ?, ?)",
        &[req.user_id.into(), url.into(), now.into()],
    )?;
    if let Insert::Conflict(_) = inserted {
        db::execute(
            "UPDATE notification_channels SET webhook_url = ?, updated_at = ? WHERE user_id = ?",
            &[url.into(), now.into(), req.user_id.into()],
        )?;
    }
    Ok(())
}

/// The user's webhook URL, else the default one, else the route's `FEISHU_WEBHOOK_URL`.
pub fn for_user(user_id: i64) -> Step<Option<String>> {
    let rows = db::query(
        "SELECT user_id, webhook_url FROM notification_channels WHERE user_id IN (?, 0) \
         ORDER BY user_id DESC",
        &[user_id.into()],
    )?;
    if let Some(row) = rows.first() {
        return Ok(Some(row.text("webhook_url")?));
    }
    Ok(switchyard_sdk::env::var("FEISHU_WEBHOOK_URL").filter(|u| !u.trim().is_empty()))
}
