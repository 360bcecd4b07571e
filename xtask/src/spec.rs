//! The fixture distro's package list (`fixtures/distro/packages.toml`): raw serde types, then validated specs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Result;

/// Distro-wide build settings (`[distro]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistroSettings {
    /// Build time and file mtime of every RPM, and createrepo_c's revision.
    pub source_date_epoch: u32,
    pub build_host: String,
    pub vendor: String,
    pub packager: String,
    /// Release of packages that do not come from a Debian package.
    pub release: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistro {
    distro: DistroSettings,
    #[serde(default)]
    closure: Option<ClosureSpec>,
    #[serde(rename = "package")]
    packages: Vec<RawPackage>,
}

/// `[closure]`: Debian packages repackaged with their whole dependency closure, one RPM per
/// Debian package (xtask/src/closure.rs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosureSpec {
    /// The packages apt installs; their closure is what is repackaged.
    pub roots: Vec<String>,
    /// Closure packages left out: packages.toml packages stand in for them (and provide
    /// their names).
    #[serde(default)]
    pub exclude: BTreeSet<String>,
    /// Paths (and everything below them) no package ships.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Scriptlets that do what a package's maintainer scripts did, by Debian package name.
    #[serde(default)]
    pub scripts: BTreeMap<String, Scripts>,
}

/// Shell scriptlets of one repackaged package.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    pub pre: Option<String>,
    pub post: Option<String>,
    pub posttrans: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: String,
    version: Option<String>,
    release: Option<String>,
    arch: String,
    license: String,
    summary: String,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    provides: Vec<String>,
    #[serde(default)]
    conflicts: Vec<String>,
    #[serde(default)]
    obsoletes: Vec<String>,
    pre: Option<String>,
    post: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, RawFile>,
    deb: Option<DebSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    src: Option<String>,
    text: Option<String>,
    #[serde(default)]
    dir: bool,
    link: Option<String>,
    mode: Option<u16>,
    #[serde(default)]
    config: bool,
}

/// Where a package's content comes from when it is repackaged from Debian.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    /// The Debian package (a metapackage such as linux-image-amd64 is followed
    /// through its first Depends).
    pub name: String,
    #[serde(default)]
    pub kind: DebKind,
    /// `copy`: the directories (recursively) or files taken from the package.
    #[serde(default)]
    pub copy: Vec<String>,
    /// `kernel`: modules to ship, with their dependencies.
    #[serde(default)]
    pub modules: Vec<String>,
    /// `busybox`: applets that get no link.
    #[serde(default)]
    pub exclude_applets: Vec<String>,
}

/// How a Debian package is turned into RPM content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DebKind {
    /// Copy the paths listed in `copy`.
    #[default]
    Copy,
    /// vmlinuz + selected modules under /usr/lib/modules/<kver>/, depmod rerun.
    Kernel,
    /// /usr/bin/busybox + one link per applet.
    Busybox,
}

/// One entry of a package's file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSpec {
    /// Regular file with the given content.
    File {
        content: Vec<u8>,
        mode: u16,
        config: bool,
    },
    Dir {
        mode: u16,
    },
    Symlink {
        target: String,
    },
}

/// A dependency as written in packages.toml: `name [op version]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    pub constraint: Option<(Op, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

/// A validated package description.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    pub name: String,
    /// None for Debian-derived packages until the .deb is known.
    pub version: Option<String>,
    pub release: Option<String>,
    pub arch: String,
    pub license: String,
    pub summary: String,
    pub requires: Vec<Dep>,
    pub provides: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    pub obsoletes: Vec<Dep>,
    pub pre: Option<String>,
    pub post: Option<String>,
    /// Absolute path in the package -> entry.
    pub files: BTreeMap<String, FileSpec>,
    pub deb: Option<DebSource>,
}

/// The whole fixture distro description.
#[derive(Debug, Clone)]
pub struct DistroSpec {
    pub settings: DistroSettings,
    /// The Debian closure, if any.
    pub closure: Option<ClosureSpec>,
    pub packages: Vec<PackageSpec>,
}

