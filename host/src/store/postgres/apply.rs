//! The consume transaction on PostgreSQL. It is written once for both servers
//! (`store/sql/apply.rs`); what is PostgreSQL's own is the state-table upsert.

/// Overwrites the value of a state key that exists (the primary key is `(service, state_key)`).
pub(super) const UPSERT_STATE: &str = " ON CONFLICT (service, state_key) DO UPDATE SET \
     value = excluded.value, updated_at = excluded.updated_at";
