//! SmartFlow's `notification` service as a Switchyard handler component.
//!
//! Owns SmartFlow's `notification_records` ([`delivery`]) and the webhook channels
//! (`notification_channels`, [`channel`]), reached through the `sql` import (DDL in
//! `examples/smartflow/schema/`). It is the only SmartFlow component built for
//! the `notifying-handler` world: it imports `outbound-http`, so its route must grant the
//! webhook's host:port (`allowed_hosts`) or the host refuses to load it.
//!
//! Events:
//! - `notification.feishu.requested` (version `""` or `"1"` only): SmartFlow's rules, see
//!   [`request`]; deduplicated on `dedupe_key`; the webhook is sent at once.
//! - `notification.feishu.retry.requested` (Switchyard addition, `""` or `"1"`): the
//!   component's own retry of a failed send (policy in [`delivery`]).
//! - `notification.channel.configure.requested` (Switchyard addition, v1): sets the webhook
//!   URL of a user, or the default one (`user_id` 0); see [`channel`].
//!
//! The webhook leaves the database, so it is at-least-once: a crash between the send and the
//! commit sends it again on redelivery.

mod channel;
mod delivery;
mod request;

use smartflow_kit::{check_v1, check_version_1, dead};
use switchyard_sdk::{Event, Handler, HandlerResult};

struct Component;
switchyard_sdk::handler!(Component);

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        let (ty, version) = (event.event_type.as_str(), event.event_version.as_str());
        let result = match ty {
            "notification.feishu.requested" => {
                check_version_1(ty, version).and_then(|()| delivery::requested(event))
            }
            "notification.feishu.retry.requested" => {
                check_version_1(ty, version).and_then(|()| delivery::retry(event))
            }
            "notification.channel.configure.requested" => {
                check_v1(ty, version).and_then(|()| channel::configure(event))
            }
            other => dead(format!("the notification handler does not handle {other}")),
        };
        // A webhook that failed is tried again no sooner than the first backoff step.
        result.map_err(|f| f.with_retry_delay(delivery::BACKOFF_BASE_MS))
    }
}
