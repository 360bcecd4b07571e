//! Debian packages: resolve a name with apt-cache, download it once into a cache dir, unpack it with dpkg-deb.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::tools::{run, run_stdout};

/// A concrete Debian binary package in the download cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    /// Full Debian version, epoch included (`1:1.35.0-4+deb12u1+b1`).
    pub version: String,
    pub arch: String,
    /// Where the .deb is (inside the download cache).
    pub path: PathBuf,
}

impl Deb {
    /// The RPM version and release for this package: epoch dropped, the
    /// Debian revision becomes the release with `+` and `~` turned into `.`.
    pub fn rpm_version_release(&self) -> (String, String) {
        debian_to_rpm_version(&self.version)
    }

    /// Size of the .deb file; with name, version and arch it identifies the input.
    pub fn size(&self) -> Result<u64> {
        Ok(fs_err::metadata(&self.path)?.len())
    }
}

/// `1:1.35.0-4+deb12u1+b1` -> (`1.35.0`, `4.deb12u1.b1`); no revision -> release `0`.
pub fn debian_to_rpm_version(version: &str) -> (String, String) {
    let no_epoch = version.split_once(':').map_or(version, |(_, rest)| rest);
    let (upstream, revision) = no_epoch.rsplit_once('-').unwrap_or((no_epoch, "0"));
    let clean = |s: &str| s.replace(['+', '~', '-', ':'], ".");
    (clean(upstream), clean(revision))
}

/// The fields of one `apt-cache show` stanza that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AptRecord {
    package: String,
    version: String,
    arch: String,
    depends: Vec<String>,
}

/// One `apt-cache show --no-all-versions` for all `names` (each call costs
/// about a second: it loads the whole package cache).
fn apt_show(names: &[String], deb_arch: &str) -> Result<BTreeMap<String, AptRecord>> {
    let specs: Vec<String> = names.iter().map(|n| format!("{n}:{deb_arch}")).collect();
    let text = run_stdout(
        Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(&specs),
    )
    .map_err(|e| format!("apt-cache cannot resolve {specs:?} (is `apt-get update` done?): {e}"))?;
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let mut rec = AptRecord::default();
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                rec.package = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("Version: ") {
                rec.version = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                rec.arch = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("Depends: ") {
                rec.depends = v
                    .split(',')
                    .filter_map(|d| d.split_whitespace().next())
                    .map(str::to_string)
                    .collect();
            }
        }
        if !rec.package.is_empty() && !rec.version.is_empty() {
            out.insert(rec.package.clone(), rec);
        }
    }
    for n in names {
        if !out.contains_key(n) {
            return Err(format!("apt-cache show {n}:{deb_arch}: no candidate version").into());
        }
    }
    Ok(out)
}

/// Debian's name for an RPM arch.
pub fn debian_arch(rpm_arch: &str) -> Result<&'static str> {
    match rpm_arch {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => Err(format!("no Debian architecture for {other}").into()),
    }
}

/// A package to resolve: its name, and for a metapackage the prefix of the
/// dependency to follow (linux-image-amd64 -> linux-image-6.1.0-NN-amd64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub name: String,
    pub follow_prefix: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResolveCache {
    apt_state: String,
    deb_arch: String,
    wanted: Vec<Wanted>,
    resolved: Vec<AptRecord>,
}