impl DistroSpec {
    /// Reads `dir/packages.toml`; `src` paths are relative to `dir/files/`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("packages.toml");
        let text = fs_err::read_to_string(&path)?;
        Self::parse(&text, &dir.join("files"))
            .map_err(|e| format!("{}: {e}", path.display()).into())
    }

    /// Parses packages.toml text; `files_dir` resolves `src` entries.
    pub fn parse(text: &str, files_dir: &Path) -> Result<Self> {
        let raw: RawDistro = toml::from_str(text)?;
        let mut packages = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for p in raw.packages {
            let spec = resolve_package(p, files_dir)?;
            let nvra = (spec.name.clone(), spec.version.clone(), spec.arch.clone());
            if !seen.insert(nvra) {
                return Err(format!(
                    "package {} is listed twice with the same version",
                    spec.name
                )
                .into());
            }
            packages.push(spec);
        }
        if let Some(c) = &raw.closure {
            for name in c.scripts.keys() {
                if c.exclude.contains(name) {
                    return Err(format!("[closure.scripts.{name}]: {name} is excluded").into());
                }
            }
            if let Some(p) = packages.iter().find(|p| c.roots.contains(&p.name)) {
                return Err(format!(
                    "package {} is both a packages.toml package and a closure root",
                    p.name
                )
                .into());
            }
        }
        Ok(Self {
            settings: raw.distro,
            closure: raw.closure,
            packages,
        })
    }
}

fn resolve_package(p: RawPackage, files_dir: &Path) -> Result<PackageSpec> {
    let ctx = |msg: String| -> crate::Error { format!("package {}: {msg}", p.name).into() };
    if p.version.is_none() && p.deb.is_none() {
        return Err(ctx("needs `version` or `[package.deb]`".into()));
    }
    if !matches!(p.arch.as_str(), "x86_64" | "aarch64" | "noarch") {
        return Err(ctx(format!("unknown arch {:?}", p.arch)));
    }
    if let Some(deb) = &p.deb {
        let wrong = match deb.kind {
            DebKind::Copy => {
                deb.copy.is_empty() || !deb.modules.is_empty() || !deb.exclude_applets.is_empty()
            }
            DebKind::Kernel => {
                deb.modules.is_empty() || !deb.copy.is_empty() || !deb.exclude_applets.is_empty()
            }
            DebKind::Busybox => !deb.copy.is_empty() || !deb.modules.is_empty(),
        };
        if wrong {
            return Err(ctx(format!(
                "[package.deb] of kind {:?}: `copy` is for kind copy (and required), `modules` for kernel (and required), `exclude_applets` for busybox",
                deb.kind
            )));
        }
    }
    let mut files = BTreeMap::new();
    for (path, f) in p.files {
        let entry =
            resolve_file(&path, f, files_dir).map_err(|e| ctx(format!("file {path}: {e}")))?;
        files.insert(path, entry);
    }
    let deps = |list: Vec<String>| -> Result<Vec<Dep>> {
        list.iter()
            .map(|d| d.parse::<Dep>().map_err(&ctx))
            .collect()
    };
    Ok(PackageSpec {
        requires: deps(p.requires)?,
        provides: deps(p.provides)?,
        conflicts: deps(p.conflicts)?,
        obsoletes: deps(p.obsoletes)?,
        name: p.name,
        version: p.version,
        release: p.release,
        arch: p.arch,
        license: p.license,
        summary: p.summary,
        pre: p.pre,
        post: p.post,
        files,
        deb: p.deb,
    })
}

fn resolve_file(path: &str, f: RawFile, files_dir: &Path) -> Result<FileSpec> {
    if !path.starts_with('/')
        || path.ends_with('/')
        || path.contains("//")
        || path.split('/').any(|c| c == "..")
    {
        return Err("must be an absolute, normalised path".into());
    }
    let kinds = [f.src.is_some(), f.text.is_some(), f.dir, f.link.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("needs exactly one of `src`, `text`, `dir`, `link`".into());
    }
    if f.mode.is_some_and(|m| m > 0o7777) {
        return Err("mode must be at most 0o7777".into());
    }
    if let Some(target) = f.link {
        if f.mode.is_some() || f.config {
            return Err("a link takes no `mode` or `config`".into());
        }
        return Ok(FileSpec::Symlink { target });
    }
    if f.dir {
        if f.config {
            return Err("a directory cannot be `config`".into());
        }
        return Ok(FileSpec::Dir {
            mode: f.mode.unwrap_or(0o755),
        });
    }
    let content = match (f.src, f.text) {
        (Some(src), _) => {
            let src_path: PathBuf = files_dir.join(&src);
            fs_err::read(&src_path)?
        }
        (_, Some(text)) => text.into_bytes(),
        _ => unreachable!("checked above"),
    };
    Ok(FileSpec::File {
        content,
        mode: f.mode.unwrap_or(0o644),
        config: f.config,
    })
}

