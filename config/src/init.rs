//! `nosa init`: creating a workdir in nestos-assembler's layout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::error::ConfigError;

/// The file that marks a workdir (found in the current directory or a parent).
pub const WORKDIR_FILE: &str = "nestos.build.toml";

/// Targets built by default in a new workdir.
pub const DEFAULT_TARGETS: &[&str] = &["ostree", "oci", "qemu"];

/// Builds kept by `prune` in a new workdir.
pub const DEFAULT_KEEP_LAST_N: u32 = 3;

/// Directories `init` creates, relative to the workdir.
pub const WORKDIR_DIRS: &[&str] = &[
    "builds",
    "cache",
    "overrides/rpm",
    "overrides/rootfs",
    "src",
    "tmp",
];

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The workdir.
    pub dest: PathBuf,
    /// How `src/config` was made.
    pub config: ConfigSource,
    /// The `nestos.build.toml` written.
    pub build_toml: PathBuf,
}

/// How `src/config` was populated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `git clone` of a URL or local repository.
    Cloned {
        /// What was cloned.
        url: String,
        /// `--branch`, if given.
        branch: Option<String>,
    },
    /// A symlink to a plain local directory.
    Symlink {
        /// The (canonical) target.
        target: PathBuf,
    },
}

fn looks_like_url(s: &str) -> bool {
    s.contains("://")
        || (s.contains('@') && s.contains(':') && !s.starts_with('/') && !s.starts_with('.'))
}

/// Whether `dir` is the top of a git work tree (a plain directory inside some other
/// repository is not: it is linked, not cloned).
fn is_git_repo(dir: &Path) -> bool {
    let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
    else {
        return false;
    };
    if !out.status.success() {
        // A bare repository has no work tree but can be cloned.
        return Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "--is-bare-repository"])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"));
    }
    let top = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    match (fs_err::canonicalize(&top), fs_err::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn source_error(source: &str, message: impl Into<String>, help: Option<&str>) -> ConfigError {
    ConfigError::InitSource {
        source_spec: source.to_string(),
        message: message.into(),
        help: help.map(str::to_string),
    }
}

/// The `nestos.build.toml` of a new workdir.
pub fn build_toml(arches: &[Arch]) -> String {
    let arches: Vec<String> = arches.iter().map(|a| format!("\"{a}\"")).collect();
    let targets: Vec<String> = DEFAULT_TARGETS.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "# nosa workdir (made by `nosa init`).\n[nestos]\n\
         # The nestos-config tree.\nconfig = \"src/config\"\n\
         # Architectures built when --arch is not given.\narches = [{}]\n\
         # Targets built by `nosa graph build` without arguments.\ntargets = [{}]\n\
         # Builds kept by `nosa prune`.\nkeep-last-n = {DEFAULT_KEEP_LAST_N}\n",
        arches.join(", "),
        targets.join(", ")
    )
}

/// Creates a workdir at `dest`: `builds/`, `cache/`, `overrides/rpm/`, `overrides/rootfs/`,
/// `tmp/`, `src/config` and `nestos.build.toml` (arches = the host's).
///
/// `source` is a git URL, a local git repository (both cloned, with `--branch` when
/// given) or a plain local directory (symlinked; `branch` is then an error). A non-empty
/// `dest` is refused unless `force`; an existing `src/config` is always refused.
pub fn init_workdir(
    dest: &Path,
    source: &str,
    branch: Option<&str>,
    force: bool,
) -> Result<InitReport, ConfigError> {
    if dest.exists() && fs_err::read_dir(dest)?.next().is_some() && !force {
        return Err(ConfigError::InitNotEmpty {
            dest: dest.to_path_buf(),
        });
    }
    let config_dir = dest.join("src").join("config");
    if config_dir.symlink_metadata().is_ok() {
        return Err(source_error(
            source,
            format!("{} already exists", config_dir.display()),
            Some("remove it first, or init another directory"),
        ));
    }
    let local = Path::new(source);
    let plain_dir = !looks_like_url(source) && local.is_dir() && !is_git_repo(local);
    if !looks_like_url(source) && !local.exists() {
        return Err(source_error(
            source,
            "no such directory, and not a URL",
            Some("give a git URL (https://..., git@host:path) or an existing directory"),
        ));
    }
    if plain_dir && branch.is_some() {
        return Err(source_error(
            source,
            "--branch needs a git repository, but this is a plain directory",
            None,
        ));
    }
    for d in WORKDIR_DIRS {
        fs_err::create_dir_all(dest.join(d))?;
    }
    let config = if plain_dir {
        let target = fs_err::canonicalize(local)?;
        std::os::unix::fs::symlink(&target, &config_dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "symlinking {} to {}: {e}",
                    config_dir.display(),
                    target.display()
                ),
            )
        })?;
        ConfigSource::Symlink { target }
    } else {
        let url = if looks_like_url(source) {
            source.to_string()
        } else {
            fs_err::canonicalize(local)?.to_string_lossy().into_owned()
        };
        let mut cmd = Command::new("git");
        cmd.args(["clone", "--quiet", "--recurse-submodules"]);
        if let Some(b) = branch {
            cmd.args(["--branch", b]);
        }
        cmd.arg(&url).arg(&config_dir);
        let out = cmd.output().map_err(|e| {
            source_error(source, format!("cannot run git: {e}"), Some("install git"))
        })?;
        if !out.status.success() {
            return Err(source_error(
                source,
                format!(
                    "git clone failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                None,
            ));
        }
        ConfigSource::Cloned {
            url,
            branch: branch.map(str::to_string),
        }
    };
    let arches: Vec<Arch> = Arch::host().into_iter().collect();
    let build_toml_path = dest.join(WORKDIR_FILE);
    fs_err::write(&build_toml_path, build_toml(&arches))?;
    Ok(InitReport {
        dest: dest.to_path_buf(),
        config,
        build_toml: build_toml_path,
    })
}
