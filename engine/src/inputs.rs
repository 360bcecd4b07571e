//! Resolving declared inputs: expanding paths, directories and globs under the workdir, and
//! hashing the files in parallel through the stat cache.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use nosa_cache::{Digest, FxBuildHasher, StatCache, hash_file};
use rayon::prelude::*;

use crate::node::{InputFile, InputSpec};
use crate::witness::Trace;

/// Top-level workdir entries a glob never descends into: nosa's own state and outputs.
const SKIP_TOP: &[&str] = &[
    ".git",
    "cache/store",
    "tmp",
    "builds",
    ".nosa.lock",
    "target",
];

struct Found {
    rel: String,
    abs: PathBuf,
    meta: std::fs::Metadata,
}

/// A directory whose listing an expansion used (`meta` before or after listing; `None`: it did
/// not exist), for the no-op witness.
struct Listed {
    abs: PathBuf,
    meta: Option<std::fs::Metadata>,
    /// Stat'ed through symlinks (a glob's base, which the walk follows).
    follow: bool,
}

/// One spec's expansion: its files and the directories listed to find them.
type Expansion = (Vec<Found>, Vec<Listed>);

/// Resolves each node's input specs. Returns, per node, its sorted input files or a message
/// naming the input that could not be resolved.
///
/// Work is shared across nodes: each distinct spec is expanded once and each distinct file is
/// looked up (and, if the stat cache does not vouch for it, hashed) once, in parallel.
pub fn resolve_inputs(
    workdir: &Path,
    specs: &[Vec<InputSpec>],
    stat: &mut StatCache,
) -> Vec<Result<Vec<InputFile>, String>> {
    resolve_inputs_traced(workdir, specs, stat, None)
}

