//! The rest of a nestos-config tree: `overlay.d/` layers, `live/`, `tests/kola/` and
//! `platforms.yaml`.

use std::path::{Path, PathBuf};

use serde_json::Value as J;

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
    /// Every file and symlink below it, relative to it, sorted (`etc/motd`).
    pub files: Vec<String>,
}

/// Files and symlinks below `root`, relative to it, sorted.
fn files_below(root: &Path) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
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
            files: files_below(&path)?,
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
    /// Its metadata as kola reads it: `kola.json` beside it, overridden key by key by a
    /// `# kola: {...}` line among its first 20 lines; or why that cannot be read (the test is
    /// then reported as not runnable, the rest of the config still loads).
    pub meta: Result<serde_json::Map<String, J>, String>,
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

/// Reads a test's metadata (see [`KolaTest::meta`]), recording the files read in `sources`.
fn test_metadata(exe: &Path, sources: &mut Sources) -> Result<serde_json::Map<String, J>, String> {
    let mut meta = serde_json::Map::new();
    if let Some(dir) = exe.parent() {
        let kj = dir.join("kola.json");
        if kj.is_file() {
            let id = sources.read(&kj).map_err(|e| e.to_string())?;
            let f = sources.get(id);
            match serde_json::from_str::<J>(&f.text) {
                Ok(J::Object(m)) => meta = m,
                Ok(_) => return Err(format!("{}: not a JSON object", kj.display())),
                Err(e) => return Err(format!("{}: {e}", kj.display())),
            }
        }
    }
    if let Ok(id) = sources.read(exe) {
        for (n, line) in sources.get(id).text.lines().take(20).enumerate() {
            if let Some(json) = line.strip_prefix("# kola:") {
                match serde_json::from_str::<J>(json.trim()) {
                    Ok(J::Object(m)) => meta.extend(m),
                    _ => {
                        return Err(format!(
                            "{}:{}: `# kola:` must be followed by a JSON object",
                            exe.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    Ok(meta)
}

fn walk(
    dir: &Path,
    base: &Path,
    out: &mut Vec<KolaTest>,
    sources: &mut Sources,
) -> Result<(), ConfigError> {
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
            walk(&path, base, out, sources)?;
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
                meta: test_metadata(&path, sources),
                path,
            });
        }
    }
    Ok(())
}

/// `<dir>/tests/kola`, if present.
pub(crate) fn kola_tests(
    dir: &Path,
    sources: &mut Sources,
) -> Result<Option<KolaTests>, ConfigError> {
    let root = dir.join("tests").join("kola");
    if !root.is_dir() {
        return Ok(None);
    }
    let mut tests = Vec::new();
    walk(&root, &root, &mut tests, sources)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_metadata_overrides_kola_json_and_both_are_read() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(
            d.path().join("kola.json"),
            r#"{"timeoutMin": 3, "minMemory": 2048}"#,
        )
        .unwrap();
        let t = d.path().join("test.sh");
        fs_err::write(&t, "#!/bin/sh\n# kola: {\"timeoutMin\": 5}\ntrue\n").unwrap();
        let mut sources = Sources::new(d.path());
        let m = test_metadata(&t, &mut sources).unwrap();
        assert_eq!(m["timeoutMin"], 5);
        assert_eq!(m["minMemory"], 2048);
        assert_eq!(sources.paths(), vec![d.path().join("kola.json"), t.clone()]);
        fs_err::write(&t, "#!/bin/sh\n# kola: [1]\n").unwrap();
        let e = test_metadata(&t, &mut sources).unwrap_err();
        assert!(e.contains(":2:"), "{e}");
    }
}
