//! `nosa compress` and `nosa uncompress`: a recorded build's images compressed or
//! decompressed in place, each by a graph node (`nosa_rules::compress`), in parallel, cached
//! by the artifact's content, codec and level.
//!
//! The nodes form a small graph of their own, built on the workdir's engine (same store,
//! same state): they act on files a build recorded under builds/, which may be an older
//! build than the one the workspace graph describes now, so no node of that graph is their
//! dependency. Their key is the artifact's BLAKE3, which is the store blob's name when
//! builds/ holds a hardlink of it.
//!
//! What coreos-assembler's `cosa compress` does, and in which order (a kill at any point
//! leaves the old state or the new one, and a rerun finishes the job):
//! 1. every selected artifact's node runs or is cached;
//! 2. each result is placed next to the original (`<file>.gz`, `.xz`, `.zst`) by a temporary
//!    name and a rename, fsynced, and its SHA-256, recomputed from the placed file, must be the
//!    node output's;
//! 3. meta.json is rewritten (atomically) with the compressed file's `path`, `sha256`, `size`
//!    and the original's `uncompressed-sha256` and `uncompressed-size`;
//! 4. then the originals are removed. A rerun removes an original that a kill left behind
//!    (its SHA-256 is the recorded `uncompressed-sha256`).
//!
//! `nosa uncompress` is the same in reverse; the decompressed file must have the recorded
//! `uncompressed-sha256` and `uncompressed-size` before meta.json names it.
//!
//! Never compressed (as coreos-assembler): the OCI archive `ostree` (its layers are
//! compressed), live and boot artifacts (ISO, kernel, initramfs, rootfs), artifacts whose
//! meta.json entry says `skip-compression`, and files already in a compressed format.

use std::path::Path;
use std::sync::Arc;

use nosa_cache::{Digest, EntryKind, Materialize, Store, Tree, TreeEntry};
use nosa_engine::{BuildOptions, BuildReport, GraphBuilder, Observer, Status};
use nosa_rules::compress::{Codec, CompressRule, UncompressRule};

use crate::builds::{BuildsDir, ImageFile, Meta};
use crate::{Error, Session, ids};

/// What `nosa compress` is asked.
#[derive(Clone, Debug, Default)]
pub struct CompressRequest {
    /// The build (default: the latest).
    pub build: Option<String>,
    /// Only this arch (default: every arch of the build).
    pub arch: Option<String>,
    /// The codec (default: image.yaml's `compressor`, else gzip).
    pub codec: Option<Codec>,
    /// The fastest level ([`Codec::level`]).
    pub fast: bool,
    /// Only these artifacts (default: all).
    pub artifacts: Vec<String>,
}

/// What `nosa uncompress` is asked.
#[derive(Clone, Debug, Default)]
pub struct UncompressRequest {
    /// The build (default: the latest).
    pub build: Option<String>,
    /// Only this arch (default: every arch of the build).
    pub arch: Option<String>,
    /// Only these artifacts (default: all).
    pub artifacts: Vec<String>,
}

/// What a compress or uncompress did.
#[derive(Debug)]
pub struct Outcome {
    /// The build acted on.
    pub build: String,
    /// The nodes (empty when nothing was to be done).
    pub report: BuildReport,
    /// One line per artifact: what happened to it (for stderr).
    pub lines: Vec<String>,
}

/// Artifact names coreos-assembler never compresses besides `ostree`: live and boot files.
const NEVER: &[&str] = &[
    "iso",
    "live-iso",
    "kernel",
    "live-kernel",
    "initramfs",
    "live-initramfs",
    "live-rootfs",
];

/// File name endings that are compressed formats already.
const COMPRESSED_ENDINGS: &[&str] = &[".gz", ".xz", ".zst", ".tgz", ".ova", ".iso", ".zip"];

/// One artifact a node works on.
struct Job {
    arch: String,
    name: String,
    node: String,
    /// Its meta.json entry now.
    entry: ImageFile,
    /// The file name it will have.
    dest: String,
}