/// Identifies the apt package lists and pinning: a resolution stays valid
/// until `apt-get update` or the apt configuration changes them.
pub fn apt_state() -> Result<String> {
    let mut h = blake3::Hasher::new();
    for dir in ["/var/lib/apt/lists", "/etc/apt"] {
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let Ok(entry) = entry else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{} {} {mtime}\n", entry.path().display(), meta.len()).as_bytes());
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Resolves every wanted package to its candidate version (batched
/// apt-cache calls, cached in `cache/resolved.json` while the apt lists
/// are unchanged). The .debs are expected in `cache`.
pub fn resolve_all(wanted: &[Wanted], deb_arch: &str, cache: &Path) -> Result<Vec<Deb>> {
    let state = apt_state()?;
    let cache_file = cache.join("resolved.json");
    let cached = fs_err::read_to_string(&cache_file)
        .ok()
        .and_then(|t| serde_json::from_str::<ResolveCache>(&t).ok())
        .filter(|c| c.apt_state == state && c.deb_arch == deb_arch && c.wanted == wanted);
    let records = match cached {
        Some(c) => c.resolved,
        None => {
            let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
            let first = apt_show(&names, deb_arch)?;
            let mut targets = Vec::new();
            for w in wanted {
                let rec = &first[&w.name];
                let target = w.follow_prefix.as_ref().and_then(|prefix| {
                    rec.depends
                        .iter()
                        .find(|d| d.starts_with(prefix.as_str()) && **d != w.name)
                        .cloned()
                });
                targets.push(target);
            }
            let follow: Vec<String> = targets.iter().flatten().cloned().collect();
            let second = if follow.is_empty() {
                BTreeMap::new()
            } else {
                apt_show(&follow, deb_arch)?
            };
            let records: Vec<AptRecord> = wanted
                .iter()
                .zip(&targets)
                .map(|(w, t)| match t {
                    Some(t) => second[t].clone(),
                    None => first[&w.name].clone(),
                })
                .collect();
            fs_err::create_dir_all(cache)?;
            let c = ResolveCache {
                apt_state: state,
                deb_arch: deb_arch.to_string(),
                wanted: wanted.to_vec(),
                resolved: records.clone(),
            };
            fs_err::write(&cache_file, serde_json::to_string_pretty(&c)?)?;
            records
        }
    };
    Ok(records
        .into_iter()
        .map(|rec| {
            let file = format!(
                "{}_{}_{}.deb",
                rec.package,
                rec.version.replace(':', "%3a"),
                rec.arch
            );
            Deb {
                path: cache.join(file),
                name: rec.package,
                version: rec.version,
                arch: rec.arch,
            }
        })
        .collect())
}

/// Makes sure `deb.path` exists, downloading it with `apt-get download` when
/// it does not. Returns whether a download happened.
pub fn ensure_downloaded(deb: &Deb) -> Result<bool> {
    if deb.path.is_file() {
        return Ok(false);
    }
    let cache = deb.path.parent().ok_or("deb path has no parent")?;
    fs_err::create_dir_all(cache)?;
    // Download into a private directory, then rename: a killed download never
    // leaves a truncated .deb that a later run would trust.
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)?;
    eprintln!(
        "fixture-distro: downloading {}={} ({})",
        deb.name, deb.version, deb.arch
    );
    let spec = format!("{}:{}={}", deb.name, deb.arch, deb.version);
    run(Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(tmp.path()))
    .map_err(|e| format!("apt-get download {spec} failed: {e}"))?;
    let downloaded = tmp.path().join(deb.path.file_name().ok_or("no file name")?);
    if !downloaded.is_file() {
        return Err(format!("apt-get download did not produce {}", downloaded.display()).into());
    }
    fs_err::rename(&downloaded, &deb.path)?;
    Ok(true)
}

/// [`ensure_downloaded`] for many packages with one `apt-get download` (one call per package
/// costs about a second each). Returns how many were downloaded.
pub fn ensure_downloaded_all(debs: &[Deb], cache: &Path) -> Result<usize> {
    let missing: Vec<&Deb> = debs.iter().filter(|d| !d.path.is_file()).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    fs_err::create_dir_all(cache)?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache)?;
    eprintln!(
        "fixture-distro: downloading {} Debian packages",
        missing.len()
    );
    let specs: Vec<String> = missing
        .iter()
        .map(|d| format!("{}:{}={}", d.name, d.arch, d.version))
        .collect();
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .args(&specs)
        .current_dir(tmp.path()))
    .map_err(|e| format!("apt-get download of {} packages failed: {e}", specs.len()))?;
    for d in &missing {
        let got = tmp.path().join(d.path.file_name().ok_or("no file name")?);
        if !got.is_file() {
            return Err(format!("apt-get download did not produce {}", got.display()).into());
        }
        fs_err::rename(&got, &d.path)?;
    }
    Ok(missing.len())
}

/// Unpacks the .deb's data into `dest` (which must not exist yet).
pub fn unpack(deb: &Deb, dest: &Path) -> Result<()> {
    fs_err::create_dir_all(dest)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb.path).arg(dest))
        .map_err(|e| format!("dpkg-deb -x {} failed: {e}", deb.path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_map_to_rpm() {
        let check = |deb: &str, v: &str, r: &str| {
            assert_eq!(
                debian_to_rpm_version(deb),
                (v.to_string(), r.to_string()),
                "{deb}"
            );
        };
        check("1:1.35.0-4+deb12u1+b1", "1.35.0", "4.deb12u1.b1");
        check("6.1.192-2", "6.1.192", "2");
        check("252.39-1~deb12u2", "252.39", "1.deb12u2");
        check("2.06-13+deb12u2", "2.06", "13.deb12u2");
        check("1.0", "1.0", "0");
        check("1.2-3-4", "1.2.3", "4");
    }
}
