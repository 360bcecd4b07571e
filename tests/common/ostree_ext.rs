//! `tools/ostree-ext-check`, the test tool that imports an OCI archive with ostree-ext's own
//! importer: built on demand (a no-op after `make test` built it) by the tests of the root
//! package and of `oci/`, which include this file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `tools/ostree-ext-check` (its own Cargo workspace) and returns the executable, as
/// cargo names it.
pub fn ostree_ext_check() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tools/ostree-ext-check/Cargo.toml"))
        .find(|m| m.is_file())
        .expect("tools/ostree-ext-check/Cargo.toml above the crate");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {} failed (it needs the Debian packages libostree-dev, libzstd-dev, \
         pkg-config): {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            (v["reason"] == "compiler-artifact" && v["target"]["name"] == "ostree-ext-check")
                .then(|| v["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .expect("cargo named the ostree-ext-check executable")
}
