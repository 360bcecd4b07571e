//! coreos-assembler lockfiles: `manifest-lock.<arch>.json` (generated) and
//! `manifest-lock.overrides[.<arch>].yaml` (hand-written pins and fast-tracks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::arch::Arch;
use crate::error::ConfigError;
use crate::source::{Origin, Sources};
use crate::yaml;

/// One locked package. Generated lockfiles give `evra`; overrides usually give `evr`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LockedPackage {
    /// `epoch:version-release.arch` (epoch optional).
    pub evra: Option<String>,
    /// `epoch:version-release` (epoch optional).
    pub evr: Option<String>,
    /// Optional package digest.
    pub digest: Option<String>,
    /// Free-form metadata (`type: pin|fast-track`, `reason`, `sourcerpm`, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawLockfile {
    #[serde(default)]
    packages: BTreeMap<String, serde_saphyr::Spanned<LockedPackage>>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

/// One lockfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Lockfile {
    /// Its path.
    pub path: PathBuf,
    /// Package name to lock.
    pub packages: BTreeMap<String, LockedPackage>,
    /// Top-level `metadata` (e.g. `generated`, `rpmmd_repos`), as written.
    pub metadata: Option<serde_json::Value>,
}

/// The lockfiles that apply to one arch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lockfiles {
    /// `manifest-lock.<arch>.json`.
    pub base: Option<Lockfile>,
    /// `manifest-lock.overrides.yaml` then `manifest-lock.overrides.<arch>.yaml`
    /// (later ones win per package).
    pub overrides: Vec<Lockfile>,
}

impl Lockfiles {
    /// Every lock after applying overrides: package name to (evr or evra).
    pub fn effective(&self) -> BTreeMap<String, LockedPackage> {
        let mut out = BTreeMap::new();
        for lf in self.base.iter().chain(&self.overrides) {
            for (name, p) in &lf.packages {
                out.insert(name.clone(), p.clone());
            }
        }
        out
    }
}

fn load_one(path: &Path, sources: &mut Sources) -> Result<Lockfile, ConfigError> {
    let file = sources.read(path)?;
    let raw: Option<RawLockfile> = yaml::parse_as(sources, file)?;
    let raw = raw.unwrap_or(RawLockfile {
        packages: BTreeMap::new(),
        metadata: None,
    });
    let mut packages = BTreeMap::new();
    for (name, spanned) in raw.packages {
        if spanned.value.evra.is_none() && spanned.value.evr.is_none() {
            let f = sources.get(file);
            let loc = spanned.referenced;
            let offset = f.offset_of(loc.line(), loc.column());
            let origin = Origin {
                file,
                span: miette::SourceSpan::new(offset.into(), 0),
            };
            return Err(ConfigError::invalid(
                sources,
                origin,
                format!("locked package `{name}` has neither `evra` nor `evr`"),
                "this lock",
                Some(
                    "write e.g. `evr: 1.2-3.oe2403` (overrides) or `evra: 1.2-3.oe2403.x86_64`"
                        .into(),
                ),
            ));
        }
        packages.insert(name, spanned.value);
    }
    Ok(Lockfile {
        path: path.to_path_buf(),
        packages,
        metadata: raw.metadata,
    })
}

/// Loads the lockfiles in `dir` that apply to `arch`, when present.
pub(crate) fn load(
    dir: &Path,
    arch: Arch,
    sources: &mut Sources,
) -> Result<Lockfiles, ConfigError> {
    let mut out = Lockfiles::default();
    let base = dir.join(format!("manifest-lock.{arch}.json"));
    if base.is_file() {
        out.base = Some(load_one(&base, sources)?);
    }
    for name in [
        "manifest-lock.overrides.yaml".to_string(),
        "manifest-lock.overrides.json".to_string(),
        format!("manifest-lock.overrides.{arch}.yaml"),
        format!("manifest-lock.overrides.{arch}.json"),
    ] {
        let p = dir.join(name);
        if p.is_file() {
            out.overrides.push(load_one(&p, sources)?);
        }
    }
    Ok(out)
}
