//! `fixture-distro`: turns packages.toml (+ Debian packages) into RPMs and an rpm-md repository, skipping the work when the stamp is current.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::deb::{self, Deb};
use crate::payload::{self, Payload};
use crate::rpmbuild::{BuiltRpm, RpmMeta, build_rpm};
use crate::spec::{DebKind, Dep, DistroSettings, DistroSpec, PackageSpec};
use crate::tools::{self, run};
use crate::{busybox, closure, kernel, stamp};

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// fixtures/distro: packages.toml and files/.
    pub spec_dir: PathBuf,
    /// Output root: repo/<arch>/, manifest.json, stamp.
    pub out: PathBuf,
    /// Download cache for .debs (reused across runs and output dirs).
    pub debs: PathBuf,
    pub arch: String,
    /// Rebuild even if the stamp says the output is current.
    pub force: bool,
    /// Only the packages that need no Debian package (tests, quick checks).
    pub small_only: bool,
}

/// One package of the result, as recorded in manifest.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestPackage {
    pub name: String,
    pub nvra: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub from_deb: Option<String>,
}

/// fixtures/out/manifest.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub arch: String,
    pub inputs_digest: String,
    pub repo: String,
    pub packages: Vec<ManifestPackage>,
}

/// The outcome of `generate`.
#[derive(Debug)]
pub struct Report {
    pub manifest: Manifest,
    pub up_to_date: bool,
    pub downloaded: usize,
}

/// Where the repository for `arch` lives below `out`.
pub fn repo_dir(out: &Path, arch: &str) -> PathBuf {
    out.join("repo").join(arch)
}

