//! Integration tests: a real SQLite file, real components built from `plugins/` and
//! `tests/components/`, the host's own relay and consumer. One module per topic.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_errors;
mod adopt;
mod consume;
mod single_host;
mod scale_out;
mod key_order;
mod fleet;
mod db_restart;
mod kafka;
mod smartflow_agent;
mod smartflow_chain;
mod smartflow_notification;
mod smartflow_scheduler;
mod smartflow_support;
mod smartflow_task_memory;
mod support;
mod testdb;
