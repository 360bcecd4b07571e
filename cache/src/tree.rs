//! Trees: a sorted list of entries (files by blob digest, symlinks, directories) with a canonical
//! digest, the unit in which node outputs are stored and compared for early cutoff.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file whose content is the blob `digest`.
    File {
        /// blake3 of the content.
        digest: Digest,
        /// Size in bytes.
        size: u64,
    },
    /// A symbolic link; the target is stored verbatim, never followed.
    Symlink {
        /// The link target.
        target: String,
    },
    /// A directory.
    Dir,
}

impl EntryKind {
    /// Feeds the kind to `h` as tree digests encode it: a tag, then the size and content
    /// digest of a file or the length-prefixed target of a symlink.
    pub fn hash_into(&self, h: &mut blake3::Hasher) {
        match self {
            EntryKind::File { digest, size } => {
                h.update(b"f");
                h.update(&size.to_le_bytes());
                h.update(&digest.0);
            }
            EntryKind::Symlink { target } => {
                h.update(b"l");
                h.update(&(target.len() as u64).to_le_bytes());
                h.update(target.as_bytes());
            }
            EntryKind::Dir => {
                h.update(b"d");
            }
        }
    }
}

/// One path in a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Relative path with `/` separators, no `.` or `..` components.
    pub path: String,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// File, symlink or directory.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// A tree: entries sorted by path, each path once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Sorted by `path`.
    pub entries: Vec<TreeEntry>,
}

/// Bump when the canonical encoding below changes: every tree digest changes with it.
const TREE_ENCODING: &[u8] = b"nosa-tree-v1\0";

impl Tree {
    /// Sorts the entries; call after building a tree by hand.
    pub fn normalize(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.entries.dedup_by(|a, b| a.path == b.path);
    }

    /// The canonical digest: blake3 over a versioned, length-prefixed encoding of every entry
    /// (path, mode, kind, content digest or link target). Independent of mtimes and owners.
    pub fn digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(TREE_ENCODING);
        h.update(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            h.update(&(e.path.len() as u64).to_le_bytes());
            h.update(e.path.as_bytes());
            h.update(&e.mode.to_le_bytes());
            e.kind.hash_into(&mut h);
        }
        h.finalize().into()
    }

    /// The blob of the regular file at `path`, if the tree has one there (entries are sorted:
    /// a binary search).
    pub fn file(&self, path: &str) -> Option<Digest> {
        let i = self
            .entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()?;
        match self.entries[i].kind {
            EntryKind::File { digest, .. } => Some(digest),
            _ => None,
        }
    }

    /// Checks what writing the tree out relies on: every path relative and inside the tree
    /// (no empty, `.` or `..` component, not absolute, no NUL), and nothing under a symlink of
    /// the tree (writing it would follow the link out of the tree). A tree from another machine
    /// (a remote cache, a build farm) is untrusted input; the store refuses to keep one that
    /// fails.
    pub fn check_paths(&self) -> Result<(), String> {
        let mut links = std::collections::HashSet::new();
        for e in &self.entries {
            let p = e.path.as_str();
            if p.is_empty()
                || p.starts_with('/')
                || p.contains('\0')
                || p.split('/').any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(format!(
                    "tree entry {p:?} is not a relative path inside the tree"
                ));
            }
            if matches!(e.kind, EntryKind::Symlink { .. }) {
                links.insert(p);
            }
        }
        if links.is_empty() {
            return Ok(());
        }
        for e in &self.entries {
            let mut at = e.path.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if links.contains(parent) {
                    return Err(format!(
                        "tree entry {:?} lies under the symlink {parent:?}",
                        e.path
                    ));
                }
                at = parent;
            }
        }
        Ok(())
    }

    /// Digests of the blobs this tree references.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.entries.iter().filter_map(|e| match e.kind {
            EntryKind::File { digest, .. } => Some(digest),
            _ => None,
        })
    }

    /// Total size of the file contents.
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8], mode: u32) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            mode,
            kind: EntryKind::File {
                digest: Digest::of(content),
                size: content.len() as u64,
            },
        }
    }

    #[test]
    fn digest_depends_on_content_mode_and_path_not_order() {
        let mut a = Tree {
            entries: vec![file("b", b"1", 0o644), file("a", b"2", 0o644)],
        };
        let mut b = Tree {
            entries: vec![file("a", b"2", 0o644), file("b", b"1", 0o644)],
        };
        a.normalize();
        b.normalize();
        assert_eq!(a.digest(), b.digest());
        let mut c = b.clone();
        c.entries[0].mode = 0o755;
        assert_ne!(c.digest(), b.digest());
        let mut d = b.clone();
        d.entries[0].path = "c".into();
        assert_ne!(d.digest(), b.digest());
        let mut e = b.clone();
        e.entries[1] = file("b", b"3", 0o644);
        assert_ne!(e.digest(), b.digest());
        assert_eq!(b.file("a"), Some(Digest::of(b"2")));
        assert_eq!(b.file("c"), None);
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    fn tree(entries: &[(&str, EntryKind)]) -> Tree {
        Tree {
            entries: entries
                .iter()
                .map(|(p, k)| TreeEntry {
                    path: p.to_string(),
                    mode: 0o644,
                    kind: k.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn paths_that_leave_the_tree_or_go_through_a_link_are_refused() {
        let file = EntryKind::File {
            digest: Digest::of(b"x"),
            size: 1,
        };
        let link = EntryKind::Symlink {
            target: "/etc".into(),
        };
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "a/../../b", ""] {
            let e = tree(&[(bad, file.clone())]).check_paths().unwrap_err();
            assert!(e.contains("not a relative path"), "{bad}: {e}");
        }
        let e = tree(&[
            ("a", link.clone()),
            ("a-b", link.clone()),
            ("a/passwd", file.clone()),
        ])
        .check_paths()
        .unwrap_err();
        assert!(
            e.contains("\"a/passwd\" lies under the symlink \"a\""),
            "{e}"
        );
        assert!(
            tree(&[("a", link.clone()), ("ab/c", file.clone())])
                .check_paths()
                .is_ok()
        );
        // The store keeps none of them.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let e = store
            .put_tree(&tree(&[("a", link), ("a/passwd", file)]))
            .unwrap_err();
        assert!(e.to_string().contains("lies under the symlink"), "{e}");
    }
}
