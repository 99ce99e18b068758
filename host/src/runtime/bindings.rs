//! Host-side bindings generated from `wit/handler.wit`: the one place `bindgen!` runs.

wasmtime::component::bindgen!({
    world: "service-handler",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The `notifying-handler` world (`wit/outbound-http.wit`): the same contract plus the
/// `outbound-http` import. Only that import's host side is used from here; the shared
/// interfaces map onto the `service-handler` bindings above, so one `Invocation` serves both.
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
        },
    });
}

/// The outbound HTTP interface's name as components import it.
pub const OUTBOUND_HTTP: &str = "switchyard:handler/outbound-http@0.1.0";

/// The contract version this host implements; components must be built against it.
pub const CONTRACT: &str = "switchyard:handler@0.1.0";
