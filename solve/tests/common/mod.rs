//! Shared test helpers: repository directories made from the fixture distro or from packages
//! built here with the `rpm` crate and createrepo_c, and a reference run of Debian's dnf.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use nosa_solve::{Lock, RepoConfig, RepoData, Request, Resolution, ResolveError, resolve};

use nosa_testkit::need;

/// A repo-sync style tree in `dest` from an rpm-md repository at `repo`: `repomd.xml`,
/// `repodata/*`, `repo.json`.
pub fn stage_repo(repo: &Path, dest: &Path, config: &RepoConfig) {
    fs_err::create_dir_all(dest.join("repodata")).unwrap();
    for e in fs_err::read_dir(repo.join("repodata")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "repomd.xml" {
            fs_err::copy(e.path(), dest.join("repomd.xml")).unwrap();
        } else {
            fs_err::copy(e.path(), dest.join("repodata").join(&name)).unwrap();
        }
    }
    fs_err::write(
        dest.join("repo.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
}

/// A repo.json for `id`.
pub fn config(id: &str, baseurl: &Path) -> RepoConfig {
    RepoConfig {
        id: id.into(),
        arch: "x86_64".into(),
        baseurl: vec![format!("file://{}", baseurl.display())],
        priority: 99,
        cost: 1000,
        exclude: vec![],
        includepkgs: vec![],
    }
}

/// A request for `pkgs` on x86_64 with defaults (recommends on).
pub fn request(pkgs: &[&str]) -> Request {
    Request {
        arch: "x86_64".into(),
        packages: pkgs.iter().map(|s| s.to_string()).collect(),
        exclude_packages: vec![],
        recommends: true,
        locks: Default::default(),
        priorities: Default::default(),
        overrides: Default::default(),
    }
}

/// Loads staged repositories and resolves.
pub fn run(req: &Request, dirs: &[&Path]) -> Result<Resolution, ResolveError> {
    let repos: Vec<RepoData> = dirs
        .iter()
        .map(|d| RepoData::from_dir(d).unwrap())
        .collect();
    resolve(req, &repos)
}

/// The NEVRA set of a resolution.
pub fn nevras(r: &Resolution) -> BTreeSet<String> {
    r.packages.iter().map(|p| p.nevra.clone()).collect()
}

/// A lock from an evra string.
pub fn lock(evra: &str) -> Lock {
    Lock::from_evra(evra)
}

/// A package to build for a test repository.
#[derive(Debug, Clone, Default)]
pub struct Pkg {
    pub name: &'static str,
    pub version: &'static str,
    pub arch: &'static str,
    pub requires: Vec<rpm::Dependency>,
    pub provides: Vec<rpm::Dependency>,
    pub conflicts: Vec<rpm::Dependency>,
    pub obsoletes: Vec<rpm::Dependency>,
    pub recommends: Vec<rpm::Dependency>,
    pub files: Vec<&'static str>,
}

/// `name-version-1.noarch` with nothing else.
pub fn pkg(name: &'static str, version: &'static str) -> Pkg {
    Pkg {
        name,
        version,
        arch: "noarch",
        ..Default::default()
    }
}

/// Builds `pkgs` with the `rpm` crate into `dir/Packages` and runs createrepo_c on `dir`.
pub fn build_repo(dir: &Path, pkgs: &[Pkg]) {
    need("createrepo_c", "createrepo-c");
    fs_err::create_dir_all(dir.join("Packages")).unwrap();
    for p in pkgs {
        let mut b = rpm::PackageBuilder::new(p.name, p.version, "MIT", p.arch, "test package");
        b.using_config(rpm::BuildConfig::v4().source_date(1_700_000_000))
            .release("1")
            .description("test package");
        for d in &p.requires {
            b.requires(d.clone());
        }
        for d in &p.provides {
            b.provides(d.clone());
        }
        for d in &p.conflicts {
            b.conflicts(d.clone());
        }
        for d in &p.obsoletes {
            b.obsoletes(d.clone());
        }
        for d in &p.recommends {
            b.recommends(d.clone());
        }
        for f in &p.files {
            b.with_file_contents("x\n", rpm::FileOptions::new(*f))
                .unwrap();
        }
        let built = b.build().unwrap();
        let path = dir
            .join("Packages")
            .join(format!("{}-{}-1.{}.rpm", p.name, p.version, p.arch));
        built.write_file(&path).unwrap();
    }
    let st = Command::new("createrepo_c")
        .args(["--quiet", "--no-database", "--workers", "1"])
        .args(["--revision=1700000000", "--set-timestamp-to-revision"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "createrepo_c failed");
}

/// What Debian's dnf would install for `pkgs` from the rpm-md repositories `repos` (id, path):
/// parsed from `dnf -v --assumeno install`'s `---> Package NAME.ARCH [E:]V-R will be installed`
/// lines. `Err` holds dnf's output when it finds no solution.
pub fn dnf_install(
    repos: &[(&str, &Path)],
    pkgs: &[&str],
    weak_deps: bool,
    extra: &[&str],
) -> Result<BTreeSet<String>, String> {
    need("dnf", "dnf");
    let root = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("dnf");
    cmd.arg("-v")
        .arg(format!("--installroot={}", root.path().display()))
        .arg("--releasever=1")
        .arg("--forcearch=x86_64")
        .arg("--setopt=reposdir=/dev/null")
        .arg(format!("--setopt=cachedir={}/cache", root.path().display()))
        .arg(format!(
            "--setopt=install_weak_deps={}",
            if weak_deps { "True" } else { "False" }
        ))
        .arg("--setopt=best=True")
        .arg("--assumeno");
    for (id, path) in repos {
        cmd.arg(format!("--repofrompath={id},file://{}", path.display()))
            .arg(format!("--setopt={id}.gpgcheck=0"));
    }
    cmd.args(extra);
    cmd.arg("install").args(pkgs);
    let out = cmd.output().expect("run dnf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("---> Package ") else {
            continue;
        };
        let Some(rest) = rest.strip_suffix(" will be installed") else {
            continue;
        };
        let (na, evr) = rest.split_once(' ').expect("NAME.ARCH EVR");
        let (name, arch) = na.rsplit_once('.').expect("NAME.ARCH");
        set.insert(format!("{name}-{evr}.{arch}"));
    }
    if set.is_empty() || text.contains("Problem") {
        return Err(text);
    }
    Ok(set)
}