/// The build and its arches that the request names; every arch's meta.json.
fn target(
    builds: &BuildsDir,
    build: Option<&str>,
    arch: Option<&str>,
) -> Result<(String, Vec<(String, Meta)>), Error> {
    let index = builds.index().ok_or_else(|| {
        Error::usage(
            "there are no builds (builds/builds.json is missing or unreadable)",
            "build one first: `nosa build qemu`",
        )
    })?;
    let entry = match build {
        None => index.builds.first().ok_or_else(|| {
            Error::usage(
                "builds/builds.json lists no build",
                "run `nosa build` first",
            )
        })?,
        Some(id) => index.builds.iter().find(|b| b.id == id).ok_or_else(|| {
            let known: Vec<&str> = index.builds.iter().map(|b| b.id.as_str()).collect();
            Error::usage(
                format!("there is no build {id}"),
                format!("the builds are: {}", known.join(", ")),
            )
        })?,
    };
    let arches: Vec<String> = match arch {
        None => entry.arches.clone(),
        Some(a) if entry.arches.iter().any(|x| x == a) => vec![a.to_string()],
        Some(a) => {
            return Err(Error::usage(
                format!("build {} has no arch {a}", entry.id),
                format!("its arches are: {}", entry.arches.join(", ")),
            ));
        }
    };
    let mut metas = Vec::new();
    for a in arches {
        let meta = builds.meta(&entry.id, &a).ok_or_else(|| {
            std::io::Error::other(format!(
                "builds/{}/{a}/meta.json is missing or unreadable",
                entry.id
            ))
        })?;
        metas.push((a, meta));
    }
    Ok((entry.id.clone(), metas))
}

/// Fails with exit 2 if an asked artifact is in no arch's meta.json, naming those there are.
fn check_artifacts(id: &str, metas: &[(String, Meta)], wanted: &[String]) -> Result<(), Error> {
    let mut known: Vec<&str> = metas
        .iter()
        .flat_map(|(_, m)| m.images.keys().map(String::as_str))
        .collect();
    known.sort();
    known.dedup();
    if let Some(bad) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
        return Err(Error::usage(
            format!("build {id} has no artifact {bad}"),
            format!("its artifacts are: {}", known.join(", ")),
        ));
    }
    Ok(())
}

/// Why artifact `name` is never compressed, if it is not.
fn never_compressed(name: &str, img: &ImageFile) -> Option<&'static str> {
    if img.skip_compression == Some(true) {
        Some("meta.json says skip-compression")
    } else if name == "ostree" {
        Some("the OCI archive's layers are compressed")
    } else if NEVER.contains(&name) {
        Some("live and boot artifacts are used as they are")
    } else if COMPRESSED_ENDINGS.iter().any(|e| img.path.ends_with(e)) {
        Some("already a compressed format")
    } else {
        None
    }
}

/// image.yaml's `compressor` for `arch`, else gzip.
fn configured_codec(s: &Session, arch: &str) -> Result<Codec, Error> {
    let Some(name) =
        s.ws.configs
            .iter()
            .find(|c| c.arch.to_string() == arch)
            .and_then(|c| c.image.compressor.clone())
    else {
        return Ok(Codec::Gzip);
    };
    Codec::parse(&name).ok_or_else(|| {
        Error::usage(
            format!("image.yaml's compressor is {name:?}: nosa compresses with gzip, xz or zstd"),
            "change `compressor` in image.yaml, or pass --compressor",
        )
    })
}

/// The file's BLAKE3, and where a node reads it: the store's blob when the store has it
/// (builds/ holds a hardlink of it), else the file. A file meta.json names but builds/ lacks
/// is an error.
fn source(store: &Store, file: &Path) -> Result<(Digest, std::path::PathBuf), Error> {
    if !file.is_file() {
        return Err(std::io::Error::other(format!(
            "{}: meta.json names it, but it is missing",
            file.display()
        ))
        .into());
    }
    let digest = nosa_cache::hash_file(file)?;
    let at = if store.has_blob(&digest) {
        store.blob_path(&digest)
    } else {
        file.to_path_buf()
    };
    Ok((digest, at))
}

