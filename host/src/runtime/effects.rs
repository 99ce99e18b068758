//! What an acknowledged invocation asks the host to commit, as plain data.
//!
//! The runtime fills these from the guest's `state` and `emit` calls; the engine turns them
//! into storage rows (an emit goes through the same routing as a producer's event) and commits
//! them with the consumed mark. Nothing here knows tables or SQL.

/// One state write: `(key, Some(value))` sets, `(key, None)` deletes.
pub type StateWrite = (String, Option<Vec<u8>>);

/// A follow-up event a handler emitted, checked (routed type, JSON payload, sizes) but not yet
/// a row: the engine routes it to its owner's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub event_type: String,
    /// Empty means SmartFlow's default `v1` (applied by the engine, as for a producer's event).
    pub event_version: String,
    pub aggregate_id: String,
    pub message_key: String,
    pub payload: serde_json::Value,
}

/// The buffered effects of one invocation, in call order. Committed only for an `ack`.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub state_writes: Vec<StateWrite>,
    pub emits: Vec<Emit>,
}
