//! `switchyard check`: loads a component file with the host's loader (every capability linked,
//! so the answer is what the component needs) and reports the contract version and world it
//! implements, its imports, and the grants a route serving it must give.

use super::{ToolError, bare_config, read_component};
use crate::runtime::Runtime;
use serde::Serialize;
use std::path::Path;

/// What `switchyard check` found; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub component: String,
    /// `0.2.0` or `0.1.0`.
    pub contract: String,
    /// e.g. `switchyard:handler/service-handler@0.2.0`.
    pub world: String,
    /// blake3 of the file, as the host records it per consumed row.
    pub version: String,
    /// Every import, as the component model names it, sorted.
    pub imports: Vec<String>,
    /// What a `[[routes]]` entry must say for this component to load and work.
    pub grants: Vec<Grant>,
}

/// One route key this component needs (or may need).
#[derive(Debug, Serialize)]
pub struct Grant {
    /// The import that needs it, e.g. `sql`.
    pub import: String,
    /// The route key, e.g. `sql`, `allowed_hosts`, `emits`.
    pub route_key: String,
    /// Whether the component is refused at load without it (else: its calls are refused).
    pub required_to_load: bool,
    pub note: String,
}

/// The contract interface an import names, without package and version: `sql` for
/// `switchyard:handler/sql@0.2.0`; `None` for other packages (WASI).
fn contract_interface(import: &str) -> Option<&str> {
    let rest = import.strip_prefix("switchyard:handler/")?;
    Some(rest.split('@').next().unwrap_or(rest))
}

/// Loads and describes the component at `path`.
///
/// # Errors
/// [`ToolError`] when the file is missing, not a component, or not a handler (the loader's
/// error, naming what it exports instead).
pub fn run(path: &Path) -> Result<CheckReport, ToolError> {
    let bytes = read_component(path)?;
    let config = bare_config(Default::default())?;
    let runtime = Runtime::new(&config).map_err(|e| ToolError::Setup(format!("{e:#}")))?;
    let component = runtime.load_any(path, &bytes)?;
    let interfaces = runtime.interfaces(&component);
    let world = if interfaces.needs_http() {
        "notifying-handler"
    } else {
        "service-handler"
    };
    let mut grants = Vec::new();
    let mut grant = |import: &str, key: &str, required: bool, note: &str| {
        grants.push(Grant {
            import: import.into(),
            route_key: key.into(),
            required_to_load: required,
            note: note.into(),
        })
    };
    let imports = &interfaces.imports;
    let has = |name: &str| imports.iter().any(|i| contract_interface(i) == Some(name));
    if has("sql") {
        grant(
            "sql",
            "sql",
            true,
            "sql = { tables = { <table> = \"r\" | \"rw\" } }: the tables it reads (r) and writes \
             (rw); without it the component is refused at load",
        );
    }
    if has("outbound-http") {
        grant(
            "outbound-http",
            "allowed_hosts",
            true,
            "allowed_hosts = [\"host:port\", ...]: every target it calls; without it the \
             component is refused at load",
        );
    }
    if has("emit") {
        grant(
            "emit",
            "emits",
            false,
            "emits = [\"<event type>\", ...]: every type it emits, each routed; the types are \
             not visible in the binary (run `switchyard test` to see its emits); without it \
             every emit is refused",
        );
    }
    if imports
        .iter()
        .any(|i| i.starts_with("wasi:cli/environment"))
    {
        grant(
            "wasi:cli/environment",
            "env",
            false,
            "env = { NAME = \"value\" }: variables it reads; none by default (a wasm32-wasip2 \
             build's std links this import whether or not the handler reads any)",
        );
    }
    if imports.iter().any(|i| i.starts_with("wasi:filesystem")) {
        grant(
            "wasi:filesystem",
            "preopened_dirs",
            false,
            "preopened_dirs = [{ host = \"dir\", guest = \"/data\" }]: read-only directories \
             it reads; none by default (a wasm32-wasip2 build's std links this import \
             whether or not the handler opens files)",
        );
    }
    Ok(CheckReport {
        component: path.display().to_string(),
        contract: component.contract.to_owned(),
        world: format!("switchyard:handler/{world}@{}", component.contract),
        version: component.hash.to_string(),
        imports: interfaces.imports.clone(),
        grants,
    })
}

impl CheckReport {
    /// The report for a terminal.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "component {}", self.component);
        let _ = writeln!(out, "contract  {}", self.contract);
        let _ = writeln!(out, "world     {}", self.world);
        let _ = writeln!(out, "version   {}", self.version);
        let _ = writeln!(out, "imports: {}", self.imports.len());
        for i in &self.imports {
            let _ = writeln!(out, "  {i}");
        }
        let _ = writeln!(out, "route grants: {}", self.grants.len());
        for g in &self.grants {
            let need = if g.required_to_load {
                "required to load"
            } else {
                "needed to use it"
            };
            let _ = writeln!(
                out,
                "  {} ({need}; import {}): {}",
                g.route_key, g.import, g.note
            );
        }
        out
    }
}