/// Builds the graph of `nodes` on the workdir's engine, and adds the keys of those that
/// succeeded to build `build`'s node keys (so `nosa prune` keeps their outputs while the
/// build stays: compressing the same image again is a cache hit).
fn run_nodes(
    s: &Session,
    build: &str,
    nodes: Vec<(String, Arc<dyn nosa_engine::Rule>)>,
    opts: &BuildOptions,
    obs: &mut dyn Observer,
) -> Result<BuildReport, Error> {
    if nodes.is_empty() {
        return Ok(BuildReport::default());
    }
    let mut gb = GraphBuilder::new();
    let n = nodes.len();
    for (id, rule) in nodes {
        gb.add(id, rule, Vec::new());
    }
    let graph = gb
        .build()
        .map_err(|e| std::io::Error::other(format!("compress graph: {e}")))?;
    let all: Vec<usize> = (0..n).collect();
    let report = s.engine.build(&graph, &all, opts, obs)?;
    let state = s.engine.state();
    let keys = report
        .nodes
        .iter()
        .filter(|n| n.status != Status::Failed)
        .filter_map(|n| Some((n.id.clone(), state.nodes.get(&n.id)?.good?.key)))
        .collect();
    s.builds().add_node_keys(build, keys)?;
    Ok(report)
}

/// The single file of node `id`'s output, if the node succeeded in `report`.
fn output_file(
    s: &Session,
    report: &BuildReport,
    id: &str,
) -> Result<Option<(Digest, u64)>, Error> {
    let ok = report.nodes.iter().any(|n| {
        n.id == id
            && matches!(
                n.status,
                Status::Ran | Status::Cached | Status::Cutoff | Status::Remote
            )
    });
    if !ok {
        return Ok(None);
    }
    let state = s.engine.state();
    let good = state
        .nodes
        .get(id)
        .and_then(|n| n.good)
        .ok_or_else(|| std::io::Error::other(format!("{id} has no output")))?;
    let tree = s.engine.store().get_tree(&good.tree)?;
    match tree.entries.as_slice() {
        [
            TreeEntry {
                kind: EntryKind::File { digest, size },
                ..
            },
        ] => Ok(Some((*digest, *size))),
        _ => Err(std::io::Error::other(format!("{id}: its output is not one file")).into()),
    }
}

/// Places blob `digest` as `dir/name` (a read-only hardlink, or a copy, by a temporary name
/// and a rename; the directory fsynced) and checks the placed file: its SHA-256 and size,
/// read from builds/, must be the blob's. Returns the SHA-256.
fn place(
    store: &Store,
    dir: &Path,
    name: &str,
    digest: Digest,
    size: u64,
) -> Result<String, Error> {
    let tree = Tree {
        entries: vec![TreeEntry {
            path: name.to_string(),
            mode: 0o444,
            kind: EntryKind::File { digest, size },
        }],
    };
    store.materialize(&tree, dir, Materialize::Readonly)?;
    nosa_cache::atomic::sync_dir(dir)?;
    let file = dir.join(name);
    let (sha256, n) = nosa_cache::sha256_file(&file)?;
    let want = store.sha256_of(&digest)?;
    if sha256 != want || n != size {
        let _ = fs_err::remove_file(&file);
        return Err(std::io::Error::other(format!(
            "{}: placed with SHA-256 {sha256} ({n} bytes), not the node output's {want} ({size} bytes)",
            file.display()
        ))
        .into());
    }
    Ok(sha256)
}

