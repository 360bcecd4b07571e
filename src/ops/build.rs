//! `nosa build`: compose and commit every configured arch, then record the build in
//! coreos-assembler's layout: `builds/<id>/<arch>/` (meta.json, commitmeta.json, the generated
//! lockfile, the commit's repository), `builds/builds.json` (newest first) and `builds/latest`.
//! A build whose input hash (the composed tree plus the commit's settings, not the version)
//! equals the latest build's keeps that build's id, version, timestamp and parent; a new
//! build's commit has the previous build of the same ref as parent.

use std::collections::BTreeMap;
use std::path::Path;

use nosa_cache::time::rfc3339;
use nosa_cache::{Digest, EntryKind, Materialize};
use nosa_config::BuildDate;
use nosa_engine::{BuildOptions, BuildState};
use nosa_rules::nestos::CommitVersion;
use serde_json::{Value as J, json};

use crate::cli::{BuildCmdArgs, Cli};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::graph::{finish_build, staged_build};
use crate::ops::{Session, read_json};
use crate::render::Progress;

/// The good output of node `id` in `state`, if any.
fn good(state: &BuildState, id: &str) -> Option<nosa_engine::Good> {
    state.nodes.get(id).and_then(|n| n.good)
}

/// Node kinds `build-fast` never reruns: the package half of the graph.
const PACKAGE_KINDS: &[&str] = &["repo-sync", "resolve", "rpm", "unpack", "rpmdb", "packages"];

/// `nosa build-fast`: `nosa build`, refusing to run if anything but the overlay/override nodes
/// and what follows them would run (nestos-assembler's build-fast reuses the previous
/// build's packages the same way; here the graph proves it).
pub fn build_fast(cli: &Cli, a: &BuildCmdArgs) -> OpResult {
    build_inner(cli, a, true)
}

/// `nosa build`.
pub fn build(cli: &Cli, a: &BuildCmdArgs) -> OpResult {
    build_inner(cli, a, false)
}

/// `nosa buildextend-<format>`: `nosa build <format>` (the OS is rebuilt only if its inputs
/// changed; the image joins the latest build when the tree is unchanged).
pub fn buildextend(cli: &Cli, a: &crate::cli::BuildextendArgs, format: &str) -> OpResult {
    let args = BuildCmdArgs {
        targets: vec![format.to_string()],
        common: a.common.clone(),
        force: false,
        version: None,
    };
    build_inner(cli, &args, false)
}

