//! Webhook channels: where a user's Feishu notifications go.
//!
//! State layout: `channel/<user_id>` → [`Channel`]; `channel/0` is the default for users
//! without their own. When neither exists, the route's configuration value
//! `FEISHU_WEBHOOK_URL` (a granted env entry, `env = { FEISHU_WEBHOOK_URL = "..." }`) is used.
//! Only the URL's shape is checked here; whether the host may be reached is
//! the host's decision (the route's `allowed_hosts`), made at send time.

use crate::bindings::switchyard::handler::types::Event;
use crate::kv;
use serde::{Deserialize, Serialize};
use smartflow_kit::{Step, dead, parse_payload, required};

#[derive(Serialize, Deserialize)]
pub struct Channel {
    pub webhook_url: String,
}

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
    kv::put(
        &format!("channel/{}", req.user_id),
        &Channel {
            webhook_url: url.to_owned(),
        },
    )
}

/// The user's channel, else the default one, else the route's `FEISHU_WEBHOOK_URL`.
pub fn for_user(user_id: i64) -> Step<Option<Channel>> {
    if let Some(c) = kv::get(&format!("channel/{user_id}"))? {
        return Ok(Some(c));
    }
    if let Some(c) = kv::get("channel/0")? {
        return Ok(Some(c));
    }
    Ok(std::env::var("FEISHU_WEBHOOK_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|webhook_url| Channel { webhook_url }))
}
