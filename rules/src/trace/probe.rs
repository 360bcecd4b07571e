//! What a traced program saw of a tree, as digests that can be recomputed on another tree
//! without touching a filesystem: a path lookup (every component it passed through, symlinks
//! followed, a missing component included) and a directory listing (the names and kinds of
//! the entries).

use std::collections::{BTreeMap, HashMap};

use nosa_cache::{Digest, EntryKind, Tree, TreeEntry};

/// Symlinks followed in one lookup before it counts as a loop (the kernel's limit).
const MAX_LINKS: usize = 40;

/// The top-level directories the sandbox mounts over the tree: lookups there see the host's
/// `/dev` and `/proc` or the run's private `/tmp`, never the tree.
pub const SANDBOX_DIRS: [&str; 3] = ["dev", "proc", "tmp"];

/// A tree seen from its root: the entries under `prefix` (`root/` for compose trees) by
/// their path below it.
pub struct TreeView<'a> {
    entries: BTreeMap<&'a str, &'a TreeEntry>,
    children: std::sync::OnceLock<HashMap<&'a str, Vec<&'a str>>>,
    /// The tree is the sandbox's `/` ([`SANDBOX_DIRS`] mounted over it), or a directory
    /// inside a bigger file system that a lookup may leave ([`Resolved::Outside`]).
    rooted: bool,
}

/// Where a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// At an entry of the tree (path below the root).
    Entry(String),
    /// At the root directory.
    Root,
    /// At a path that does not exist (its parent exists).
    Missing(String),
    /// Outside the tree: under one of [`SANDBOX_DIRS`].
    Sandbox(String),
    /// Through a non-directory, or a symlink loop.
    Invalid,
    /// Out of a tree that is not the sandbox's `/` ([`TreeView::plain`]): through an absolute
    /// symlink or a `..` above its root; the path where the lookup went on, outside.
    Outside(String),
}

