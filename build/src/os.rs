//! Building the OS: the one path that `nosa build`, `build-fast`, `buildextend-*` and
//! `nosa graph build` (with OS targets) take.
//!
//! 1. The composed trees (`ostree-tree:<arch>`, after resolve and the package nodes).
//! 2. The version: rpm-ostree's input hash per arch (the tree and the commit's settings, not
//!    the version) is compared with the latest build's; if every arch's is unchanged, the
//!    latest build's id, version, timestamp and parent are kept (same commit key: cached).
//!    Otherwise the next `<automatic-version-prefix>.<n>`, or the version asked for, with the
//!    previous build of the same ref as parent.
//! 3. The commits, the OCI archives and whatever else was asked for, with those versions.
//! 4. The record: `builds/<id>/<arch>/` through [`BuildsDir`], and for a new build the index
//!    and `builds/latest`.

use std::collections::BTreeMap;
use std::path::Path;

use nosa_cache::time::rfc3339;
use nosa_cache::{Digest, EntryKind, Materialize, Tree};
use nosa_commit::CommitRecord;
use nosa_config::BuildDate;
use nosa_engine::{BuildOptions, BuildReport, BuildState, Good, Observer, Planned};

use crate::builds::{BuildsDir, COMMIT_DIR, ImageFile, Meta};
use crate::expand::{CommitVersion, IMAGE_TARGETS, commit_rule};
use crate::staged::{merge, staged_build};
use crate::{Error, Session, ids};

/// What to build beyond the commit and the OCI archive, and how.
#[derive(Clone, Debug, Default)]
pub struct OsRequest {
    /// More target names or node ids (`qemu`, `metal`, `step:x`, ...).
    pub targets: Vec<String>,
    /// Run the targets' own nodes even if cached (the compose trees).
    pub force: bool,
    /// The build's version, instead of the next automatic one (always a new build).
    pub version: Option<String>,
    /// `build-fast`: refuse if any package node would run.
    pub fast: bool,
    /// Seconds since the epoch for a new build (`SOURCE_DATE_EPOCH`, else now).
    pub now: u64,
}

/// The build an OS build made or kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The build id.
    pub id: String,
    /// Whether it is a new build (else the latest build's inputs were unchanged).
    pub new: bool,
}

impl Recorded {
    /// The line the command line prints on stderr about it.
    pub fn message(&self) -> String {
        if self.new {
            format!("new build {}", self.id)
        } else {
            format!(
                "unchanged: the input hash (tree and commit settings) equals build {}'s, no new build id",
                self.id
            )
        }
    }
}

/// The outcome of [`build_os`].
#[derive(Debug)]
pub struct OsBuild {
    /// Every node of the build, once.
    pub report: BuildReport,
    /// The recorded build: `None` when a node failed.
    pub recorded: Option<Recorded>,
}

/// The time a new build is stamped with: `SOURCE_DATE_EPOCH`, else now.
pub fn now() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// Whether building `names` in `s` builds the OS: some selected node exists only for a
/// versioned commit (the commit, the OCI archive, images, kola tests).
pub fn selects_os(s: &Session, names: &[String]) -> bool {
    let Ok(targets) = s.targets(names) else {
        return false;
    };
    s.ws.graph
        .closure(&targets)
        .into_iter()
        .any(|i| ids::VERSIONED_KINDS.contains(&ids::kind(&s.ws.graph.node(i).id)))
}

fn good(state: &BuildState, id: &str) -> Option<Good> {
    state.nodes.get(id).and_then(|n| n.good)
}

