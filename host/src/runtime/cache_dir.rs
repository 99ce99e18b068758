//! The compiled-component cache directory and its trust check.
//!
//! wasmtime loads compiled machine code from this directory without re-validating it, so
//! whoever can write there can run code in the host. The host therefore creates it `0700` and
//! refuses to use one that another user owns or that group or others can write: the cache is
//! trusted exactly as much as the host's own user (docs/SECURITY.md, "Compile cache").

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Creates `dir` (mode `0700`) if missing, then checks that this process's user owns it and
/// that nobody else may write it.
///
/// # Errors
/// A message naming the directory, what is wrong and the command that fixes it.
pub fn ensure_private(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create compile cache {}: {e}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read compile cache {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "compile cache {} is not a directory: point reload.cache_dir elsewhere",
            dir.display()
        ));
    }
    // The effective uid of this process, without unsafe code: the owner of /proc/self.
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell this process's user (/proc/self: {e})"))?;
    if meta.uid() != me {
        return Err(format!(
            "compile cache {} is owned by uid {}, not by this host's uid {me}: compiled code \
             there would run in the host; use a directory of your own (reload.cache_dir) or \
             set reload.cache = false",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "compile cache {} is writable by group or others (mode {mode:o}): compiled code \
             there would run in the host; run `chmod 700 {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_cache_is_created_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/cache");
        ensure_private(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn a_cache_others_can_write_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private(&dir).unwrap_err();
        assert!(
            err.contains("writable by group or others") && err.contains("chmod 700"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private(&dir).unwrap();
    }
}
