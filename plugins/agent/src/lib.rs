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

mod chat;
mod snapshot;
mod timeline;

use smartflow_kit::{check_v1, dead};
use switchyard_sdk::{Event, Handler, HandlerResult};

struct Component;
switchyard_sdk::handler!(Component);

impl Handler for Component {
    fn handle(event: &Event) -> HandlerResult {
        check_v1(&event.event_type, &event.event_version).and_then(|()| {
            match event.event_type.as_str() {
                "chat.history.persist.requested" => chat::persist_history(event),
                "chat.token.usage.adjust.requested" => chat::adjust_usage(event),
                "agent.state.snapshot.persist" => snapshot::persist(event),
                "agent.timeline.persist.requested" => timeline::persist(event),
                other => dead(format!("the agent handler does not handle {other}")),
            }
        })
    }
}
