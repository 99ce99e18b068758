//! The consume transaction on MySQL/MariaDB. It is written once for both servers
//! (`store/sql/apply.rs`); what is MySQL's own is the state-table upsert.

/// Overwrites the value of a state key that exists (the primary key is `(service, state_key)`).
pub(super) const UPSERT_STATE: &str =
    " ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)";
