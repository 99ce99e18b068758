//! Developer tools for handler authors: `switchyard test` ([`test`]: one event through a
//! component, no database or broker) and `switchyard check` ([`check`]: which contract a
//! component implements and what its route must grant), and `switchyard routes` ([`routes`]:
//! a config's routing table with each route's grants and effective limits).
//!
//! Both go through the host's own runtime (`Runtime`, `Policy`, the loader, `Runtime::invoke`),
//! never a copy of it, so a component behaves here as it does on a route. They must never open
//! the host's database or a transport.

pub mod check;
mod event;
mod logs;
mod memory;
pub mod routes;
pub mod test;

use crate::config::{Config, ConfigError};
use crate::runtime::LoadError;
use std::path::PathBuf;

/// Why a tool could not run the component (as opposed to the component's own outcome).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An input file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An input file is readable but its content is wrong; `reason` says what to write.
    #[error("{what} {path}: {reason}")]
    BadInput {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The config (given, or built from the flags) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Flags that do not fit together or name something that does not exist.
    #[error("{0}")]
    Usage(String),
    /// The component does not load: the loader's own error.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The file is not a component at all; `hint` says how to make one.
    #[error("{path} is {what}, not a WebAssembly component: {hint}")]
    NotAComponent {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
    /// The sandbox or the scratch database could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// A config with nothing routed and no compile cache (which would write next to the caller).
fn bare_config(extra: toml::Table) -> Result<Config, ConfigError> {
    let mut table = toml::Table::new();
    table.insert("database_url".into(), "sqlite::memory:".into());
    let mut reload = toml::Table::new();
    reload.insert("cache".into(), false.into());
    reload.insert("watch".into(), false.into());
    table.insert("reload".into(), reload.into());
    table.extend(extra);
    let text = toml::to_string(&table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Config::parse(&text, std::path::Path::new("(flags)"), PathBuf::new())
}

/// Reads the file of a component, refusing with a hint what is plainly not a component (so
/// the user is not left with wasmtime's parser error for a core module or a text file).
fn read_component(path: &std::path::Path) -> Result<Vec<u8>, ToolError> {
    let bytes = std::fs::read(path).map_err(|source| ToolError::Read {
        what: "component",
        path: path.to_owned(),
        source,
    })?;
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(b"\0asm") {
        return Err(ToolError::NotAComponent {
            path: path.to_owned(),
            what: "not WebAssembly (it does not start with \\0asm)",
            hint: "pass the .wasm component cargo builds for a wasm target (scripts/build-components.sh \
                   copies them to build/components/)",
        });
    }
    if bytes.get(4..8) == Some(&CORE_VERSION[..]) {
        return Err(ToolError::NotAComponent {
            path: path.to_owned(),
            what: "a core WebAssembly module",
            hint: "link it as a component: for wasm32-unknown-unknown with rustc's \
                   wasm-component-ld, or for wasm32-wasip2 (docs/writing-handlers.md, \"Building\"); \
                   or wrap a core module with `wasm-tools component new`",
        });
    }
    Ok(bytes)
}