/// Builds the OS of `s` (see the module doc).
pub fn build_os(
    s: &mut Session,
    req: &OsRequest,
    opts: &BuildOptions,
    obs: &mut dyn Observer,
) -> Result<OsBuild, Error> {
    if s.ws.configs.is_empty() {
        return Err(Error::usage(
            "this workdir has no [nestos] configuration: nothing to build",
            "add a [nestos] table naming a nestos-config, or run `nosa init`",
        ));
    }
    if req.fast {
        refuse_package_nodes(s)?;
    }
    let builds = s.builds();
    let arches = s.arches();

    // 1. The composed trees.
    let tree = staged_build(s, &["tree".to_string()], opts, req.force, obs)?;
    if !tree.ok() {
        return Ok(OsBuild {
            report: tree,
            recorded: None,
        });
    }

    // 2. The version.
    let input_hashes = input_hashes(s);
    let latest = builds.latest();
    let reuse = latest.filter(|id| {
        req.version.is_none()
            && arches.iter().all(|arch| {
                builds.meta(id, arch).is_some_and(|m| {
                    Some(m.inputhash) == input_hashes.get(arch).map(|d| d.to_hex())
                })
            })
    });
    let (version, new) = match reuse {
        Some(id) => (id, false),
        None => match &req.version {
            Some(v) => (v.clone(), true),
            None => (next_version(s, &builds, req.now)?, true),
        },
    };
    for (i, arch) in arches.iter().enumerate() {
        let commit = if new {
            let ref_name = s.ws.configs[i]
                .treefile
                .ref_name
                .clone()
                .unwrap_or_default();
            CommitVersion {
                version: version.clone(),
                timestamp: req.now,
                parent: builds.previous_commit(&version, arch, &ref_name),
            }
        } else {
            // The kept build's commit, as it was made (same key, so it stays cached).
            let rec = builds.commit_record(&version, arch);
            CommitVersion {
                version: version.clone(),
                timestamp: rec.as_ref().map_or(req.now, |r| r.timestamp),
                parent: rec.and_then(|r| r.parent),
            }
        };
        s.versions.insert(arch.clone(), commit);
    }

    // 3. The commits and whatever else was asked for.
    let mut names = vec!["ostree".to_string(), "oci".to_string()];
    names.extend(req.targets.iter().cloned());
    let mut opts = opts.clone();
    // Same build number as the compose above: `why` keeps what ran there.
    opts.continue_build = true;
    let rest = staged_build(s, &names, &opts, false, obs)?;
    let report = merge(tree, rest);
    if !report.ok() {
        return Ok(OsBuild {
            report,
            recorded: None,
        });
    }

    // 4. The record.
    let t_record = std::time::Instant::now();
    record(s, &builds, &report, &version, &input_hashes, req.now, new)?;
    let state = s.engine.state();
    let keys = report
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.clone(), good(&state, &n.id)?.key)))
        .collect();
    builds.add_node_keys(&version, keys)?;
    if new {
        builds.record_new(&version, &arches, &rfc3339(req.now))?;
    }
    nosa_engine::timing("build: record builds/", t_record);
    if let Some(draft) = &opts.witness {
        // Only a kept build is a no-op; a new one wrote a new record.
        if new || req.force {
            draft.spoil();
        } else {
            crate::noop::observe_record(s, draft, &version);
        }
    }
    Ok(OsBuild {
        report,
        recorded: Some(Recorded { id: version, new }),
    })
}

/// `build-fast`'s check: nothing of the package half of the graph may run.
fn refuse_package_nodes(s: &mut Session) -> Result<(), Error> {
    s.expand_current()?;
    let targets = s.targets(&["tree".to_string()])?;
    let plan = s.engine.plan(&s.ws.graph, &targets)?;
    let pkg: Vec<&str> = plan
        .iter()
        .filter(|e| !matches!(e.planned, Planned::UpToDate))
        .map(|e| e.id.as_str())
        .filter(|id| ids::PACKAGE_KINDS.contains(&ids::kind(id)))
        .collect();
    if pkg.is_empty() {
        return Ok(());
    }
    Err(Error::refused(
        format!("build-fast would rerun package nodes: {}", pkg.join(", ")),
        "run `nosa build` (or `nosa fetch` first): build-fast only reruns overlay and override nodes and what follows them",
    ))
}

/// rpm-ostree's input hash per arch, from the composed trees just built.
fn input_hashes(s: &Session) -> BTreeMap<String, Digest> {
    let state = s.engine.state();
    // The version does not enter the input hash.
    let any = CommitVersion {
        version: String::new(),
        timestamp: 0,
        parent: None,
    };
    s.ws.configs
        .iter()
        .filter_map(|c| {
            let arch = c.arch.to_string();
            let tree = good(&state, &ids::ostree_tree(&arch))?.output;
            Some((arch, commit_rule(c, &any).input_hash(&tree)))
        })
        .collect()
}

