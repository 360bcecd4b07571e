//! The rest of a nestos-config tree: `overlay.d/` layers, `live/`, `tests/kola/` and
//! `platforms.yaml`.

use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::source::Sources;
use crate::yaml;

/// One `overlay.d/<name>` directory: a layer checked out over the packages, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayLayer {
    /// Directory name, e.g. `15nestos`.
    pub name: String,
    /// Absolute path of the directory.
    pub path: PathBuf,
    /// The ostree ref cosa commits it to (`overlay/<name>`), as `ostree-layers` names it.
    pub ref_name: String,
}

/// Subdirectories of `<dir>/overlay.d`, sorted by name.
pub(crate) fn overlay_layers(dir: &Path) -> Result<Vec<OverlayLayer>, ConfigError> {
    let root = dir.join("overlay.d");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut layers = Vec::new();
    for entry in fs_err::read_dir(&root)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        layers.push(OverlayLayer {
            ref_name: format!("overlay/{name}"),
            name,
            path,
        });
    }
    layers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(layers)
}

/// One external kola test (an executable under `tests/kola/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KolaTest {
    /// kola's name for it: `ext.config.<dir path joined by .>`, plus the file stem unless
    /// the file is `test.sh`.
    pub name: String,
    /// Absolute path of the executable.
    pub path: PathBuf,
}

/// `tests/kola/`: external tests run by `kola run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KolaTests {
    /// Absolute path of `tests/kola`.
    pub dir: PathBuf,
    /// The tests, sorted by name.
    pub tests: Vec<KolaTest>,
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<KolaTest>) -> Result<(), ConfigError> {
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in fs_err::read_dir(dir)? {
        entries.push(e?.path());
    }
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // A test's `data/` directory is uploaded with it, not searched for tests.
            if path.file_name().is_some_and(|n| n == "data") {
                continue;
            }
            walk(&path, base, out)?;
        } else if is_executable(&path) {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            let mut parts: Vec<String> = rel
                .parent()
                .map(|p| {
                    p.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            if let Some(file) = file
                && file != "test.sh"
            {
                parts.push(file);
            }
            out.push(KolaTest {
                name: format!("ext.config.{}", parts.join(".")),
                path,
            });
        }
    }
    Ok(())
}

/// `<dir>/tests/kola`, if present.
pub(crate) fn kola_tests(dir: &Path) -> Result<Option<KolaTests>, ConfigError> {
    let root = dir.join("tests").join("kola");
    if !root.is_dir() {
        return Ok(None);
    }
    let mut tests = Vec::new();
    walk(&root, &root, &mut tests)?;
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(KolaTests { dir: root, tests }))
}

/// A YAML file in `dir` parsed to JSON, if present (`platforms.yaml`, `kola-denylist.yaml`).
pub(crate) fn optional_yaml(
    dir: &Path,
    name: &str,
    sources: &mut Sources,
) -> Result<Option<serde_json::Value>, ConfigError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let file = sources.read(&path)?;
    Ok(Some(yaml::parse(sources, file)?.to_json()))
}
