//! The `overlay` rule: one overlay.d layer (or `overrides/rootfs`) as a normalized tree, the way
//! nestos-assembler commits it: owned by root (trees carry no owners), umask 022 applied,
//! setuid/setgid/sticky bits dropped, `statoverride` modes honoured (and the file itself left
//! out), no timestamps. The layer's files are its declared inputs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use nosa_engine::{InputSpec, Params, Portable, Rule, RunContext, RunError};

/// Name of the per-layer mode override file, as in nestos-config.
pub const STATOVERRIDE: &str = "statoverride";

/// An overlay layer at `dir` (workdir-relative).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OverlayRule {
    name: String,
    dir: String,
}

impl OverlayRule {
    /// The layer `name` whose files are under the workdir-relative `dir`.
    pub fn new(name: &str, dir: &str) -> Self {
        OverlayRule {
            name: name.to_string(),
            dir: dir.trim_end_matches('/').to_string(),
        }
    }
}

/// Parses a `statoverride` file: `=<mode in decimal> <absolute path>` per line, `#` comments.
pub fn parse_statoverride(text: &str, file: &str) -> Result<BTreeMap<String, u32>, RunError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            RunError::msg(format!(
                "{file}:{}: expected `=<mode in decimal> /absolute/path`, found {line:?}",
                n + 1
            ))
        };
        let (mode, path) = line
            .strip_prefix('=')
            .and_then(|l| l.split_once(char::is_whitespace))
            .ok_or_else(bad)?;
        let mode: u32 = mode.parse().map_err(|_| bad())?;
        let path = path.trim();
        if !path.starts_with('/') || mode > 0o7777 {
            return Err(bad());
        }
        out.insert(path.trim_start_matches('/').to_string(), mode);
    }
    Ok(out)
}

impl Rule for OverlayRule {
    fn kind(&self) -> &str {
        "overlay"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("name", &self.name).add("dir", &self.dir);
    }

    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::Path(self.dir.clone())]
    }

    fn portable(&self) -> Option<Portable> {
        // Its files and their modes come in the node's description.
        Some(Portable {
            spec: serde_json::to_string(self).ok()?,
            tools: vec![],
        })
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let prefix = format!("{}/", self.dir);
        let overrides = match ctx
            .inputs
            .iter()
            .find(|f| f.rel == format!("{prefix}{STATOVERRIDE}"))
        {
            Some(f) => parse_statoverride(&fs_err::read_to_string(&f.abs)?, &f.rel)?,
            None => BTreeMap::new(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for f in ctx.inputs {
            let Some(rel) = f.rel.strip_prefix(&prefix) else {
                continue;
            };
            if rel == STATOVERRIDE {
                continue;
            }
            let dest = ctx.out.join(rel);
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent)?;
            }
            seen.insert(rel.to_string());
            if f.symlink {
                let target = fs_err::read_link(&f.abs)?;
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(|e| RunError::msg(format!("{}: {e}", dest.display())))?;
                continue;
            }
            fs_err::copy(&f.abs, &dest)?;
            let src_mode = fs_err::metadata(&f.abs)?.permissions().mode();
            let mode = overrides
                .get(rel)
                .copied()
                .unwrap_or(src_mode & 0o777 & !0o022);
            fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
        }
        // Directories: 0755 unless overridden.
        for e in walkdir::WalkDir::new(&ctx.out).min_depth(1) {
            let e = e.map_err(|e| RunError::msg(e.to_string()))?;
            if e.file_type().is_dir() {
                let rel = e.path().strip_prefix(&ctx.out).unwrap_or(e.path());
                let rel = rel.to_string_lossy().into_owned();
                let mode = overrides.get(&rel).copied().unwrap_or(0o755);
                fs_err::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))?;
                seen.insert(rel);
            }
        }
        if let Some(missing) = overrides.keys().find(|k| !seen.contains(*k)) {
            return Err(RunError::msg(format!(
                "{prefix}{STATOVERRIDE} names /{missing}, which the layer does not contain"
            )));
        }
        Ok(())
    }
}
