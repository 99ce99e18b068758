//! Delivery records (`notification_records`, unique on channel + dedupe key) and the webhook
//! send, with the component's own retry policy. The only module that sends.
//!
//! A request first inserts its record (`pending`): the unique key on (channel, dedupe_key)
//! refuses a second record for the same key, and that refusal is what says "already sent or
//! being sent", even between two hosts (the second insert waits on the first's transaction).
//! Then it sends.
//!
//! Status (SmartFlow's names): inserted `pending`, then `sent` or `failed` by the send in the
//! same invocation, `dead` once [`MAX_SENDS`] sends failed. The record commits only with the
//! consume, so a committed record is `sent`, `failed` or `dead` (`sending` would never be seen
//! and is not written); `attempt_count` counts the sends, `last_error` keeps the latest failure.
//!
//! Retry policy, SmartFlow's: 5 sends, 5 min before the second, doubling, at most 30 min apart
//! (a failed send never re-runs the whole request, and never forever):
//! 1. The request's first send fails → the record commits `failed` (attempt 1, last error) and
//!    `notification.feishu.retry.requested {dedupe_key}` is emitted in the same transaction. The
//!    request itself is acked: its dedupe and record are never re-run.
//! 2. The retry event's first delivery sends nothing: its row was due as soon as it was
//!    written, and SmartFlow's second send comes one backoff after the first, so it asks to be
//!    retried after [`BACKOFF_BASE_MS`].
//! 3. Each later delivery sends again (send number = committed attempts + the event's delivery
//!    attempt - 1). Success → `sent`. Failure below [`MAX_SENDS`] → outcome `retry`, so the
//!    host's backoff spaces the next send (a retry rolls back that invocation's statements, so
//!    the record keeps saying `failed`; the retry row's `retry_count` and `last_error` show the
//!    progress). Failure at [`MAX_SENDS`] → the record commits `dead` (given up), acked.
//!
//! The spacing is the host's: `[services.notification.retry]` in `examples/smartflow.toml`
//! holds SmartFlow's 5 attempts, 5 min base and 30 min ceiling. Its `max_attempts` must be at
//! least [`MAX_SENDS`] for the component to be the one that gives up; otherwise the retry row
//! ends `dead`.

use crate::channel;
use crate::request::Request;
use serde::Deserialize;
use smartflow_kit::db::{self, Insert};
use smartflow_kit::{Failure, Step, cut, dead, parse_payload, parse_time, required};
use switchyard_sdk::{
    Event, emit,
    http::{self, Request as HttpRequest},
    log,
};

/// Sends per delivery, the first included, before the record is `dead` for good.
pub const MAX_SENDS: u32 = 5;
/// SmartFlow's first notification backoff (5 min), the `delay-ms` of every retry: the host
/// waits at least this long, within the service's backoff ceiling, also where the operator
/// left the service on the host's default policy.
pub const BACKOFF_BASE_MS: u64 = 300_000;
/// The `channel` column of Feishu records.
const CHANNEL: &str = "feishu";

#[derive(Deserialize)]
struct RetryRequest {
    #[serde(default)]
    dedupe_key: String,
}

/// What one send ended as.
struct Sent {
    /// `sent`, `failed` or `dead`.
    status: &'static str,
    attempts: u32,
    error: Option<String>,
}

/// Writes a send's result into the record.
fn settle(dedupe_key: &str, sent: &Sent) -> Step<()> {
    let now = smartflow_kit::now();
    let sent_at = (sent.status == "sent").then_some(now);
    db::execute(
        "UPDATE notification_records SET status = ?, attempt_count = ?, last_error = ?, \
         sent_at = ?, updated_at = ? WHERE channel = ? AND dedupe_key = ?",
        &[
            sent.status.into(),
            sent.attempts.into(),
            sent.error.as_deref().map(cut).into(),
            sent_at.into(),
            now.into(),
            CHANNEL.into(),
            dedupe_key.into(),
        ],
    )
    .map(drop)
}