fn build_inner(cli: &Cli, a: &BuildCmdArgs, fast: bool) -> OpResult {
    let what = if fast {
        "nosa build-fast"
    } else {
        "nosa build"
    };
    let mut s = Session::open(cli, Some(what), a.common.arch.as_deref())?;
    if fast {
        s.expand_current()?;
        let targets = s.targets(&["tree".to_string()])?;
        let plan = s.engine.plan(&s.ws.graph, &targets).map_err(runtime)?;
        let pkg: Vec<&str> = plan
            .iter()
            .filter(|e| !matches!(e.planned, nosa_engine::Planned::UpToDate))
            .map(|e| e.id.as_str())
            .filter(|id| {
                PACKAGE_KINDS
                    .iter()
                    .any(|k| id.starts_with(&format!("{k}:")))
            })
            .collect();
        if !pkg.is_empty() {
            return Err(Failure::Build(Some(miette::miette!(
                help = "run `nosa build` (or `nosa fetch` first): build-fast only reruns overlay and override nodes and what follows them",
                "build-fast would rerun package nodes: {}",
                pkg.join(", ")
            ))));
        }
    }
    if s.ws.configs.is_empty() {
        return Err(Failure::Config(miette::miette!(
            help = "add a [nestos] table naming a nestos-config, or run `nosa init`",
            "this workdir has no [nestos] configuration: nothing to build"
        )));
    }
    let workdir = s.engine.workdir().to_path_buf();
    let builds = workdir.join("builds");
    let mut opts = BuildOptions::default();
    if let Some(j) = a.common.jobs {
        opts.jobs = j.max(1);
    }
    let mut progress = Progress::new(a.common.json, &workdir);

    // 1. The composed trees.
    let report = staged_build(&mut s, &["tree".to_string()], &opts, a.force, &mut progress)?;
    if !report.ok() {
        return finish_build(s, report, progress);
    }
    let arches: Vec<String> = s.ws.configs.iter().map(|c| c.arch.to_string()).collect();
    let state = s.engine.state();
    // rpm-ostree's input hash per arch: the tree and the commit's settings, not the version.
    let any = CommitVersion {
        version: String::new(),
        timestamp: 0,
        parent: None,
    };
    let input_hashes: BTreeMap<String, Digest> =
        s.ws.configs
            .iter()
            .filter_map(|c| {
                let a = c.arch.to_string();
                let tree = good(&state, &format!("ostree-tree:{a}"))?.output;
                Some((
                    a,
                    nosa_rules::nestos::commit_rule(c, &any).input_hash(&tree),
                ))
            })
            .collect();

    // 2. The version: the latest build's when every input hash is unchanged, else the next one.
    let index = read_json(&builds.join("builds.json"));
    let latest = index
        .as_ref()
        .and_then(|v| v["builds"][0]["id"].as_str().map(str::to_string));
    let reuse = latest.as_ref().filter(|id| {
        a.version.is_none()
            && arches.iter().all(|arch| {
                read_json(&builds.join(id).join(arch).join("meta.json")).is_some_and(|m| {
                    m["rpm-ostree-inputhash"].as_str()
                        == input_hashes.get(arch).map(|d| d.to_hex()).as_deref()
                })
            })
    });
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let (version, new_build) = match reuse {
        Some(id) => (id.clone(), false),
        None => match &a.version {
            Some(v) => (v.clone(), true),
            None => (next_version(&s, &builds, now)?, true),
        },
    };
    for (i, arch) in arches.iter().enumerate() {
        let commit = if new_build {
            // A new commit: now, with the previous build's commit of the same ref as parent.
            let ref_name = s.ws.configs[i].treefile.ref_name.as_deref();
            CommitVersion {
                version: version.clone(),
                timestamp: now,
                parent: previous_commit(index.as_ref(), &builds, &version, arch, ref_name),
            }
        } else {
            // The reused build's commit, as it was made (same key, so it stays cached).
            let rec =
                read_json(&builds.join(&version).join(arch).join(COMMIT_JSON)).unwrap_or_default();
            CommitVersion {
                version: version.clone(),
                timestamp: rec["timestamp"].as_u64().unwrap_or(now),
                parent: rec["parent"].as_str().map(str::to_string),
            }
        };
        s.versions.insert(arch.clone(), commit);
    }

    // 3. The commits (and whatever else was asked for).
    let mut names = vec!["ostree".to_string(), "oci".to_string()];
    names.extend(a.targets.iter().cloned());
    // Same build number as the compose above: `why` keeps what ran there.
    opts.continue_build = true;
    let second = staged_build(&mut s, &names, &opts, false, &mut progress)?;
    let mut all = report;
    let seen: std::collections::HashSet<String> = all.nodes.iter().map(|n| n.id.clone()).collect();
    all.nodes
        .extend(second.nodes.into_iter().filter(|n| !seen.contains(&n.id)));
    all.ms += second.ms;
    if !all.ok() {
        return finish_build(s, all, progress);
    }

    // 4. builds/<id>/<arch>/, from the state the builds above left (read once).
    let state = s.engine.state();
    for (i, c) in s.ws.configs.iter().enumerate() {
        let arch = arches[i].as_str();
        let dir = builds.join(&version).join(arch);
        fs_err::create_dir_all(&dir).map_err(runtime)?;
        let commit_id = format!("ostree-commit:{arch}");
        let g =
            good(&state, &commit_id).ok_or_else(|| runtime(std::io::Error::other("no commit")))?;
        let tree = s.engine.store().get_tree(&g.tree).map_err(runtime)?;
        s.engine
            .store()
            .materialize(&tree, &dir.join("ostree-commit"), Materialize::Hardlink)
            .map_err(runtime)?;
        let cj: J = s
            .output_file(&state, &commit_id, "commit.json")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(lock) = s.output_file(
            &state,
            &format!("resolve:{arch}"),
            &format!("manifest-lock.generated.{arch}.json"),
        ) {
            fs_err::write(
                dir.join(format!("manifest-lock.generated.{arch}.json")),
                lock,
            )
            .map_err(runtime)?;
        }
        let name = c
            .image
            .json
            .get("name")
            .and_then(J::as_str)
            .unwrap_or("nestos");
        // Images: this build's, plus those recorded before for the same build id.
        let mut images = read_json(&dir.join("meta.json"))
            .and_then(|m| m["images"].as_object().cloned())
            .unwrap_or_default();
        for fmt in nosa_rules::nestos::IMAGE_TARGETS {
            let id = format!("image:{arch}:{fmt}");
            if !all.nodes.iter().any(|n| n.id == id) {
                continue;
            }
            let Some(g) = good(&state, &id) else { continue };
            let tree = s.engine.store().get_tree(&g.tree).map_err(runtime)?;
            for e in &tree.entries {
                let EntryKind::File { digest, size } = e.kind else {
                    continue;
                };
                if !(e.path.ends_with(".qcow2") || e.path.ends_with(".raw")) {
                    continue;
                }
                let dest = dir.join(&e.path);
                let blob = s.engine.store().blob_path(&digest);
                let _ = fs_err::remove_file(&dest);
                if fs_err::hard_link(&blob, &dest).is_err() {
                    fs_err::copy(&blob, &dest).map_err(runtime)?;
                }
                images.insert(
                    fmt.to_string(),
                    json!({"path": e.path, "sha256": sha256_file(&dest)?, "size": size}),
                );
            }
        }
        if let Some(g) = good(&state, &format!("oci:{arch}")) {
            let tree = s.engine.store().get_tree(&g.tree).map_err(runtime)?;
            for e in &tree.entries {
                if let EntryKind::File { size, .. } = e.kind
                    && e.path.ends_with(".ociarchive")
                {
                    let sha = sha256_file(&dir.join(&e.path))?;
                    images.insert(
                        "ostree".into(),
                        json!({"path": e.path, "sha256": sha, "size": size}),
                    );
                }
            }
        }
        let timestamp = cj["timestamp"].as_u64().unwrap_or(now);
        let meta = json!({
            "buildid": version,
            "name": name,
            "ref": c.treefile.ref_name.clone().unwrap_or_default(),
            "coreos-assembler.basearch": arch,
            "coreos-assembler.build-timestamp": rfc3339(now),
            "ostree-commit": cj["checksum"],
            "ostree-content-checksum": cj["content_checksum"],
            "ostree-timestamp": rfc3339(timestamp),
            "ostree-version": version,
            "rpm-ostree-inputhash": input_hashes.get(arch).map(|d| d.to_hex()),
            "images": images,
        });
        // coreos-assembler's commitmeta.json: the commit's metadata as JSON.
        let commitmeta = cj["metadata"].clone();
        write_pretty(&dir.join("meta.json"), &meta)?;
        write_pretty(&dir.join("commitmeta.json"), &commitmeta)?;
    }
    if new_build {
        let mut list: Vec<J> = index
            .as_ref()
            .and_then(|v| v["builds"].as_array().cloned())
            .unwrap_or_default();
        list.retain(|b| b["id"].as_str() != Some(version.as_str()));
        list.insert(0, json!({"id": version, "arches": arches}));
        write_pretty(
            &builds.join("builds.json"),
            &json!({"schema-version": "1.0.0", "builds": list, "timestamp": rfc3339(now)}),
        )?;
        let link = builds.join("latest");
        let _ = fs_err::remove_file(&link);
        std::os::unix::fs::symlink(&version, &link).map_err(runtime)?;
        eprintln!("new build {version}");
    } else {
        eprintln!(
            "unchanged: the input hash (tree and commit settings) equals build {version}'s, no new build id"
        );
    }
    finish_build(s, all, progress)
}

