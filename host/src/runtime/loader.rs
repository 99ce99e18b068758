//! Compiling and validating a component file.

use super::bindings::ServiceHandlerPre;
use super::invocation::Invocation;
use std::path::{Path, PathBuf};
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
    #[error(
        "component {path} imports {capability} but its route does not grant it: add the hosts it \
         may reach to the route's allowed_hosts (e.g. allowed_hosts = [\"open.feishu.cn:443\"]) or \
         build it for the service-handler world"
    )]
    NotGranted {
        path: PathBuf,
        capability: &'static str,
    },
}

/// A compiled, validated, pre-instantiated component version.
pub struct LoadedComponent {
    pub(super) pre: ServiceHandlerPre<Invocation>,
    /// blake3 of the file's bytes, hex: the version recorded on every row it consumes.
    pub hash: String,
    pub path: PathBuf,
    pub loaded_at: SystemTime,
}

impl LoadedComponent {
    pub(super) fn load(
        engine: &Engine,
        linker: &Linker<Invocation>,
        path: &Path,
        http_granted: bool,
    ) -> Result<LoadedComponent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(engine, linker, path, &bytes, http_granted)
    }

    /// Compiles and validates `bytes`, read from `path` by the caller (one read, so the
    /// recorded hash is the hash of exactly what was compiled).
    pub(super) fn from_bytes(
        engine: &Engine,
        linker: &Linker<Invocation>,
        path: &Path,
        bytes: &[u8],
        http_granted: bool,
    ) -> Result<LoadedComponent, LoadError> {
        let hash = content_hash(bytes);
        let component = Component::from_binary(engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        // Checked by name before linking, so the error says which grant is missing rather than
        // "no matching implementation in the linker".
        let imports_http = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name == super::bindings::OUTBOUND_HTTP);
        if imports_http && !http_granted {
            return Err(LoadError::NotGranted {
                path: path.to_owned(),
                capability: super::bindings::OUTBOUND_HTTP,
            });
        }
        let contract_err = |e: wasmtime::Error| LoadError::Contract {
            path: path.to_owned(),
            contract: super::CONTRACT,
            reason: format!("{e:#}"),
        };
        let pre = linker.instantiate_pre(&component).map_err(contract_err)?;
        let pre = ServiceHandlerPre::new(pre).map_err(contract_err)?;
        Ok(LoadedComponent {
            pre,
            hash,
            path: path.to_owned(),
            loaded_at: SystemTime::now(),
        })
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
