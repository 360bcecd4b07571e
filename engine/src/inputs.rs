//! Resolving declared inputs: expanding paths, directories and globs under the workdir, and
//! hashing the files in parallel through the stat cache.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use nosa_cache::{Digest, StatCache, hash_file};
use rayon::prelude::*;

use crate::node::{InputFile, InputSpec};

/// Top-level workdir entries a glob never descends into: nosa's own state and outputs.
const SKIP_TOP: &[&str] = &[".git", "cache/store", "tmp", "builds", ".nosa.lock", "target"];

struct Found {
    rel: String,
    abs: PathBuf,
    meta: std::fs::Metadata,
}

/// Resolves each node's input specs. Returns, per node, its sorted input files or a message
/// naming the input that could not be resolved.
pub fn resolve_inputs(
    workdir: &Path,
    specs: &[Vec<InputSpec>],
    stat: &mut StatCache,
) -> Vec<Result<Vec<InputFile>, String>> {
    let expanded: Vec<Result<Vec<Found>, String>> = specs
        .par_iter()
        .map(|s| expand_all(workdir, s))
        .collect();

    // Hash each distinct file once, in parallel, trusting the stat cache where it matches.
    let mut todo: HashMap<&Path, &std::fs::Metadata> = HashMap::new();
    for f in expanded.iter().flatten().flatten() {
        if !f.meta.is_symlink() && stat.lookup(&f.abs, &f.meta).is_none() {
            todo.insert(&f.abs, &f.meta);
        }
    }
    let hashed: Vec<(&Path, &std::fs::Metadata, Result<Digest, String>)> = todo
        .into_par_iter()
        .map(|(p, m)| (p, m, hash_file(p).map_err(|e| e.to_string())))
        .collect();
    let mut fresh: HashMap<&Path, Result<Digest, String>> = HashMap::new();
    for (p, m, d) in hashed {
        if let Ok(d) = &d {
            stat.insert(p.to_path_buf(), m, *d);
        }
        fresh.insert(p, d);
    }

    expanded
        .iter()
        .map(|r| {
            let found = r.as_ref().map_err(Clone::clone)?;
            found
                .iter()
                .map(|f| {
                    let symlink = f.meta.is_symlink();
                    let digest = if symlink {
                        let t = fs_err::read_link(&f.abs).map_err(|e| e.to_string())?;
                        Digest::of(t.as_os_str().as_encoded_bytes())
                    } else if let Some(d) = fresh.get(f.abs.as_path()) {
                        d.clone()?
                    } else {
                        stat.lookup(&f.abs, &f.meta)
                            .expect("either fresh or trusted by the stat cache")
                    };
                    Ok(InputFile {
                        rel: f.rel.clone(),
                        abs: f.abs.clone(),
                        digest,
                        symlink,
                    })
                })
                .collect()
        })
        .collect()
}

fn expand_all(workdir: &Path, specs: &[InputSpec]) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    for s in specs {
        match s {
            InputSpec::Path(p) => expand_path(workdir, p, &mut out)?,
            InputSpec::Glob(g) => expand_glob(workdir, g, &mut out)?,
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out.dedup_by(|a, b| a.rel == b.rel);
    Ok(out)
}

/// Checks that `rel` stays inside the workdir.
pub fn check_relative(rel: &str) -> Result<(), String> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() {
        return Err(format!("input {rel:?} must be a path relative to the workdir"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("input {rel:?} leaves the workdir (`..`)"));
    }
    Ok(())
}

fn expand_path(workdir: &Path, rel: &str, out: &mut Vec<Found>) -> Result<(), String> {
    check_relative(rel)?;
    let abs = workdir.join(rel);
    let meta = std::fs::symlink_metadata(&abs)
        .map_err(|e| format!("input {rel} cannot be read: {e}"))?;
    if meta.is_dir() {
        walk_dir(workdir, &abs, out)
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
    Path::new(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn walk_dir(workdir: &Path, dir: &Path, out: &mut Vec<Found>) -> Result<(), String> {
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| format!("input directory {}: {e}", dir.display()))?;
        if e.file_type().is_dir() {
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

fn expand_glob(workdir: &Path, pattern: &str, out: &mut Vec<Found>) -> Result<(), String> {
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
    if !root.is_dir() {
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
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(workdir) else {
            continue;
        };
        if glob.is_match(rel) {
            let meta = e.metadata().map_err(|err| format!("{}: {err}", rel.display()))?;
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
            r[i].as_ref().unwrap().iter().map(|f| f.rel.clone()).collect()
        };
        assert_eq!(names(0), vec!["in/a.txt"]);
        assert_eq!(names(1), vec!["in/a.txt", "in/sub/c.txt"]);
        assert_eq!(names(2), vec!["in/a.txt", "in/b.md", "in/sub/c.txt"]);
        assert!(r[3].as_ref().unwrap_err().contains("in/missing"));
        assert!(r[4].as_ref().unwrap_err().contains("leaves the workdir"));
        assert_eq!(r[0].as_ref().unwrap()[0].digest, Digest::of(b"a"));
    }
}
