//! Integration tests: a real SQLite file, real components built from `plugins/` and
//! `tests/components/`, the host's own relay and consumer. One module per topic.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adopt;
mod adopt_indexes;
mod cli;
mod concurrent_publish;
mod config_errors;
mod config_reload;
mod consume;
mod db_restart;
mod dead_letters;
mod fleet;
mod handler_tools;
mod hostile;
mod kafka;
mod key_order;
mod lanes;
mod migration;
mod observability;
mod polyglot;
mod reload;
mod retention;
mod sandbox;
mod scaffold;
mod scale_out;
mod service_modes;
mod shared_state;
mod single_host;
mod smartflow_agent;
mod smartflow_chain;
mod smartflow_notification;
mod smartflow_rows;
mod smartflow_scheduler;
mod smartflow_smoke;
mod smartflow_task_memory;
mod sql;
mod sql_replicas;
mod sqlite_wal;
mod store_contract;
mod support;
mod testdb;
mod traces;