impl<'a> TreeView<'a> {
    /// The entries of `tree` under `prefix` (`"root/"`, or `""` for the whole tree).
    pub fn new(tree: &'a Tree, prefix: &str) -> TreeView<'a> {
        let entries = tree
            .entries
            .iter()
            .filter_map(|e| e.path.strip_prefix(prefix).map(|p| (p, e)))
            .filter(|(p, _)| !p.is_empty())
            .collect();
        TreeView {
            entries,
            children: std::sync::OnceLock::new(),
            rooted: true,
        }
    }

    /// The entries of `tree` under `prefix` as a directory of a bigger file system (a step's
    /// work directory): no sandbox directories at its root, and a lookup that leaves it ends
    /// as [`Resolved::Outside`].
    pub fn plain(tree: &'a Tree, prefix: &str) -> TreeView<'a> {
        TreeView {
            rooted: false,
            ..TreeView::new(tree, prefix)
        }
    }

    /// The entry at `path` (below the root, no leading `/`).
    pub fn get(&self, path: &str) -> Option<&'a TreeEntry> {
        self.entries.get(path).copied()
    }

    fn children_of(&self, dir: &str) -> &[&'a str] {
        let map = self.children.get_or_init(|| {
            let mut m: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
            for p in self.entries.keys() {
                let (parent, name) = p.rsplit_once('/').unwrap_or(("", p));
                m.entry(parent).or_default().push(name);
            }
            m
        });
        map.get(dir).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Resolves absolute `path` as the kernel would in a sandbox whose `/` is this tree,
    /// feeding every step into `h`: each directory passed (and its mode), each symlink
    /// followed (its target), the final entry (kind, mode, content), or where it failed.
    pub fn resolve(&self, path: &str, h: &mut blake3::Hasher) -> Resolved {
        let mut todo: Vec<String> = components(path).rev().map(str::to_string).collect();
        let mut at: Vec<String> = Vec::new();
        let mut links = 0;
        let outside = |h: &mut blake3::Hasher, at: &[String], todo: Vec<String>| {
            let mut rest: Vec<String> = at.to_vec();
            rest.extend(todo.into_iter().rev());
            let p = rest.join("/");
            h.update(b"outside\0");
            h.update(p.as_bytes());
            Resolved::Outside(p)
        };
        while let Some(c) = todo.pop() {
            if c == ".." {
                if at.is_empty() && !self.rooted {
                    return outside(h, &["..".to_string()], todo);
                }
                at.pop();
                h.update(b"..\0");
                continue;
            }
            if self.rooted && at.is_empty() && SANDBOX_DIRS.contains(&c.as_str()) {
                let mut rest = vec![c];
                rest.extend(todo.into_iter().rev());
                let p = rest.join("/");
                h.update(b"sandbox\0");
                h.update(p.as_bytes());
                return Resolved::Sandbox(p);
            }
            at.push(c);
            let here = at.join("/");
            match self.get(&here) {
                None => {
                    h.update(b"missing\0");
                    h.update(here.as_bytes());
                    return Resolved::Missing(here);
                }
                Some(e) => match &e.kind {
                    EntryKind::Dir => {
                        h.update(b"d");
                        h.update(&e.mode.to_le_bytes());
                    }
                    EntryKind::Symlink { target } => {
                        links += 1;
                        h.update(b"l");
                        h.update(&(target.len() as u64).to_le_bytes());
                        h.update(target.as_bytes());
                        if links > MAX_LINKS {
                            h.update(b"loop");
                            return Resolved::Invalid;
                        }
                        at.pop();
                        if target.starts_with('/') {
                            if !self.rooted {
                                let mut rest: Vec<String> = vec![String::new()];
                                rest.extend(components(target).map(str::to_string));
                                return outside(h, &rest, todo);
                            }
                            at.clear();
                        }
                        todo.extend(components(target).rev().map(str::to_string));
                    }
                    EntryKind::File { digest, size } => {
                        h.update(b"f");
                        h.update(&e.mode.to_le_bytes());
                        h.update(&size.to_le_bytes());
                        h.update(&digest.0);
                        if !todo.is_empty() {
                            h.update(b"notdir");
                            return Resolved::Invalid;
                        }
                    }
                },
            }
        }
        if at.is_empty() {
            h.update(b"root");
            Resolved::Root
        } else {
            Resolved::Entry(at.join("/"))
        }
    }

    /// The digest of looking up `path`.
    pub fn lookup(&self, path: &str) -> Digest {
        self.lookup_resolved(path).0
    }

    /// The digest of looking up `path`, and where the lookup ended.
    pub fn lookup_resolved(&self, path: &str) -> (Digest, Resolved) {
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-lookup-v1\0");
        let r = self.resolve(path, &mut h);
        (h.finalize().into(), r)
    }

    /// The digest of listing directory `path`: the lookup, then each entry's name and kind.
    pub fn listing(&self, path: &str) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"nosa-listing-v1\0");
        let dir = match self.resolve(path, &mut h) {
            Resolved::Root => Some(""),
            Resolved::Entry(p) => self
                .entries
                .get_key_value(p.as_str())
                .filter(|(_, e)| e.kind == EntryKind::Dir)
                .map(|(k, _)| *k),
            _ => None,
        };
        if let Some(dir) = dir {
            let mut names: Vec<(&str, u8)> = self
                .children_of(dir)
                .iter()
                .map(|n| {
                    let full = if dir.is_empty() {
                        n.to_string()
                    } else {
                        format!("{dir}/{n}")
                    };
                    let kind = match self.get(&full).map(|e| &e.kind) {
                        Some(EntryKind::Dir) => b'd',
                        Some(EntryKind::Symlink { .. }) => b'l',
                        _ => b'f',
                    };
                    (*n, kind)
                })
                .collect();
            if dir.is_empty() && self.rooted {
                // The sandbox's own mount points are in every listing of `/`.
                names.retain(|(n, _)| !SANDBOX_DIRS.contains(n));
            }
            names.sort();
            h.update(&(names.len() as u64).to_le_bytes());
            for (n, k) in names {
                h.update(&[k]);
                h.update(&(n.len() as u64).to_le_bytes());
                h.update(n.as_bytes());
            }
        }
        h.finalize().into()
    }
}