/// Builds (or finds current) the fixture distro described by `opts`.
pub fn generate(opts: &Options) -> Result<Report> {
    if opts.arch != "x86_64" {
        return Err(format!(
            "--arch {}: only x86_64 is supported (the Debian inputs are amd64 and the busybox applet list comes from running the binary)",
            opts.arch
        )
        .into());
    }
    let spec = DistroSpec::load(&opts.spec_dir)?;
    // One generation per output directory at a time (a second one waits).
    fs_err::create_dir_all(&opts.out)?;
    let lock = fs_err::File::create(opts.out.join(".lock"))?;
    lock.file()
        .lock()
        .map_err(|e| format!("cannot lock {}: {e}", opts.out.join(".lock").display()))?;
    let packages: Vec<PackageSpec> = spec
        .packages
        .iter()
        .filter(|p| p.arch == opts.arch || p.arch == "noarch")
        .filter(|p| !opts.small_only || p.deb.is_none())
        .cloned()
        .collect();
    let needs_debs = packages.iter().any(|p| p.deb.is_some());
    tools::require(&[("createrepo_c", "createrepo-c")])?;
    if needs_debs {
        tools::require(tools::TOOLS)?;
    }

    // Resolve and fetch the Debian inputs (cached by name_version_arch.deb).
    let deb_arch = deb::debian_arch(&opts.arch)?;
    let wanted: Vec<deb::Wanted> = packages
        .iter()
        .filter_map(|p| p.deb.as_ref())
        .map(|src| deb::Wanted {
            name: src.name.clone(),
            follow_prefix: (src.kind == DebKind::Kernel).then(|| "linux-image-".to_string()),
        })
        .collect();
    let mut resolved = if wanted.is_empty() {
        Vec::new()
    } else {
        deb::resolve_all(&wanted, deb_arch, &opts.debs)?
    }
    .into_iter();
    let mut debs: Vec<Option<Deb>> = Vec::new();
    let mut downloaded = 0;
    for p in &packages {
        if p.deb.is_none() {
            debs.push(None);
            continue;
        }
        let d = resolved.next().ok_or("deb resolution count mismatch")?;
        if deb::ensure_downloaded(&d)? {
            downloaded += 1;
        }
        debs.push(Some(d));
    }
    // The Debian closure: resolved by apt, downloaded in one go, control data read.
    let closure_debs = match (&spec.closure, opts.small_only) {
        (Some(c), false) => closure::resolve(c, deb_arch, &opts.debs)?,
        _ => Vec::new(),
    };
    downloaded += deb::ensure_downloaded_all(&closure_debs, &opts.debs)?;
    let mut all_debs: Vec<Deb> = debs.iter().flatten().cloned().collect();
    all_debs.extend(closure_debs.iter().cloned());
    let selection = if opts.small_only { "small" } else { "all" };
    let digest = stamp::inputs_digest(&opts.spec_dir, &opts.arch, selection, &all_debs)?;

    let manifest_path = opts.out.join("manifest.json");
    if !opts.force
        && stamp::read(&opts.out).as_deref() == Some(digest.as_str())
        && repo_dir(&opts.out, &opts.arch)
            .join("repodata/repomd.xml")
            .is_file()
        && let Ok(text) = fs_err::read_to_string(&manifest_path)
        && let Ok(manifest) = serde_json::from_str::<Manifest>(&text)
    {
        return Ok(Report {
            manifest,
            up_to_date: true,
            downloaded,
        });
    }

    // Build everything in a staging directory, then swap it in.
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&opts.out)?;
    let staged_repo = repo_dir(staging.path(), &opts.arch);
    let packages_dir = staged_repo.join("Packages");
    fs_err::create_dir_all(&packages_dir)?;
    let work = staging.path().join("work");

    let controls: Vec<closure::Control> = closure_debs
        .iter()
        .map(|d| closure::Control::read(d, &work))
        .collect::<Result<_>>()?;
    // What the repository provides, to pick among a dependency's alternatives.
    let mut available = closure::Available::new();
    for c in &controls {
        available.extend(c.provided());
    }
    for p in &packages {
        available.insert(p.name.clone());
        available.extend(p.provides.iter().map(|d| d.name.clone()));
    }
    let closure_ctx = ClosureContext {
        spec: spec.closure.clone().unwrap_or_default(),
        alternatives: closure::choose_alternatives(&controls),
        essential: controls
            .iter()
            .filter(|c| c.essential())
            .map(|c| c.deb.name.clone())
            .collect(),
        available,
    };
    let mut jobs: Vec<(usize, Job<'_>)> = packages
        .iter()
        .zip(&debs)
        .map(|(p, d)| Job::Spec(p, d.as_ref()))
        .chain(controls.iter().map(Job::Closure))
        .enumerate()
        .collect();
    let n_jobs = jobs.len();
    // Biggest first (popped from the end): the kernel and grub dominate the run time.
    let weight = |j: &Job<'_>| match j {
        Job::Spec(p, _) => match &p.deb {
            Some(d) if d.kind == DebKind::Kernel => 3,
            Some(_) => 2,
            None => 0,
        },
        Job::Closure(c) => u64::from(c.deb.size().unwrap_or(0) > 1 << 20) + 1,
    };
    jobs.sort_by_key(|(i, j)| (weight(j), std::cmp::Reverse(*i)));
    let queue = Mutex::new(jobs);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").pop();
                    let Some((i, job)) = next else { break };
                    let dir = work.join(i.to_string());
                    let r = match job {
                        Job::Spec(p, d) => build_one(&spec.settings, p, d, &dir, &packages_dir),
                        Job::Closure(c) => {
                            build_closure_one(&spec.settings, &closure_ctx, c, &dir, &packages_dir)
                        }
                    };
                    results.lock().expect("results lock").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    assert_eq!(results.len(), n_jobs, "every job ran");
    let names = packages
        .iter()
        .map(|p| p.name.clone())
        .chain(controls.iter().map(|c| c.deb.name.clone()));
    let mut manifest_packages = Vec::new();
    for ((_, r), name) in results.into_iter().zip(names) {
        let (built, from_deb) = r.map_err(|e| format!("package {name}: {e}"))?;
        manifest_packages.push(ManifestPackage {
            name,
            file: format!("Packages/{}.rpm", built.nvra),
            nvra: built.nvra,
            size: built.size,
            sha256: built.sha256,
            from_deb,
        });
    }
    if work.exists() {
        fs_err::remove_dir_all(&work)?;
    }

    createrepo(&staged_repo, spec.settings.source_date_epoch)?;
    // repomd.xml.asc beside repomd.xml, the public key at the top of the repository.
    let key = crate::sign::FixtureKey::new(spec.settings.source_date_epoch)?;
    let repomd = staged_repo.join("repodata/repomd.xml");
    fs_err::write(
        repomd.with_extension("xml.asc"),
        key.detached(&fs_err::read(&repomd)?)?,
    )?;
    fs_err::write(
        staging.path().join("repo").join(crate::sign::KEY_FILE),
        key.public_armored()?,
    )?;

    let manifest = Manifest {
        arch: opts.arch.clone(),
        inputs_digest: digest.clone(),
        repo: format!("repo/{}", opts.arch),
        packages: manifest_packages,
    };
    // Swap in: old stamp first (a crash in between leaves no trusted stamp).
    let _ = fs_err::remove_file(opts.out.join("stamp"));
    let final_repo = opts.out.join("repo");
    if final_repo.exists() {
        fs_err::remove_dir_all(&final_repo)?;
    }
    fs_err::rename(staging.path().join("repo"), &final_repo)?;
    fs_err::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    stamp::write(&opts.out, &digest)?;
    Ok(Report {
        manifest,
        up_to_date: false,
        downloaded,
    })
}

/// One RPM to build: a packages.toml package (with its .deb, if any), or a Debian closure
/// package.
enum Job<'a> {
    Spec(&'a PackageSpec, Option<&'a Deb>),
    Closure(&'a closure::Control),
}