/// Removes `dir/name` if it is there.
fn remove_if_there(dir: &Path, name: &str) -> Result<bool, Error> {
    match fs_err::remove_file(dir.join(name)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// For each arch: the jobs whose nodes succeeded get their files placed and checked and
/// their new entries from `update` (a refusal removes the placed file), then meta.json is
/// written once, then the files the jobs replace go. Returns a line per job.
fn finish_jobs(
    s: &Session,
    id: &str,
    metas: &mut [(String, Meta)],
    jobs: &[Job],
    report: &BuildReport,
    update: impl Fn(&Job, String, u64) -> Result<ImageFile, Error>,
) -> Result<Vec<String>, Error> {
    let builds = s.builds();
    let store = s.engine.store();
    let mut lines = Vec::new();
    for (arch, meta) in metas.iter_mut() {
        let dir = builds.arch_dir(id, arch);
        let mut replaced = Vec::new();
        for job in jobs.iter().filter(|j| &j.arch == arch) {
            let Some((digest, size)) = output_file(s, report, &job.node)? else {
                lines.push(format!(
                    "{arch} {}: its node failed, left as it is",
                    job.name
                ));
                continue;
            };
            let sha256 = place(store, &dir, &job.dest, digest, size)?;
            let entry = match update(job, sha256, size) {
                Ok(e) => e,
                Err(e) => {
                    remove_if_there(&dir, &job.dest)?;
                    return Err(e);
                }
            };
            lines.push(format!(
                "{arch} {}: {} ({} bytes) -> {} ({} bytes)",
                job.name, job.entry.path, job.entry.size, entry.path, entry.size
            ));
            meta.images.insert(job.name.clone(), entry);
            replaced.push(job.entry.path.clone());
        }
        if replaced.is_empty() {
            continue;
        }
        builds.write_meta_json(meta)?;
        for old in replaced {
            remove_if_there(&dir, &old)?;
        }
    }
    Ok(lines)
}

/// `nosa compress` (see the module doc).
pub fn compress(
    s: &Session,
    req: &CompressRequest,
    opts: &BuildOptions,
    obs: &mut dyn Observer,
) -> Result<Outcome, Error> {
    let builds = s.builds();
    let (id, mut metas) = target(&builds, req.build.as_deref(), req.arch.as_deref())?;
    check_artifacts(&id, &metas, &req.artifacts)?;
    let store = s.engine.store();
    let mut lines = Vec::new();
    let mut jobs = Vec::new();
    let mut nodes: Vec<(String, Arc<dyn nosa_engine::Rule>)> = Vec::new();
    for (arch, meta) in &metas {
        let codec = match req.codec {
            Some(c) => c,
            None => configured_codec(s, arch)?,
        };
        let level = codec.level(req.fast);
        let dir = builds.arch_dir(&id, arch);
        for (name, img) in &meta.images {
            if !req.artifacts.is_empty() && !req.artifacts.contains(name) {
                continue;
            }
            if let Some(sha) = &img.uncompressed_sha256 {
                // A kill between meta.json and the removal left the original: it goes now.
                let original = Codec::of_path(&img.path)
                    .and_then(|c| img.path.strip_suffix(&format!(".{}", c.ext())));
                let mut note = String::new();
                if let Some(orig) = original.filter(|o| dir.join(o).is_file())
                    && nosa_cache::sha256_file(&dir.join(orig))?.0 == *sha
                {
                    remove_if_there(&dir, orig)?;
                    note = format!(" (removed the original {orig} an interrupted run left)");
                }
                lines.push(format!("{arch} {name}: already compressed{note}"));
                continue;
            }
            if let Some(why) = never_compressed(name, img) {
                lines.push(format!("{arch} {name}: not compressed ({why})"));
                continue;
            }
            let (input, source) = source(store, &dir.join(&img.path))?;
            let node = ids::compress(arch, name, codec.name());
            nodes.push((
                node.clone(),
                Arc::new(CompressRule {
                    input,
                    source,
                    codec,
                    level,
                }),
            ));
            jobs.push(Job {
                arch: arch.clone(),
                name: name.clone(),
                node,
                entry: img.clone(),
                dest: format!("{}.{}", img.path, codec.ext()),
            });
        }
    }
    let report = run_nodes(s, &id, nodes, opts, obs)?;
    let update = |job: &Job, sha256: String, size: u64| {
        Ok(ImageFile {
            path: job.dest.clone(),
            sha256,
            size,
            uncompressed_sha256: Some(job.entry.sha256.clone()),
            uncompressed_size: Some(job.entry.size),
            skip_compression: job.entry.skip_compression,
            extra: job.entry.extra.clone(),
        })
    };
    lines.extend(finish_jobs(s, &id, &mut metas, &jobs, &report, update)?);
    Ok(Outcome {
        build: id,
        report,
        lines,
    })
}

/// `nosa uncompress` (see the module doc).
pub fn uncompress(
    s: &Session,
    req: &UncompressRequest,
    opts: &BuildOptions,
    obs: &mut dyn Observer,
) -> Result<Outcome, Error> {
    let builds = s.builds();
    let (id, mut metas) = target(&builds, req.build.as_deref(), req.arch.as_deref())?;
    check_artifacts(&id, &metas, &req.artifacts)?;
    let store = s.engine.store();
    let mut lines = Vec::new();
    let mut jobs = Vec::new();
    let mut nodes: Vec<(String, Arc<dyn nosa_engine::Rule>)> = Vec::new();
    for (arch, meta) in &metas {
        let dir = builds.arch_dir(&id, arch);
        for (name, img) in &meta.images {
            if !req.artifacts.is_empty() && !req.artifacts.contains(name) {
                continue;
            }
            let codec = Codec::of_path(&img.path);
            let (Some(_), Some(codec)) = (&img.uncompressed_sha256, codec) else {
                // A kill between meta.json and the removal left the compressed file: it goes.
                let mut gone = Vec::new();
                for c in Codec::ALL {
                    let stale = format!("{}.{}", img.path, c.ext());
                    if remove_if_there(&dir, &stale)? {
                        gone.push(stale);
                    }
                }
                let note = match gone.is_empty() {
                    true => String::new(),
                    false => format!(" (removed {} an interrupted run left)", gone.join(", ")),
                };
                lines.push(format!("{arch} {name}: not compressed{note}"));
                continue;
            };
            let (input, source) = source(store, &dir.join(&img.path))?;
            let node = ids::uncompress(arch, name, codec.name());
            nodes.push((
                node.clone(),
                Arc::new(UncompressRule {
                    input,
                    source,
                    codec,
                }),
            ));
            let dest = img
                .path
                .strip_suffix(&format!(".{}", codec.ext()))
                .expect("of_path found the extension")
                .to_string();
            jobs.push(Job {
                arch: arch.clone(),
                name: name.clone(),
                node,
                entry: img.clone(),
                dest,
            });
        }
    }
    let report = run_nodes(s, &id, nodes, opts, obs)?;
    let update = |job: &Job, sha256: String, size: u64| {
        let want = job.entry.uncompressed_sha256.as_deref().unwrap_or_default();
        let want_size = job.entry.uncompressed_size.unwrap_or(size);
        if sha256 != want || size != want_size {
            return Err(Error::from(std::io::Error::other(format!(
                "{} decompressed has SHA-256 {sha256} ({size} bytes), not the recorded uncompressed-sha256 {want} ({want_size} bytes); meta.json is left as it was",
                job.entry.path
            ))));
        }
        Ok(ImageFile {
            path: job.dest.clone(),
            sha256,
            size,
            uncompressed_sha256: None,
            uncompressed_size: None,
            skip_compression: job.entry.skip_compression,
            extra: job.entry.extra.clone(),
        })
    };
    lines.extend(finish_jobs(s, &id, &mut metas, &jobs, &report, update)?);
    Ok(Outcome {
        build: id,
        report,
        lines,
    })
}