/// The non-empty, non-`.` components of a path.
fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// The interpreter the kernel loads, unseen by a tracer, when it executes `content`: the `#!`
/// line's program, or an ELF file's `PT_INTERP` (the dynamic loader). `Err` for an ELF file
/// whose program headers cannot be read.
pub fn interpreter(content: &[u8]) -> Result<Option<String>, String> {
    if let Some(rest) = content.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        return Ok(line.split_whitespace().next().map(str::to_string));
    }
    if !content.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let bad = || "an ELF header nosa cannot read".to_string();
    let class = *content.get(4).ok_or_else(bad)?;
    if content.get(5) != Some(&1) {
        return Err("a big-endian ELF file".into());
    }
    let u = |off: usize, n: usize| -> Result<u64, String> {
        let b = content.get(off..off + n).ok_or_else(bad)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    };
    let (phoff, phentsize, phnum, word) = match class {
        2 => (u(0x20, 8)?, u(0x36, 2)?, u(0x38, 2)?, 8),
        1 => (u(0x1c, 4)?, u(0x2a, 2)?, u(0x2c, 2)?, 4),
        _ => return Err(bad()),
    };
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        if u(ph, 4)? != 3 {
            continue; // not PT_INTERP
        }
        let (off, size) = if word == 8 {
            (u(ph + 8, 8)?, u(ph + 32, 8)?)
        } else {
            (u(ph + 4, 4)?, u(ph + 16, 4)?)
        };
        let b = content
            .get(off as usize..(off + size) as usize)
            .ok_or_else(bad)?;
        let s = String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or_default());
        return Ok(Some(s.into_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, EntryKind, u32)]) -> Tree {
        let mut t = Tree {
            entries: entries
                .iter()
                .map(|(p, k, m)| TreeEntry {
                    path: format!("root/{p}"),
                    mode: *m,
                    kind: k.clone(),
                })
                .collect(),
        };
        t.normalize();
        t
    }

    fn file(c: &str) -> EntryKind {
        EntryKind::File {
            digest: Digest::of(c.as_bytes()),
            size: c.len() as u64,
        }
    }

    fn link(t: &str) -> EntryKind {
        EntryKind::Symlink { target: t.into() }
    }

    fn base() -> Vec<(&'static str, EntryKind, u32)> {
        vec![
            ("usr", EntryKind::Dir, 0o755),
            ("usr/bin", EntryKind::Dir, 0o755),
            ("usr/bin/sh", file("sh"), 0o755),
            ("bin", link("usr/bin"), 0o777),
            ("etc", EntryKind::Dir, 0o755),
            ("etc/a", file("a"), 0o644),
        ]
    }

    #[test]
    fn lookups_follow_symlinks_and_see_what_they_passed() {
        let t0 = tree(&base());
        let v0 = TreeView::new(&t0, "root/");
        assert_eq!(
            v0.resolve("/bin/sh", &mut blake3::Hasher::new()),
            Resolved::Entry("usr/bin/sh".into())
        );
        assert_eq!(
            v0.resolve("/etc/../bin/./sh", &mut blake3::Hasher::new()),
            Resolved::Entry("usr/bin/sh".into())
        );
        assert_eq!(
            v0.resolve("/tmp/x", &mut blake3::Hasher::new()),
            Resolved::Sandbox("tmp/x".into())
        );
        assert_eq!(
            v0.resolve("/etc/a/b", &mut blake3::Hasher::new()),
            Resolved::Invalid
        );
        // The content behind a link changes the lookup through it.
        let mut changed = base();
        changed[2].1 = file("sh2");
        let t1 = tree(&changed);
        let v1 = TreeView::new(&t1, "root/");
        assert_ne!(v0.lookup("/bin/sh"), v1.lookup("/bin/sh"));
        assert_eq!(v0.lookup("/etc/a"), v1.lookup("/etc/a"));
        // A missing path depends on staying missing.
        let mut created = base();
        created.push(("etc/foo", file("x"), 0o644));
        let t2 = tree(&created);
        let v2 = TreeView::new(&t2, "root/");
        assert_ne!(v0.lookup("/etc/foo"), v2.lookup("/etc/foo"));
        assert_eq!(v0.lookup("/etc/a"), v2.lookup("/etc/a"));
        // ... but the listing of /etc changes, not that of /usr.
        assert_ne!(v0.listing("/etc"), v2.listing("/etc"));
        assert_eq!(v0.listing("/usr/bin"), v2.listing("/usr/bin"));
        // A directory's mode is part of every lookup through it.
        let mut chmod = base();
        chmod[4].2 = 0o700;
        let t3 = tree(&chmod);
        assert_ne!(
            v0.lookup("/etc/a"),
            TreeView::new(&t3, "root/").lookup("/etc/a")
        );
    }

    #[test]
    fn a_plain_view_is_left_by_absolute_links_and_dotdot() {
        let t = tree(&[
            ("tmp", EntryKind::Dir, 0o755),
            ("tmp/f", file("f"), 0o644),
            ("abs", link("/etc/passwd"), 0o777),
            ("rel", link("tmp/f"), 0o777),
        ]);
        let v = TreeView::plain(&t, "root/");
        let r = |p: &str| v.resolve(p, &mut blake3::Hasher::new());
        assert_eq!(
            r("/tmp/f"),
            Resolved::Entry("tmp/f".into()),
            "no sandbox dirs"
        );
        assert_eq!(r("/rel"), Resolved::Entry("tmp/f".into()));
        assert_eq!(r("/abs"), Resolved::Outside("/etc/passwd".into()));
        assert_eq!(r("/tmp/../../x"), Resolved::Outside("../x".into()));
        let rooted = TreeView::new(&t, "root/");
        assert_eq!(
            rooted.resolve("/tmp/f", &mut blake3::Hasher::new()),
            Resolved::Sandbox("tmp/f".into())
        );
    }

    #[test]
    fn a_symlink_loop_is_invalid_not_endless() {
        let t = tree(&[("a", link("b"), 0o777), ("b", link("a"), 0o777)]);
        let v = TreeView::new(&t, "root/");
        assert_eq!(
            v.resolve("/a", &mut blake3::Hasher::new()),
            Resolved::Invalid
        );
    }

    #[test]
    fn interpreters_of_scripts_and_elf_files() {
        assert_eq!(
            interpreter(b"#!/bin/bash -e\necho").unwrap(),
            Some("/bin/bash".into())
        );
        assert_eq!(interpreter(b"echo hi").unwrap(), None);
        let sh = fs_err::read("/bin/sh").expect("the host has /bin/sh");
        let interp = interpreter(&sh).unwrap().expect("a dynamic /bin/sh");
        assert!(interp.contains("ld-linux"), "{interp}");
        assert!(interpreter(b"\x7fELF\x02\x01").is_err());
    }
}
