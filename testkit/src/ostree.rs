//! The `ostree` CLI (Debian package `ostree`) and `tools/ostree-ext-check`, ostree-ext's own
//! importer, built on demand.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `ostree --repo=REPO ARGS`; fails naming the Debian package when the CLI cannot run, and
/// with its stderr unless it succeeds.
pub fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the `ostree` CLI ({e}): install the Debian package `ostree`")
        });
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `ostree ls -R`.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// Type and mode, as `ls` prints them (`-00644`, `d00755`, `l00777`).
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Absolute path in the commit.
    pub path: String,
    /// A symlink's target.
    pub target: Option<String>,
}

/// `ostree ls -R REV`, parsed.
pub fn ostree_ls(repo: &Path, rev: &str) -> Vec<Entry> {
    ostree(repo, &["ls", "-R", rev])
        .lines()
        .map(|l| {
            let (l, target) = match l.split_once(" -> ") {
                Some((a, b)) => (a, Some(b.to_string())),
                None => (l, None),
            };
            let f: Vec<&str> = l.split_whitespace().collect();
            Entry {
                mode: f[0].to_string(),
                uid: f[1].parse().unwrap(),
                gid: f[2].parse().unwrap(),
                path: f[4].to_string(),
                target,
            }
        })
        .collect()
}

/// Builds `tools/ostree-ext-check` (its own Cargo workspace; a no-op after `make test` built
/// it) and returns the executable, as cargo names it.
pub fn ostree_ext_check() -> PathBuf {
    let manifest = crate::workspace_root().join("tools/ostree-ext-check/Cargo.toml");
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