/// [`resolve_inputs`], also recording in `trace` the stamp of every input file and of every
/// directory listed (or found missing) to expand directories and globs.
pub(crate) fn resolve_inputs_traced(
    workdir: &Path,
    specs: &[Vec<InputSpec>],
    stat: &mut StatCache,
    trace: Option<&mut Trace>,
) -> Vec<Result<Vec<InputFile>, String>> {
    // Expand each distinct spec once, in parallel.
    let mut spec_index: HashMap<&InputSpec, usize, FxBuildHasher> = HashMap::default();
    let mut distinct: Vec<&InputSpec> = Vec::new();
    for s in specs.iter().flatten() {
        spec_index.entry(s).or_insert_with(|| {
            distinct.push(s);
            distinct.len() - 1
        });
    }
    let expansions: Vec<Result<Expansion, String>> = distinct
        .par_iter()
        .map(|s| {
            let mut out = Vec::with_capacity(usize::from(matches!(s, InputSpec::Path(_))));
            let mut dirs = Vec::new();
            match s {
                InputSpec::Path(p) => expand_path(workdir, p, &mut out, &mut dirs)?,
                InputSpec::Glob(g) => expand_glob(workdir, g, &mut out, &mut dirs)?,
            }
            Ok((out, dirs))
        })
        .collect();
    let mut expanded: Vec<Result<Vec<Found>, String>> = Vec::with_capacity(expansions.len());
    let mut listed: Vec<Listed> = Vec::new();
    for e in expansions {
        expanded.push(e.map(|(files, dirs)| {
            listed.extend(dirs);
            files
        }));
    }

    // The distinct files, each with its digest: trusted from the stat cache where its stamp
    // matches, else hashed (in parallel) and remembered.
    let mut file_index: HashMap<&str, usize, FxBuildHasher> = HashMap::default();
    let mut files: Vec<&Found> = Vec::new();
    let mut file_ids: Vec<Vec<usize>> = Vec::with_capacity(expanded.len());
    for found in &expanded {
        let ids = match found {
            Ok(v) => v
                .iter()
                .map(|f| {
                    *file_index.entry(f.rel.as_str()).or_insert_with(|| {
                        files.push(f);
                        files.len() - 1
                    })
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        file_ids.push(ids);
    }
    let trusted: &StatCache = stat;
    let digests: Vec<(Result<Digest, String>, bool)> = files
        .par_iter()
        .map(|f| {
            if f.meta.is_symlink() {
                let d = fs_err::read_link(&f.abs)
                    .map(|t| Digest::of(t.as_os_str().as_encoded_bytes()))
                    .map_err(|e| e.to_string());
                (d, false)
            } else if let Some(d) = trusted.lookup(&f.abs, &f.meta) {
                (Ok(d), false)
            } else {
                (hash_file(&f.abs).map_err(|e| e.to_string()), true)
            }
        })
        .collect();
    for (f, (d, hashed)) in files.iter().zip(&digests) {
        if let (true, Ok(d)) = (hashed, d) {
            stat.insert(&f.abs, &f.meta, *d);
        }
    }
    if let Some(trace) = trace {
        for f in &files {
            trace.stamp(&f.abs, &f.meta, false);
        }
        for l in &listed {
            match &l.meta {
                Some(m) => trace.stamp(&l.abs, m, l.follow),
                None => trace.absent(&l.abs, l.follow),
            }
        }
    }

    // Per node: its specs' files, sorted by path, each once; the first failing spec fails it.
    specs
        .par_iter()
        .map(|node_specs| {
            let mut ids: Vec<usize> = Vec::new();
            for s in node_specs {
                let si = spec_index[s];
                if let Err(e) = &expanded[si] {
                    return Err(e.clone());
                }
                ids.extend(&file_ids[si]);
            }
            ids.sort_unstable_by(|&a, &b| files[a].rel.cmp(&files[b].rel));
            ids.dedup();
            ids.iter()
                .map(|&i| {
                    let f = files[i];
                    Ok(InputFile {
                        rel: f.rel.clone(),
                        abs: f.abs.clone(),
                        digest: digests[i].0.clone()?,
                        symlink: f.meta.is_symlink(),
                        mode: std::os::unix::fs::PermissionsExt::mode(&f.meta.permissions())
                            & 0o7777,
                    })
                })
                .collect()
        })
        .collect()
}

/// Checks that `rel` stays inside the workdir.
pub fn check_relative(rel: &str) -> Result<(), String> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() {
        return Err(format!(
            "input {rel:?} must be a path relative to the workdir"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("input {rel:?} leaves the workdir (`..`)"));
    }
    Ok(())
}

fn expand_path(
    workdir: &Path,
    rel: &str,
    out: &mut Vec<Found>,
    dirs: &mut Vec<Listed>,
) -> Result<(), String> {
    check_relative(rel)?;
    let abs = workdir.join(rel);
    let meta =
        std::fs::symlink_metadata(&abs).map_err(|e| format!("input {rel} cannot be read: {e}"))?;
    if meta.is_dir() {
        dirs.push(Listed {
            abs: abs.clone(),
            meta: Some(meta),
            follow: false,
        });
        walk_dir(workdir, &abs, out, dirs)
    } else {
        out.push(Found {
            rel: normalize(rel),
            abs,
            meta,
        });
        Ok(())
    }
}

fn normalize(rel: &str) -> String {
    // Fast path: already normal (no `.` components, empty components or trailing `/`).
    let normal =
        !rel.is_empty() && !rel.ends_with('/') && rel.split('/').all(|c| !c.is_empty() && c != ".");
    if normal {
        return rel.to_string();
    }
    Path::new(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn walk_dir(
    workdir: &Path,
    dir: &Path,
    out: &mut Vec<Found>,
    dirs: &mut Vec<Listed>,
) -> Result<(), String> {
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| format!("input directory {}: {e}", dir.display()))?;
        if e.file_type().is_dir() {
            let meta = e
                .metadata()
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            dirs.push(Listed {
                abs: e.path().to_path_buf(),
                meta: Some(meta),
                follow: false,
            });
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(workdir)
            .map_err(|_| format!("{} is outside the workdir", e.path().display()))?
            .to_str()
            .ok_or_else(|| format!("non-UTF-8 path {}", e.path().display()))?
            .to_string();
        let meta = e.metadata().map_err(|err| format!("{rel}: {err}"))?;
        out.push(Found {
            rel,
            abs: e.path().to_path_buf(),
            meta,
        });
    }
    Ok(())
}

fn expand_glob(
    workdir: &Path,
    pattern: &str,
    out: &mut Vec<Found>,
    dirs: &mut Vec<Listed>,
) -> Result<(), String> {
    check_relative(pattern)?;
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob {pattern:?}: {e}"))?
        .compile_matcher();
    // Walk from the longest directory prefix without glob characters.
    let base: Vec<&str> = pattern
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .collect();
    let base = base[..base.len().min(pattern.split('/').count() - 1)].join("/");
    let root = if base.is_empty() {
        workdir.to_path_buf()
    } else {
        workdir.join(&base)
    };
    // The base as the walk sees it (through a symlink), and the link itself if it is one.
    let root_meta = fs_err::metadata(&root).ok();
    if let Ok(link) = fs_err::symlink_metadata(&root)
        && link.is_symlink()
    {
        dirs.push(Listed {
            abs: root.clone(),
            meta: Some(link),
            follow: false,
        });
    }
    let is_dir = root_meta.as_ref().is_some_and(|m| m.is_dir());
    dirs.push(Listed {
        abs: root.clone(),
        meta: root_meta,
        follow: true,
    });
    if !is_dir {
        return Ok(());
    }
    let walker = walkdir::WalkDir::new(&root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let rel = e.path().strip_prefix(workdir).unwrap_or(e.path());
            !SKIP_TOP.iter().any(|s| rel == Path::new(s))
        });
    for e in walker {
        let e = e.map_err(|e| format!("glob {pattern}: {e}"))?;
        if e.file_type().is_dir() {
            let meta = e
                .metadata()
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            dirs.push(Listed {
                abs: e.path().to_path_buf(),
                meta: Some(meta),
                follow: false,
            });
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(workdir) else {
            continue;
        };
        if glob.is_match(rel) {
            let meta = e
                .metadata()
                .map_err(|err| format!("{}: {err}", rel.display()))?;
            out.push(Found {
                rel: rel.to_string_lossy().into_owned(),
                abs: e.path().to_path_buf(),
                meta,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_normal_paths_and_cleans_the_rest() {
        assert_eq!(normalize("in/a.txt"), "in/a.txt");
        assert_eq!(normalize("./in//a.txt"), "in/a.txt");
        assert_eq!(normalize("in/./a.txt"), "in/a.txt");
        assert_eq!(normalize("in/"), "in");
    }

    #[test]
    fn paths_dirs_and_globs() {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path();
        fs_err::create_dir_all(w.join("in/sub")).unwrap();
        fs_err::write(w.join("in/a.txt"), "a").unwrap();
        fs_err::write(w.join("in/b.md"), "b").unwrap();
        fs_err::write(w.join("in/sub/c.txt"), "c").unwrap();
        let mut sc = StatCache::default();
        let specs = vec![
            vec![InputSpec::parse("in/*.txt")],
            vec![InputSpec::parse("in/**/*.txt")],
            vec![InputSpec::parse("in")],
            vec![InputSpec::parse("in/missing")],
            vec![InputSpec::parse("../etc/passwd")],
        ];
        let r = resolve_inputs(w, &specs, &mut sc);
        let names = |i: usize| -> Vec<String> {
            r[i].as_ref()
                .unwrap()
                .iter()
                .map(|f| f.rel.clone())
                .collect()
        };
        assert_eq!(names(0), vec!["in/a.txt"]);
        assert_eq!(names(1), vec!["in/a.txt", "in/sub/c.txt"]);
        assert_eq!(names(2), vec!["in/a.txt", "in/b.md", "in/sub/c.txt"]);
        assert!(r[3].as_ref().unwrap_err().contains("in/missing"));
        assert!(r[4].as_ref().unwrap_err().contains("leaves the workdir"));
        assert_eq!(r[0].as_ref().unwrap()[0].digest, Digest::of(b"a"));
    }
}
