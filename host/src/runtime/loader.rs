//! Compiling and validating a component file.

use super::bindings::{self, v0_1, v0_2};
use super::compilers::Tier;
use super::invocation::Invocation;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Why a component file cannot serve a route.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not a valid component (garbage, truncated, a core module).
    #[error("component {path} does not compile: {reason}")]
    Compile { path: PathBuf, reason: String },
    /// It compiled but does not fit the contract: wrong world, missing export, unknown imports.
    #[error("component {path} does not implement {contract}: {reason}")]
    Contract {
        path: PathBuf,
        contract: &'static str,
        reason: String,
    },
    /// It imports a capability its route does not grant (granted, never filtered).
    #[error("component {path} imports {capability} but its route does not grant it: {how}")]
    NotGranted {
        path: PathBuf,
        capability: &'static str,
        how: &'static str,
    },
}

/// The capabilities a route grants beyond the base contract; each is linked only when granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Grants {
    pub http: bool,
    pub sql: bool,
}

/// A pre-instantiated component, in the contract version it was built for.
pub(super) enum Pre {
    V0_2(v0_2::ServiceHandlerPre<Invocation>),
    V0_1(v0_1::ServiceHandlerPre<Invocation>),
}

/// A compiled, validated, pre-instantiated component version.
pub struct LoadedComponent {
    pub(super) pre: Pre,
    /// The contract version it implements, e.g. `0.2.0`.
    pub contract: &'static str,
    /// blake3 of the file's bytes, hex: the version recorded on every row it consumes. Shared,
    /// since every event it handles carries it (its row, its log line, its span).
    pub hash: Arc<str>,
    pub path: PathBuf,
    pub loaded_at: SystemTime,
    /// Which compiler built it: a hot reload serves [`Tier::Baseline`] code first.
    pub tier: Tier,
}

impl LoadedComponent {
    pub(super) fn load(
        engine: &Engine,
        linker: &Linker<Invocation>,
        path: &Path,
        grants: Grants,
        tier: Tier,
    ) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(engine, linker, path, &bytes, grants, tier)
    }

    /// Compiles and validates `bytes`, read from `path` by the caller (one read, so the
    /// recorded hash is the hash of exactly what was compiled).
    pub(super) fn from_bytes(
        engine: &Engine,
        linker: &Linker<Invocation>,
        path: &Path,
        bytes: &[u8],
        grants: Grants,
        tier: Tier,
    ) -> Result<LoadedComponent, LoadError> {
        let hash = content_hash(bytes);
        let component = Component::from_binary(engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        // Checked by name before linking, so the error says which grant is missing rather than
        // "no matching implementation in the linker".
        let ty = component.component_type();
        for (name, _) in ty.imports(engine) {
            let refused = if bindings::OUTBOUND_HTTP.contains(&name) && !grants.http {
                Some((
                    "outbound-http",
                    "add the hosts it may reach to the route's allowed_hosts (e.g. \
                     allowed_hosts = [\"open.feishu.cn:443\"]) or build it without outbound-http",
                ))
            } else if name == bindings::SQL && !grants.sql {
                Some((
                    "sql",
                    "grant the tables it may use on the route (e.g. sql = { tables = { tasks = \
                     \"rw\" } }) or build it without sql",
                ))
            } else {
                None
            };
            if let Some((capability, how)) = refused {
                return Err(LoadError::NotGranted {
                    path: path.to_owned(),
                    capability,
                    how,
                });
            }
        }
        let contract_err = |e: wasmtime::Error| LoadError::Contract {
            path: path.to_owned(),
            contract: super::CONTRACT,
            reason: format!("{e:#}"),
        };
        let exports = |name: &str| ty.exports(engine).any(|(n, _)| n == name);
        let (pre, contract) = if exports(bindings::HANDLER_V0_2) {
            let pre = linker.instantiate_pre(&component).map_err(contract_err)?;
            let pre = v0_2::ServiceHandlerPre::new(pre).map_err(contract_err)?;
            (Pre::V0_2(pre), "0.2.0")
        } else if exports(bindings::HANDLER_V0_1) {
            let pre = linker.instantiate_pre(&component).map_err(contract_err)?;
            let pre = v0_1::ServiceHandlerPre::new(pre).map_err(contract_err)?;
            (Pre::V0_1(pre), "0.1.0")
        } else {
            let found: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
            return Err(contract_err(wasmtime::Error::msg(format!(
                "it exports no handler interface ({} or {}); it exports: {}",
                bindings::HANDLER_V0_2,
                bindings::HANDLER_V0_1,
                if found.is_empty() {
                    "nothing".to_owned()
                } else {
                    found.join(", ")
                }
            ))));
        };
        Ok(LoadedComponent {
            pre,
            contract,
            hash: hash.into(),
            path: path.to_owned(),
            loaded_at: SystemTime::now(),
            tier,
        })
    }

    /// The engine that compiled it: its instances run only there.
    pub(super) fn engine(&self) -> &Engine {
        match &self.pre {
            Pre::V0_2(p) => p.engine(),
            Pre::V0_1(p) => p.engine(),
        }
    }

    /// The first 12 hex digits of the hash, for logs.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

/// The version id of a component: blake3 of its bytes, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}
