//! SmartFlow's `agent` service as a Switchyard handler component.
//!
//! Owns the agent's business tables (DDL in `examples/smartflow/schema/`): `chat_histories`
//! and `agent_chats` ([`chat`]), `agent_state_snapshot_records` ([`snapshot`]) and
//! `agent_timeline_events` ([`timeline`]), reached through the `sql` import; each route is
//! granted exactly the tables its event touches (`examples/smartflow.toml`). Every event is v1
//! (`""`, `"v1"` or `"1"`); any other version is dead. It never sends anything outside the host: its only follow-up is
//! `memory.extract.requested`, emitted in the same transaction as the chat message.
//!
//! Events: `chat.history.persist.requested` and `chat.token.usage.adjust.requested` ([`chat`]),
//! `agent.state.snapshot.persist` ([`snapshot`]), `agent.timeline.persist.requested`
//! ([`timeline`]).

mod bindings {
    wit_bindgen::generate!({ world: "service-handler", path: "../../wit" });
}
mod chat;
mod snapshot;
mod timeline;

use bindings::exports::switchyard::handler::handler::Guest;
use bindings::switchyard::handler::types::{Event, Outcome, RetryRequest};
use smartflow_kit::{Failure, check_v1, dead};

struct Component;
bindings::export!(Component with_types_in bindings);

impl Guest for Component {
    fn handle(event: Event) -> Outcome {
        let result = check_v1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "chat.history.persist.requested" => chat::persist_history(&event),
                "chat.token.usage.adjust.requested" => chat::adjust_usage(&event),
                "agent.state.snapshot.persist" => snapshot::persist(&event),
                "agent.timeline.persist.requested" => timeline::persist(&event),
                other => dead(format!("the agent handler does not handle {other}")),
            }
        });
        match result {
            Ok(()) => Outcome::Ack,
            Err(Failure::Dead(reason)) => Outcome::Dead(reason),
            Err(Failure::Retry(reason)) => Outcome::Retry(RetryRequest {
                reason,
                delay_ms: None,
            }),
        }
    }
}
