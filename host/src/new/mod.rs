//! `switchyard new`: scaffolds a handler project (Rust, Python or JavaScript) from templates
//! embedded in the binary, with the WIT contract this binary implements, so a project always
//! matches the host that created it.
//!
//! It only writes files into a directory that is missing or empty; it never builds, never
//! overwrites and never touches anything outside that directory.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// A handler's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// The contract, as this binary was built with it.
const CONTRACT: [(&str, &str); 2] = [
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    (
        "outbound-http.wit",
        include_str!("../../../wit/outbound-http.wit"),
    ),
];

/// The checkout's Rust SDK, as this binary was built (a path dependency needs no network).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/rust");

/// Environment variable naming the Rust SDK directory (a checkout's `sdk/rust`), for a binary
/// that no longer sits beside the checkout it was built from.
pub const SDK_ENV: &str = "SWITCHYARD_SDK_PATH";

/// Writes a new `lang` project called `name` into `dir` and returns the directory.
///
/// # Errors
/// A name that is not lowercase letters, digits and single hyphens (starting with a letter, at
/// most 64 bytes); `dir` existing and not empty; the Rust SDK not found (Rust only); a write
/// that fails.
pub fn scaffold(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    if dir.exists() {
        let mut entries = dir
            .read_dir()
            .with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} already exists and is not empty: choose another --dir or remove it",
                dir.display()
            );
        }
    }
    let sdk = match lang {
        Lang::Rust => sdk_path()?,
        Lang::Python | Lang::Js => String::new(),
    };
    let vars = Vars { name, lang, sdk };
    for (path, text) in files(lang) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, vars.fill(text))
            .with_context(|| format!("writing {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
    }
    Ok(dir.to_owned())
}

/// A name usable as a crate name, a service name, an event type prefix and a file name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "{name:?} is not a handler name: use lowercase letters, digits and single hyphens, \
             starting with a letter (at most 64), e.g. `greeter` or `order-audit`"
        );
    }
    Ok(())
}

/// Where the generated Cargo.toml finds `switchyard-sdk`: `$SWITCHYARD_SDK_PATH`, else the
/// checkout this binary was built from.
fn sdk_path() -> anyhow::Result<String> {
    let (candidate, from) = match std::env::var_os(SDK_ENV) {
        Some(p) => (PathBuf::from(p), SDK_ENV),
        None => (
            PathBuf::from(BUILT_SDK),
            "the checkout this binary was built from",
        ),
    };
    let sdk = candidate
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file());
    match sdk {
        Some(p) => Ok(p.display().to_string()),
        None => bail!(
            "the Rust SDK is not at {} ({from}): set {SDK_ENV} to a Switchyard checkout's \
             sdk/rust",
            candidate.display()
        ),
    }
}

/// Every file of a `lang` project: its path in the project and its template.
fn files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![
        ("README.md", include_str!("templates/README.md")),
        ("event.json", include_str!("templates/event.json")),
        ("wit/world.wit", include_str!("templates/world.wit")),
        ("wit/deps/handler/handler.wit", CONTRACT[0].1),
        ("wit/deps/handler/outbound-http.wit", CONTRACT[1].1),
    ];
    files.extend(match lang {
        Lang::Rust => [
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("templates/rust/lib.rs")),
            ("build.sh", include_str!("templates/rust/build.sh")),
        ]
        .as_slice(),
        Lang::Python => [
            ("app.py", include_str!("templates/python/app.py")),
            ("build.sh", include_str!("templates/python/build.sh")),
        ]
        .as_slice(),
        Lang::Js => [
            ("app.js", include_str!("templates/js/app.js")),
            ("build.sh", include_str!("templates/js/build.sh")),
        ]
        .as_slice(),
    });
    files
}

/// The values a template's `{{...}}` placeholders take.
struct Vars<'a> {
    name: &'a str,
    lang: Lang,
    sdk: String,
}

impl Vars<'_> {
    fn fill(&self, template: &str) -> String {
        let (lang_name, source, build_note, unit_test) = match self.lang {
            Lang::Rust => (
                "Rust",
                "src/lib.rs",
                " It builds lean for `wasm32-unknown-unknown` (the script adds the target), \
                 linked by rustc's `wasm-component-ld`, and needs the SDK at the path in \
                 `Cargo.toml`.",
                "cargo test            # the rule's unit tests, on this machine\n",
            ),
            Lang::Python => (
                "Python",
                "app.py",
                " It needs componentize-py 0.25 (`pip install componentize-py==0.25.*`, or a \
                 Switchyard checkout's `scripts/handler-tools.sh`).",
                "",
            ),
            Lang::Js => (
                "JavaScript",
                "app.js",
                " It needs ComponentizeJS 0.23 (`npm install @bytecodealliance/componentize-js@0.23`, \
                 or a Switchyard checkout's `scripts/handler-tools.sh`).",
                "",
            ),
        };
        template
            .replace("{{name}}", self.name)
            .replace("{{crate}}", &self.name.replace('-', "_"))
            .replace("{{sdk_path}}", &self.sdk)
            .replace("{{lang_name}}", lang_name)
            .replace("{{source}}", source)
            .replace("{{build_note}}", build_note)
            .replace("{{unit_test}}", unit_test)
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_a_crate_service_and_file_are_refused() {
        for good in ["greeter", "order-audit", "h2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Greeter",
            "2fast",
            "a_b",
            "a--b",
            "a-",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_placeholder_is_filled_in_every_language() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let vars = Vars {
                name: "order-audit",
                lang,
                sdk: "/sdk".into(),
            };
            for (path, text) in files(lang) {
                let filled = vars.fill(text);
                assert!(!filled.contains("{{"), "{lang:?} {path}: {filled}");
            }
        }
    }
}