/// Where a build keeps its commit record (the `ostree-commit` node's `commit.json`).
pub const COMMIT_JSON: &str = "ostree-commit/commit.json";

/// The parent of a new commit for `arch`: the commit of the newest other build that has
/// `arch` with the same ref (coreos-assembler passes the previous build's commit as
/// `--parent`). Builds whose meta.json is missing are skipped.
fn previous_commit(
    index: Option<&J>,
    builds: &Path,
    version: &str,
    arch: &str,
    ref_name: Option<&str>,
) -> Option<String> {
    let list = index?["builds"].as_array()?;
    list.iter()
        .filter_map(|b| b["id"].as_str())
        .filter(|id| *id != version)
        .filter_map(|id| read_json(&builds.join(id).join(arch).join("meta.json")))
        .find(|m| m["ref"].as_str() == Some(ref_name.unwrap_or_default()))
        .and_then(|m| m["ostree-commit"].as_str().map(str::to_string))
}

fn sha256_file(p: &Path) -> Result<String, Failure> {
    use sha2::Digest as _;
    let mut f = fs_err::File::open(p).map_err(runtime)?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(runtime)?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn write_pretty(p: &Path, v: &J) -> Result<(), Failure> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(runtime)?;
    bytes.push(b'\n');
    let dir = p.parent().expect("a file in a directory");
    nosa_cache::atomic::write_atomic(dir, p, &bytes).map_err(runtime)
}

/// `<automatic-version-prefix>.<n>` with `<date:...>` expanded and `n` one more than the
/// highest existing build with that prefix (as rpm-ostree numbers them).
fn next_version(s: &Session, builds: &Path, now: u64) -> Result<String, Failure> {
    let c = &s.ws.configs[0];
    let date = BuildDate::from_unix(now as i64);
    let prefix = match c.treefile.version_prefix(&date) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(Failure::Config(miette::miette!("{e}"))),
        None => format!("{:04}{:02}{:02}", date.year, date.month, date.day),
    };
    let mut n = 0;
    if let Ok(rd) = fs_err::read_dir(builds) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(k) = name
                .strip_prefix(&format!("{prefix}."))
                .and_then(|r| r.parse::<u64>().ok())
            {
                n = n.max(k + 1);
            }
        }
    }
    Ok(format!("{prefix}.{n}"))
}
