//! Host-side bindings generated from the WIT contract: the one place `bindgen!` runs.
//!
//! Two contract versions are linked side by side (wasmtime treats 0.1 and 0.2 as incompatible,
//! so each has its own import names): 0.2.0 (`wit/`, the current one, with `sql`) and 0.1.0
//! (`wit/0.1.0/`, frozen). The host implements each import once, for 0.2.0; the 0.1.0 imports
//! convert their arguments and delegate (`compat_v0_1`).

/// The current contract, `switchyard:handler@0.2.0`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "service-handler",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    /// The `notifying-handler` world (`wit/outbound-http.wit`): the same contract plus the
    /// `outbound-http` import. Only that import's host side is used from here.
    pub mod notifying {
        wasmtime::component::bindgen!({
            world: "notifying-handler",
            path: "../wit",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "switchyard:handler/types": super::switchyard::handler::types,
                "switchyard:handler/state": super::switchyard::handler::state,
                "switchyard:handler/emit": super::switchyard::handler::emit,
                "switchyard:handler/log": super::switchyard::handler::log,
                "switchyard:handler/sql": super::switchyard::handler::sql,
            },
        });
    }
}

/// The first contract, `switchyard:handler@0.1.0`: no `sql`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "service-handler",
        path: "../wit/0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub mod notifying {
        wasmtime::component::bindgen!({
            world: "notifying-handler",
            path: "../wit/0.1.0",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "switchyard:handler/types": super::switchyard::handler::types,
                "switchyard:handler/state": super::switchyard::handler::state,
                "switchyard:handler/emit": super::switchyard::handler::emit,
                "switchyard:handler/log": super::switchyard::handler::log,
            },
        });
    }
}

/// The outbound HTTP interface's names as components import it, per contract version.
pub const OUTBOUND_HTTP: [&str; 2] = [
    "switchyard:handler/outbound-http@0.2.0",
    "switchyard:handler/outbound-http@0.1.0",
];

/// The `sql` interface's name as components import it (0.2.0 and later).
pub const SQL: &str = "switchyard:handler/sql@0.2.0";

/// The contract versions this host implements; components must be built against one of them.
pub const CONTRACT: &str = "switchyard:handler@0.2.0 (or 0.1.0)";

/// The exported handler interface, per contract version.
pub const HANDLER_V0_2: &str = "switchyard:handler/handler@0.2.0";
pub const HANDLER_V0_1: &str = "switchyard:handler/handler@0.1.0";
