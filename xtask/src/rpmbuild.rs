//! Writes one deterministic RPM with the `rpm` crate: fixed build time, mtimes, build host and owners; sorted files and dependencies.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rpm::{BuildConfig, CompressionWithLevel, Dependency, FileOptions, PackageBuilder, Scriptlet};
use sha2::{Digest, Sha256};

use crate::Result;
use crate::payload::Payload;
use crate::spec::{Dep, DistroSettings, FileSpec, Op};

/// Zstd level of the payloads: close to level 19's size at a fraction of its time.
const ZSTD_LEVEL: i32 = 12;

/// Everything about a package except its files.
#[derive(Debug, Clone)]
pub struct RpmMeta {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub license: String,
    pub summary: String,
    pub description: String,
    pub url: Option<String>,
    pub requires: Vec<Dep>,
    pub provides: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub obsoletes: Vec<Dep>,
    pub pre: Option<String>,
    pub post: Option<String>,
    pub posttrans: Option<String>,
}

impl RpmMeta {
    /// `name-version-release.arch`.
    pub fn nvra(&self) -> String {
        format!(
            "{}-{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }
}

/// A written RPM.
#[derive(Debug, Clone)]
pub struct BuiltRpm {
    pub nvra: String,
    pub size: u64,
    pub sha256: String,
}

fn dependency(d: &Dep) -> Dependency {
    match &d.constraint {
        None => Dependency::any(&d.name),
        Some((Op::Lt, v)) => Dependency::less(&d.name, v),
        Some((Op::Le, v)) => Dependency::less_eq(&d.name, v),
        Some((Op::Eq, v)) => Dependency::eq(&d.name, v),
        Some((Op::Ge, v)) => Dependency::greater_eq(&d.name, v),
        Some((Op::Gt, v)) => Dependency::greater(&d.name, v),
    }
}

/// Builds `meta` + `payload` into `out_dir/<nvra>.rpm`, with the file's mtime
/// set to the distro's SOURCE_DATE_EPOCH (createrepo_c records it).
pub fn build_rpm(
    settings: &DistroSettings,
    meta: &RpmMeta,
    payload: &Payload,
    out_dir: &Path,
) -> Result<BuiltRpm> {
    let config = BuildConfig::v4()
        .compression(CompressionWithLevel::Zstd(ZSTD_LEVEL))
        .source_date(settings.source_date_epoch);
    let mut b = PackageBuilder::new(
        &meta.name,
        &meta.version,
        &meta.license,
        &meta.arch,
        &meta.summary,
    );
    if let Some(e) = meta.epoch {
        b.epoch(e);
    }
    b.using_config(config)
        .release(&meta.release)
        .description(&meta.description)
        .vendor(&settings.vendor)
        .packager(&settings.packager)
        .build_host(&settings.build_host);
    if let Some(url) = &meta.url {
        b.url(url);
    }
    for d in &meta.requires {
        b.requires(dependency(d));
    }
    for d in &meta.provides {
        b.provides(dependency(d));
    }
    for d in &meta.conflicts {
        b.conflicts(dependency(d));
    }
    for d in &meta.obsoletes {
        b.obsoletes(dependency(d));
    }
    // Shell scriptlets only: a Lua one makes the crate add `Requires: <lua>`,
    // which libsolv rejects. The crate adds `Requires(pre|post): /bin/sh`.
    if let Some(s) = &meta.pre {
        b.pre_install_script(Scriptlet::new(s.as_str()).prog(vec!["/bin/sh"]));
    }
    if let Some(s) = &meta.post {
        b.post_install_script(Scriptlet::new(s.as_str()).prog(vec!["/bin/sh"]));
    }
    if let Some(s) = &meta.posttrans {
        b.post_trans_script(Scriptlet::new(s.as_str()).prog(vec!["/bin/sh"]));
    }
    for (path, entry) in payload {
        match entry {
            FileSpec::File {
                content,
                mode,
                config,
            } => {
                let mut o = FileOptions::new(path.as_str()).permissions(*mode);
                if *config {
                    o = o.config().noreplace();
                }
                b.with_file_contents(content.clone(), o)?;
            }
            FileSpec::Dir { mode } => {
                b.with_dir_entry(FileOptions::dir(path.as_str()).permissions(*mode))?;
            }
            FileSpec::Symlink { target } => {
                b.with_symlink(FileOptions::symlink(path.as_str(), target.as_str()))?;
            }
        }
    }
    // Signed with the fixture's key at SOURCE_DATE_EPOCH (the config's source date): the same
    // bytes every time.
    let signer = crate::sign::FixtureKey::new(settings.source_date_epoch)?.rpm_signer()?;
    let pkg = b.build_and_sign(signer)?;

    let nvra = meta.nvra();
    let path = out_dir.join(format!("{nvra}.rpm"));
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)?;
    fs_err::write(&path, &bytes)?;
    let file = fs_err::File::options().write(true).open(&path)?;
    file.set_modified(
        SystemTime::UNIX_EPOCH + Duration::from_secs(settings.source_date_epoch.into()),
    )?;
    Ok(BuiltRpm {
        nvra,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