/// What every closure package's translation needs to know about the others.
struct ClosureContext {
    spec: crate::spec::ClosureSpec,
    /// What the repository provides (to pick a dependency's alternative).
    available: closure::Available,
    /// Alternatives link -> (path, the package that ships it).
    alternatives: std::collections::BTreeMap<String, (String, String)>,
    /// The closure's Essential packages.
    essential: Vec<String>,
}

/// Builds one closure package; returns the RPM and the `name=version` of its .deb.
fn build_closure_one(
    settings: &DistroSettings,
    cx: &ClosureContext,
    c: &closure::Control,
    work: &Path,
    out_dir: &Path,
) -> Result<(BuiltRpm, Option<String>)> {
    let started = Instant::now();
    let links = cx
        .alternatives
        .iter()
        .filter(|(_, (_, pkg))| *pkg == c.deb.name)
        .map(|(link, (path, _))| (link.clone(), path.clone()))
        .collect();
    let (meta, payload) =
        closure::package(&cx.spec, c, &cx.available, &links, &cx.essential, work)?;
    let built = build_rpm(settings, &meta, &payload, out_dir)?;
    eprintln!(
        "fixture-distro: built {} from Debian's {} ({} files, {} KiB) in {:.1}s",
        built.nvra,
        c.deb.name,
        payload.len(),
        payload::content_size(&payload) / 1024,
        started.elapsed().as_secs_f64()
    );
    if work.exists() {
        fs_err::remove_dir_all(work)?;
    }
    Ok((built, Some(format!("{}={}", c.deb.name, c.deb.version))))
}

/// Builds one package; returns the RPM and the `name=version` of its .deb.
fn build_one(
    settings: &DistroSettings,
    p: &PackageSpec,
    deb: Option<&Deb>,
    work: &Path,
    out_dir: &Path,
) -> Result<(BuiltRpm, Option<String>)> {
    let started = Instant::now();
    let mut payload = Payload::new();
    let mut provides = p.provides.clone();
    let (mut version, mut release) = (p.version.clone(), p.release.clone());
    let mut description = format!(
        "{}.\n\nPart of the nosa fixture distro (fixtures/distro/packages.toml).",
        p.summary
    );
    let mut url = None;
    if let (Some(src), Some(deb)) = (&p.deb, deb) {
        let unpacked = work.join("unpacked");
        deb::unpack(deb, &unpacked)?;
        match src.kind {
            DebKind::Copy => {
                for path in &src.copy {
                    payload::copy_tree(&mut payload, &unpacked, path)?;
                }
            }
            DebKind::Busybox => {
                payload = busybox::busybox_payload(&unpacked, &src.exclude_applets)?
            }
            DebKind::Kernel => {
                let (kver, kpayload) = kernel::kernel_payload(&unpacked, &src.modules, work)?;
                payload = kpayload;
                provides.push(Dep {
                    name: "kernel-uname-r".into(),
                    constraint: Some((crate::spec::Op::Eq, kver)),
                });
            }
        }
        let (v, r) = deb.rpm_version_release();
        version.get_or_insert(v);
        release.get_or_insert(r);
        description = format!(
            "{}.\n\nRepackaged from the Debian package {} {} ({}) by nosa's fixture distro generator.",
            p.summary, deb.name, deb.version, deb.arch
        );
        url = Some(format!(
            "https://packages.debian.org/search?keywords={}",
            deb.name
        ));
    }
    // Entries from packages.toml override or extend the Debian content.
    payload.extend(p.files.iter().map(|(k, v)| (k.clone(), v.clone())));
    let meta = RpmMeta {
        name: p.name.clone(),
        epoch: None,
        version: version.ok_or("no version")?,
        release: release.unwrap_or_else(|| settings.release.clone()),
        arch: p.arch.clone(),
        license: p.license.clone(),
        summary: p.summary.clone(),
        description,
        url,
        requires: p.requires.clone(),
        provides,
        conflicts: p.conflicts.clone(),
        obsoletes: p.obsoletes.clone(),
        pre: p.pre.clone(),
        post: p.post.clone(),
        posttrans: None,
    };
    let built = build_rpm(settings, &meta, &payload, out_dir)?;
    eprintln!(
        "fixture-distro: built {} ({} files, {} KiB content -> {} KiB) in {:.1}s",
        built.nvra,
        payload.len(),
        payload::content_size(&payload) / 1024,
        built.size / 1024,
        started.elapsed().as_secs_f64()
    );
    if work.exists() {
        fs_err::remove_dir_all(work)?;
    }
    Ok((built, deb.map(|d| format!("{}={}", d.name, d.version))))
}

/// Runs createrepo_c so that the metadata is reproducible: no sqlite
/// databases, one worker, timestamps set to the revision (SOURCE_DATE_EPOCH).
fn createrepo(repo: &Path, epoch: u32) -> Result<()> {
    run(Command::new("createrepo_c")
        .args([
            "--quiet",
            "--no-database",
            "--workers",
            "1",
            "--set-timestamp-to-revision",
        ])
        .arg(format!("--revision={epoch}"))
        .arg(repo))
}