pub fn requested(event: &Event) -> Step<()> {
    let req = Request::parse(&event.event_type, &event.payload)?;
    let webhook = webhook_for(req.user_id)?;
    let now = smartflow_kit::now();
    let recorded = db::insert(
        "INSERT INTO notification_records (channel, dedupe_key, user_id, trigger_id, preview_id, \
         target_url, content, status, attempt_count, max_attempts, requested_at, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
        &[
            CHANNEL.into(),
            req.dedupe_key.as_str().into(),
            req.user_id.into(),
            req.trigger_id.as_str().into(),
            req.preview_id.as_str().into(),
            req.target_url.as_str().into(),
            req.text().into(),
            MAX_SENDS.into(),
            parse_time("requested_at", &req.requested_at)?.into(),
            now.into(),
            now.into(),
        ],
    )?;
    if let Insert::Conflict(_) = recorded {
        log::info(&format!(
            "notification {:?} already recorded: not sent again",
            req.dedupe_key
        ));
        return Ok(());
    }
    match send(&webhook, &req.text()) {
        Ok(()) => settle(
            &req.dedupe_key,
            &Sent {
                status: "sent",
                attempts: 1,
                error: None,
            },
        ),
        Err(reason) => {
            settle(
                &req.dedupe_key,
                &Sent {
                    status: "failed",
                    attempts: 1,
                    error: Some(reason),
                },
            )?;
            let payload = serde_json::json!({ "dedupe_key": req.dedupe_key });
            emit::event("notification.feishu.retry.requested", &payload)
                .version("1")
                .aggregate(&event.aggregate_id)
                .key(&event.message_key)
                .send()
        }
    }
}

pub fn retry(event: &Event) -> Step<()> {
    let req: RetryRequest = parse_payload(&event.event_type, &event.payload)?;
    let dedupe_key = required("dedupe_key", &req.dedupe_key)?;
    let rows = db::query(
        "SELECT user_id, content, status, attempt_count FROM notification_records \
         WHERE channel = ? AND dedupe_key = ?",
        &[CHANNEL.into(), dedupe_key.into()],
    )?;
    let Some(record) = rows.first() else {
        return dead(format!("no delivery record for dedupe_key {dedupe_key:?}"));
    };
    let status = record.text("status")?;
    if status == "sent" || status == "dead" {
        return Ok(());
    }
    if event.attempt <= 1 {
        return Err(Failure::Retry(format!(
            "send 2 of {MAX_SENDS} waits one backoff after the first"
        )));
    }
    let webhook = webhook_for(record.i64("user_id")?)?;
    let committed = u32::try_from(record.i64("attempt_count")?).unwrap_or(0);
    let number = committed + event.attempt - 1;
    match send(&webhook, &record.text("content")?) {
        Ok(()) => settle(
            dedupe_key,
            &Sent {
                status: "sent",
                attempts: number,
                error: None,
            },
        ),
        Err(reason) if number >= MAX_SENDS => settle(
            dedupe_key,
            &Sent {
                status: "dead",
                attempts: number,
                error: Some(format!("gave up after {number} sends: {reason}")),
            },
        ),
        Err(reason) => Err(Failure::Retry(format!(
            "webhook send {number} of {MAX_SENDS} failed: {reason}"
        ))),
    }
}

fn webhook_for(user_id: i64) -> Step<String> {
    match channel::for_user(user_id)? {
        Some(url) => Ok(url),
        None => dead(format!(
            "no Feishu webhook configured for user {user_id} and no default: publish \
             notification.channel.configure.requested or set FEISHU_WEBHOOK_URL in the route's env"
        )),
    }
}

/// One send. Feishu answers 200 with `{"code": 0}` on success; another status or a non-zero
/// `code` is a failure, returned with its reason.
fn send(webhook: &str, text: &str) -> Result<(), String> {
    let body = serde_json::json!({"msg_type": "text", "content": {"text": text}});
    let result = http::send(&HttpRequest {
        method: "POST".into(),
        url: webhook.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    });
    match result {
        Err(e) => Err(e),
        Ok(r) if !(200..300).contains(&r.status) => {
            Err(format!("webhook answered HTTP {}", r.status))
        }
        Ok(r) => match serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("code").and_then(serde_json::Value::as_i64))
        {
            Some(code) if code != 0 => Err(format!("webhook answered code {code}")),
            _ => Ok(()),
        },
    }
}
