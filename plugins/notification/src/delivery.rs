//! Delivery records and the webhook send, with the component's own retry policy.
//!
//! State layout: `delivery/<dedupe_key>` → [`Delivery`]. One record per dedupe key: a second
//! request with the same key stores and sends nothing.
//!
//! Status: `pending` (recorded) → `sending` (request in flight) → `sent` | `failed`. Effects
//! commit only with the consume, so a committed record is `sent` or `failed`; `transitions`
//! keeps the path it took (`["pending", "sending", "failed", "sending", "sent"]`).
//!
//! Retry policy (a failed send never re-runs the whole request, and never forever):
//! 1. The request's first send fails → the record commits `failed` (attempts 1, last error) and
//!    `notification.feishu.retry.requested {dedupe_key}` is emitted in the same transaction.
//! 2. The retry event sends again (send number = committed attempts + the event's delivery
//!    attempt). Success → `sent`. Failure below [`MAX_SENDS`] → outcome `retry`, so the host's
//!    backoff spaces the next send (a retry drops that invocation's writes, so the record keeps
//!    saying `failed`; the retry row's `retry_count` and `last_error` show the progress).
//!    Failure at [`MAX_SENDS`] → the record commits `failed` for good (`gave_up`), acked.
//!
//! The host's `retry.max_attempts` must exceed `MAX_SENDS - 1` for the component to be the one
//! that gives up (the default, 20, does); otherwise the retry row ends `dead`.

use crate::bindings::switchyard::handler::emit::{FollowUp, emit};
use crate::bindings::switchyard::handler::log::{Level, log};
use crate::bindings::switchyard::handler::outbound_http::{self, Request as HttpRequest};
use crate::bindings::switchyard::handler::types::Event;
use crate::channel;
use crate::kv;
use crate::request::Request;
use serde::{Deserialize, Serialize};
use smartflow_kit::{Failure, Step, dead, parse_payload, required, seg};

/// Sends per delivery, the first included, before the record is `failed` for good.
pub const MAX_SENDS: u32 = 5;
/// Delay hint on a retried send; the host never retries sooner than its own backoff.
pub const RETRY_DELAY_MS: u64 = 1_000;

#[derive(Serialize, Deserialize, Debug)]
pub struct Delivery {
    /// `pending`, `sending`, `sent` or `failed` (see the module doc).
    pub status: String,
    pub transitions: Vec<String>,
    /// Sends made so far (as committed).
    pub attempts: u32,
    /// True once [`MAX_SENDS`] sends failed: nothing will try again.
    pub gave_up: bool,
    pub last_error: Option<String>,
    pub user_id: i64,
    pub trigger_id: String,
    pub preview_id: String,
    pub target_url: String,
    pub text: String,
    pub requested_at: String,
}

impl Delivery {
    fn moved(&mut self, status: &str) {
        self.status = status.to_owned();
        self.transitions.push(status.to_owned());
    }
}

#[derive(Deserialize)]
struct RetryRequest {
    #[serde(default)]
    dedupe_key: String,
}

fn key(dedupe_key: &str) -> String {
    format!("delivery/{}", seg(dedupe_key))
}

pub fn requested(event: &Event) -> Step<()> {
    let req = Request::parse(&event.event_type, &event.payload)?;
    let key = key(&req.dedupe_key);
    if kv::get::<Delivery>(&key)?.is_some() {
        log(
            Level::Info,
            &format!(
                "notification {:?} already recorded: not sent again",
                req.dedupe_key
            ),
        );
        return Ok(());
    }
    let webhook = webhook_for(req.user_id)?;
    let mut delivery = Delivery {
        status: String::new(),
        transitions: Vec::new(),
        attempts: 0,
        gave_up: false,
        last_error: None,
        user_id: req.user_id,
        trigger_id: req.trigger_id.clone(),
        preview_id: req.preview_id.clone(),
        target_url: req.target_url.clone(),
        text: req.text(),
        requested_at: req.requested_at.clone(),
    };
    delivery.moved("pending");
    match send(&mut delivery, &webhook, 1) {
        Ok(()) => kv::put(&key, &delivery),
        Err(reason) => {
            delivery.last_error = Some(reason);
            kv::put(&key, &delivery)?;
            let payload = serde_json::json!({ "dedupe_key": req.dedupe_key });
            emit(&FollowUp {
                event_type: "notification.feishu.retry.requested".into(),
                event_version: "1".into(),
                aggregate_id: event.aggregate_id.clone(),
                message_key: event.message_key.clone(),
                payload: payload.to_string().into_bytes(),
            })
            .map_err(|e| {
                Failure::Retry(format!("emitting notification.feishu.retry.requested: {e}"))
            })
        }
    }
}

pub fn retry(event: &Event) -> Step<()> {
    let req: RetryRequest = parse_payload(&event.event_type, &event.payload)?;
    let dedupe_key = required("dedupe_key", &req.dedupe_key)?;
    let key = key(dedupe_key);
    let Some(mut delivery) = kv::get::<Delivery>(&key)? else {
        return dead(format!("no delivery record for dedupe_key {dedupe_key:?}"));
    };
    if delivery.status == "sent" || delivery.gave_up {
        return Ok(());
    }
    let webhook = webhook_for(delivery.user_id)?;
    let number = delivery.attempts + event.attempt;
    match send(&mut delivery, &webhook, number) {
        Ok(()) => kv::put(&key, &delivery),
        Err(reason) if number >= MAX_SENDS => {
            delivery.gave_up = true;
            delivery.last_error = Some(format!("gave up after {number} sends: {reason}"));
            kv::put(&key, &delivery)
        }
        Err(reason) => Err(Failure::Retry(format!(
            "webhook send {number} of {MAX_SENDS} failed: {reason}"
        ))),
    }
}

fn webhook_for(user_id: i64) -> Step<String> {
    match channel::for_user(user_id)? {
        Some(c) => Ok(c.webhook_url),
        None => dead(format!(
            "no Feishu webhook configured for user {user_id} and no default: publish \
             notification.channel.configure.requested or set FEISHU_WEBHOOK_URL in the route's env"
        )),
    }
}

/// One send: `sending`, then `sent` or `failed` with the reason returned. Feishu answers 200
/// with `{"code": 0}` on success; another status or a non-zero `code` is a failure.
fn send(delivery: &mut Delivery, webhook: &str, number: u32) -> Result<(), String> {
    delivery.moved("sending");
    delivery.attempts = number;
    let body = serde_json::json!({"msg_type": "text", "content": {"text": delivery.text}});
    let result = outbound_http::send(&HttpRequest {
        method: "POST".into(),
        url: webhook.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    });
    let outcome = match result {
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
    };
    match &outcome {
        Ok(()) => {
            delivery.moved("sent");
            delivery.last_error = None;
        }
        Err(reason) => {
            delivery.moved("failed");
            delivery.last_error = Some(reason.clone());
        }
    }
    outcome
}