/// `<automatic-version-prefix>.<n>` with `<date:...>` expanded and `n` one more than the
/// highest existing build with that prefix (as rpm-ostree numbers them).
fn next_version(s: &Session, builds: &BuildsDir, now: u64) -> Result<String, Error> {
    let c = &s.ws.configs[0];
    let date = BuildDate::from_unix(now as i64);
    let prefix = match c.treefile.version_prefix(&date) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            return Err(Error::usage(
                e.to_string(),
                "fix automatic-version-prefix in the treefile",
            ));
        }
        None => format!("{:04}{:02}{:02}", date.year, date.month, date.day),
    };
    Ok(format!("{prefix}.{}", builds.next_serial(&prefix)))
}

/// The files of node `id`'s output whose names pass `keep`, placed under `dir` as read-only
/// hardlinks to the store (those already in place are left); returns them (path, blob, size).
fn place(
    s: &Session,
    state: &BuildState,
    id: &str,
    dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Digest, u64)>, Error> {
    let Some(g) = good(state, id) else {
        return Ok(Vec::new());
    };
    let tree = s.engine.store().get_tree(&g.tree)?;
    let entries: Vec<_> = tree
        .entries
        .into_iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }) && keep(&e.path))
        .collect();
    let files = entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { digest, size } => Some((e.path.clone(), digest, size)),
            _ => None,
        })
        .collect();
    let sub = Tree { entries };
    s.engine
        .store()
        .materialize(&sub, dir, Materialize::Readonly)?;
    Ok(files)
}

