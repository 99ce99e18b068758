//! What a component file is, for `switchyard check`: loaded with every capability linked (so
//! the answer is what it needs, not whether some route grants it) and validated by the same
//! loader as the host's, plus the names of its imports and exports.

use super::loader::{Grants, LoadError, LoadedComponent, Pre};
use super::{Runtime, Tier, bindings};
use std::path::Path;
use std::sync::Arc;

/// A component's interface names as the component model spells them, e.g.
/// `switchyard:handler/state@0.2.0`, `wasi:cli/environment@0.2.6`.
#[derive(Debug, Clone)]
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Interfaces {
    /// Whether it imports the `sql` interface (granted per route by `sql = { tables = ... }`).
    pub fn needs_sql(&self) -> bool {
        self.imports.iter().any(|i| i == bindings::SQL)
    }

    /// Whether it imports `outbound-http` (granted per route by `allowed_hosts`).
    pub fn needs_http(&self) -> bool {
        self.imports
            .iter()
            .any(|i| bindings::OUTBOUND_HTTP.contains(&i.as_str()))
    }
}

impl Runtime {
    /// Compiles and validates `bytes` against the contract with every capability linked: a
    /// component that loads here loads on a route granting what [`Interfaces`] says it imports.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load_any(&self, path: &Path, bytes: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        let all = Grants {
            http: true,
            sql: true,
        };
        // The optimized compiler: what a route runs, so a file this accepts, a route accepts.
        let c = &self.optimized;
        LoadedComponent::from_bytes(&c.engine, c.linker(all), path, bytes, all, Tier::Optimized)
            .map(Arc::new)
    }

    /// The imports and exports of a loaded component, sorted.
    pub fn interfaces(&self, component: &LoadedComponent) -> Interfaces {
        let compiled = match &component.pre {
            Pre::V0_2(pre) => pre.instance_pre().component(),
            Pre::V0_1(pre) => pre.instance_pre().component(),
        };
        let ty = compiled.component_type();
        let engine = component.engine();
        let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.into()).collect();
        let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.into()).collect();
        imports.sort();
        exports.sort();
        Interfaces { imports, exports }
    }
}
