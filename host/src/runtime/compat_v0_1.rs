//! Contract 0.1.0's imports: the same host functions as 0.2.0 (which only added `sql`), with
//! each call's arguments converted to 0.2.0's types and delegated, so a 0.1.0 component
//! behaves exactly as 0.2.0's implementation of the same import.

use super::bindings::{v0_1, v0_2};
use super::invocation::Invocation;
use v0_1::switchyard::handler as old;
use v0_2::switchyard::handler as new;

impl old::types::Host for Invocation {}

impl old::state::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        new::state::Host::get(self, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        new::state::Host::set(self, key, value).await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        new::state::Host::delete(self, key).await
    }
}

impl old::emit::Host for Invocation {
    async fn emit(&mut self, e: old::emit::FollowUp) -> wasmtime::Result<Result<(), String>> {
        let follow_up = new::emit::FollowUp {
            event_type: e.event_type,
            event_version: e.event_version,
            aggregate_id: e.aggregate_id,
            message_key: e.message_key,
            payload: e.payload,
        };
        new::emit::Host::emit(self, follow_up).await
    }
}

impl old::log::Host for Invocation {
    async fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            old::log::Level::Trace => new::log::Level::Trace,
            old::log::Level::Debug => new::log::Level::Debug,
            old::log::Level::Info => new::log::Level::Info,
            old::log::Level::Warn => new::log::Level::Warn,
            old::log::Level::Error => new::log::Level::Error,
        };
        new::log::Host::log(self, level, message).await
    }
}

impl v0_1::notifying::switchyard::handler::outbound_http::Host for Invocation {
    async fn send(
        &mut self,
        r: v0_1::notifying::switchyard::handler::outbound_http::Request,
    ) -> wasmtime::Result<
        Result<v0_1::notifying::switchyard::handler::outbound_http::Response, String>,
    > {
        use v0_2::notifying::switchyard::handler::outbound_http as http;
        let request = http::Request {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        };
        let response = http::Host::send(self, request).await?;
        Ok(response.map(
            |r| v0_1::notifying::switchyard::handler::outbound_http::Response {
                status: r.status,
                body: r.body,
            },
        ))
    }
}
