//! Host-side bindings generated from `wit/handler.wit`: the one place `bindgen!` runs.

wasmtime::component::bindgen!({
    world: "service-handler",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

/// The contract version this host implements; components must be built against it.
pub const CONTRACT: &str = "switchyard:handler@0.1.0";