impl std::str::FromStr for Dep {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        match parts.as_slice() {
            [name] => Ok(Dep {
                name: (*name).to_string(),
                constraint: None,
            }),
            [name, op, version] => {
                let op = match *op {
                    "<" => Op::Lt,
                    "<=" => Op::Le,
                    "=" => Op::Eq,
                    ">=" => Op::Ge,
                    ">" => Op::Gt,
                    other => return Err(format!("dependency {s:?}: unknown operator {other:?}")),
                };
                Ok(Dep {
                    name: (*name).to_string(),
                    constraint: Some((op, (*version).to_string())),
                })
            }
            _ => Err(format!(
                "dependency {s:?}: expected `name` or `name OP version`"
            )),
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            let op = match op {
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Eq => "=",
                Op::Ge => ">=",
                Op::Gt => ">",
            };
            write!(f, " {op} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(toml_text: &str, expect: &str) {
        let err = DistroSpec::parse(toml_text, Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expect),
            "error {err:?} does not contain {expect:?}"
        );
    }

    const HEAD: &str = "[distro]\nsource_date_epoch = 1\nbuild_host = \"h\"\nvendor = \"v\"\npackager = \"p\"\nrelease = \"1\"\n";

    #[test]
    fn dependency_syntax() {
        let d: Dep = "fixture-lib >= 1.2".parse().unwrap();
        assert_eq!(d.constraint, Some((Op::Ge, "1.2".into())));
        assert_eq!(d.to_string(), "fixture-lib >= 1.2");
        assert!("a >> 1".parse::<Dep>().is_err());
        assert!("a >=".parse::<Dep>().is_err());
    }

    #[test]
    fn invalid_specs_are_rejected() {
        check_err(
            &format!(
                "{HEAD}[[package]]\nname=\"a\"\narch=\"x86_64\"\nlicense=\"l\"\nsummary=\"s\"\n"
            ),
            "needs `version`",
        );
        check_err(
            &format!(
                "{HEAD}[[package]]\nname=\"a\"\nversion=\"1\"\narch=\"x86_64\"\nlicense=\"l\"\nsummary=\"s\"\n[package.files]\n\"/x\" = {{ dir = true, text = \"a\" }}\n"
            ),
            "exactly one of",
        );
        check_err(
            &format!(
                "{HEAD}[[package]]\nname=\"a\"\nversion=\"1\"\narch=\"x86_64\"\nlicense=\"l\"\nsummary=\"s\"\n[package.files]\n\"x\" = {{ dir = true }}\n"
            ),
            "absolute",
        );
        check_err(
            &format!(
                "{HEAD}[[package]]\nname=\"a\"\nversion=\"1\"\narch=\"ppc\"\nlicense=\"l\"\nsummary=\"s\"\n"
            ),
            "unknown arch",
        );
        check_err(
            &format!(
                "{HEAD}[[package]]\nname=\"a\"\nversion=\"1\"\narch=\"noarch\"\nlicense=\"l\"\nsummary=\"s\"\nbogus=1\n"
            ),
            "unknown field",
        );
    }

    #[test]
    fn the_real_package_list_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/distro");
        let spec = DistroSpec::load(&dir).unwrap();
        let names: Vec<&str> = spec.packages.iter().map(|p| p.name.as_str()).collect();
        for wanted in [
            "kernel",
            "busybox",
            "filesystem",
            "setup",
            "nestos-release",
            "nosa-mini-dracut",
            "fixture-app",
        ] {
            assert!(
                names.contains(&wanted),
                "{wanted} missing from packages.toml"
            );
        }
    }
}