/// Writes `builds/<version>/<arch>/` for every arch from the state the build left.
fn record(
    s: &Session,
    builds: &BuildsDir,
    report: &BuildReport,
    version: &str,
    input_hashes: &BTreeMap<String, Digest>,
    now: u64,
    new: bool,
) -> Result<(), Error> {
    let state = s.engine.state();
    for c in &s.ws.configs {
        let arch = c.arch.to_string();
        let dir = builds.arch_dir(version, &arch);
        fs_err::create_dir_all(&dir)?;
        let commit_id = ids::ostree_commit(&arch);
        let g = good(&state, &commit_id)
            .ok_or_else(|| std::io::Error::other(format!("{commit_id} has no output")))?;
        let tree = s.engine.store().get_tree(&g.tree)?;
        let commit_dir = dir.join(COMMIT_DIR);
        let commit: CommitRecord = s
            .output_file(&state, &commit_id, "commit.json")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("{commit_id}: no readable commit.json"))
            })?;
        let lock = format!("manifest-lock.generated.{arch}.json");
        if let Some(bytes) = s.output_file(&state, &ids::resolve(&arch), &lock) {
            crate::builds::write_if_changed(&dir.join(&lock), &bytes)?;
        }
        // Images: this build's, plus those recorded before for the same build id.
        let old = builds.meta(version, &arch).unwrap_or_default();
        let build_timestamp = if new || old.build_timestamp.is_empty() {
            rfc3339(now)
        } else {
            old.build_timestamp.clone()
        };
        let mut images = old.images;
        // (meta.json key, path, blob, size) of each artifact placed.
        let mut placed = Vec::new();
        for fmt in IMAGE_TARGETS {
            let id = ids::image(&arch, fmt);
            if !report.nodes.iter().any(|n| n.id == id) {
                continue;
            }
            let disk = |p: &str| p.ends_with(".qcow2") || p.ends_with(".raw");
            for (path, digest, size) in place(s, &state, &id, &dir, disk)? {
                placed.push((fmt.to_string(), path, digest, size));
            }
        }
        // The live artifacts, under nestos-assembler's meta.json keys.
        let live = ids::live(&arch);
        if report.nodes.iter().any(|n| n.id == live) {
            let key = |p: &str| {
                if p.ends_with(".iso") {
                    Some("live-iso")
                } else if p.contains("-live-kernel-") {
                    Some("live-kernel")
                } else if p.contains("-live-initramfs.") {
                    Some("live-initramfs")
                } else if p.contains("-live-rootfs.") {
                    Some("live-rootfs")
                } else {
                    None
                }
            };
            for (path, digest, size) in place(s, &state, &live, &dir, |p| key(p).is_some())? {
                let k = key(&path).expect("placed by its key");
                placed.push((k.to_string(), path, digest, size));
            }
        }
        // `[live] live-ignition`'s customized copies (nosa's keys: v1 has none for them).
        let custom = ids::live_custom(&arch);
        if report.nodes.iter().any(|n| n.id == custom) {
            for (path, digest, size) in place(s, &state, &custom, &dir, |_| true)? {
                let k = if path.ends_with(".iso") {
                    "live-iso-custom"
                } else {
                    "live-initramfs-custom"
                };
                placed.push((k.to_string(), path, digest, size));
            }
        }
        let oci = ids::oci(&arch);
        for (path, digest, size) in place(s, &state, &oci, &dir, |_| true)? {
            if path.ends_with(".ociarchive") {
                placed.push(("ostree".to_string(), path, digest, size));
            }
        }
        // The commit's repository and each new artifact's SHA-256 at once: they are
        // independent, and together most of the record's time.
        let store = s.engine.store();
        let (linked, sums) = std::thread::scope(|sc| {
            let linked = sc.spawn(|| store.materialize(&tree, &commit_dir, Materialize::Hardlink));
            let sums: Vec<_> = placed
                .iter()
                .map(|(_, _, digest, _)| sc.spawn(move || store.sha256_of(digest)))
                .collect();
            let sums: Vec<_> = sums
                .into_iter()
                .map(|h| h.join().expect("sha256 thread"))
                .collect();
            (linked.join().expect("materialize thread"), sums)
        });
        linked?;
        for ((key, path, _, size), sha256) in placed.into_iter().zip(sums) {
            let sha256 = sha256?;
            // An image `nosa compress` compressed since it was recorded: its entry stays and
            // the copy placed again goes (else meta.json would name the copy and leave the
            // compressed file unrecorded).
            if let Some(old) = images.get(&key)
                && old.uncompressed_sha256.as_deref() == Some(sha256.as_str())
                && old.path != path
                && dir.join(&old.path).is_file()
            {
                fs_err::remove_file(dir.join(&path))?;
                continue;
            }
            // What was set on the entry by hand (`nosa meta --set`) stays when the image is
            // placed again for the same build.
            let (skip_compression, extra) = images
                .get(&key)
                .map(|old| (old.skip_compression, old.extra.clone()))
                .unwrap_or_default();
            // The live artifacts are never compressed (nestos-assembler marks them so).
            let skip_compression = skip_compression.or(key.starts_with("live-").then_some(true));
            images.insert(
                key,
                ImageFile {
                    path,
                    sha256,
                    size,
                    skip_compression,
                    extra,
                    ..ImageFile::default()
                },
            );
        }
        let name = c.os_name().to_string();
        let mut extra = old.extra;
        // The config's git commit and whether it had uncommitted changes, as the build was
        // made (coreos-assembler's keys; a config outside git records neither). A build
        // recorded again keeps them: git runs once per new build.
        if new {
            extra.remove(CONFIG_GITREV);
            extra.remove(CONFIG_DIRTY);
            if let Some((rev, dirty)) = config_git(&c.dir) {
                extra.insert(CONFIG_GITREV.into(), rev.into());
                extra.insert(CONFIG_DIRTY.into(), dirty.to_string().into());
            }
        }
        let meta = Meta {
            buildid: version.to_string(),
            name,
            ref_name: c.treefile.ref_name.clone().unwrap_or_default(),
            basearch: arch.clone(),
            build_timestamp,
            ostree_commit: commit.checksum.clone(),
            ostree_content_checksum: commit.content_checksum.clone(),
            ostree_timestamp: rfc3339(commit.timestamp),
            ostree_version: version.to_string(),
            inputhash: input_hashes
                .get(&arch)
                .map(|d| d.to_hex())
                .unwrap_or_default(),
            images,
            extra,
        };
        builds.write_meta(&meta, &commit.metadata)?;
    }
    Ok(())
}

/// meta.json's key for the config's git commit.
pub const CONFIG_GITREV: &str = "coreos-assembler.config-gitrev";
/// meta.json's key for whether the config had uncommitted changes (`"true"`/`"false"`).
pub const CONFIG_DIRTY: &str = "coreos-assembler.config-dirty";

/// The config directory's git commit (`git describe --tags --always`, so a tag when there is
/// one) and whether tracked files under it differ from that commit; `None` outside git.
fn config_git(dir: &Path) -> Option<(String, bool)> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let rev = git(&["describe", "--tags", "--always", "--abbrev=42"])?;
    let status = git(&["status", "--porcelain", "--untracked-files=no", "--", "."])?;
    Some((rev, !status.is_empty()))
}
