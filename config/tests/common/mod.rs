//! Shared helpers for the config tests: paths, rendering diagnostics, summarising configs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nosa_config::{Config, ConfigWarning};

/// `config/tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A fixed workdir, so `$nosa_workdir` expansions are stable in snapshots.
pub const WORKDIR: &str = "/nosa-workdir";

/// Renders a diagnostic as plain text (no colour, no unicode), paths made relative to `dir`.
pub fn render(diag: &dyn miette::Diagnostic, dir: &Path) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_theme(miette::GraphicalTheme::none())
            .with_width(100);
    let mut out = String::new();
    handler.render_report(&mut out, diag).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    out.replace(&format!("{}/", dir.display()), "")
        .replace(&dir.display().to_string(), "<config>")
}

/// Paths relative to the config dir, for snapshots.
pub fn rel(config: &Config, p: &Path) -> String {
    p.strip_prefix(&config.dir)
        .unwrap_or(p)
        .display()
        .to_string()
}

/// Everything but the show JSON, as stable JSON for a snapshot.
pub fn summary(config: &Config) -> serde_json::Value {
    let warnings: Vec<serde_json::Value> =
        config.warnings.iter().map(ConfigWarning::to_json).collect();
    serde_json::json!({
        "arch": config.arch.as_str(),
        "manifest": rel(config, &config.manifest),
        "files_read": config.files_read.iter().map(|p| rel(config, p)).collect::<Vec<_>>(),
        "overlays": config.overlays.iter().map(|o| serde_json::json!({
            "name": o.name, "path": rel(config, &o.path), "ref": o.ref_name,
        })).collect::<Vec<_>>(),
        "applied_overlays": config.applied_overlays().iter().map(|o| &o.name).collect::<Vec<_>>(),
        "postprocess_steps": config.treefile.postprocess_steps().len(),
        "postprocess": config.treefile.postprocess.iter().map(|p| serde_json::json!({
            "index": p.index, "file": rel(config, &p.file), "script": p.script,
        })).collect::<Vec<_>>(),
        "postprocess_script": config.treefile.postprocess_script.as_ref().map(|p| rel(config, p)),
        "repos": config.repos.iter().map(|r| serde_json::json!({
            "id": r.id, "name": r.name, "baseurl": r.baseurl, "metalink": r.metalink,
            "enabled": r.enabled, "gpgcheck": r.gpgcheck, "gpgkey": r.gpgkey,
            "exclude": r.exclude, "priority": r.priority, "cost": r.cost,
            "file": rel(config, &r.file),
        })).collect::<Vec<_>>(),
        "compose_repos": config.compose_repos().iter().map(|r| &r.id).collect::<Vec<_>>(),
        "lockfile_repos": config.lockfile_repos().iter().map(|r| &r.id).collect::<Vec<_>>(),
        "lockfiles": {
            "base": config.lockfiles.base.as_ref().map(|l| rel(config, &l.path)),
            "overrides": config.lockfiles.overrides.iter().map(|l| rel(config, &l.path)).collect::<Vec<_>>(),
            "effective": config.lockfiles.effective().iter().map(|(n, p)| (n.clone(), serde_json::json!({"evr": p.evr, "evra": p.evra}))).collect::<serde_json::Map<_, _>>(),
        },
        "check_passwd_file": config.treefile.check_passwd.as_ref().and_then(|c| c.file.as_ref()).map(|p| rel(config, p)),
        "kola": config.kola.as_ref().map(|k| k.tests.iter().map(|t| serde_json::json!({"name": t.name, "path": rel(config, &t.path)})).collect::<Vec<_>>()),
        "live": config.live_dir.as_ref().map(|p| rel(config, p)),
        "platforms": config.platforms,
        "variables": config.treefile.variables,
        "warnings": warnings,
    })
}
