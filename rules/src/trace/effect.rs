//! A run's effect on a tree as a list of changes, read from the upper directory of the
//! overlayfs it ran on (whiteouts are deletions, opaque directories hide what was below), and
//! applied to a tree listing without touching a filesystem.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nosa_cache::{Digest, EntryKind, Store, Tree, TreeEntry};
use nosa_engine::RunError;

use crate::listing::take_subtree;
use serde::{Deserialize, Serialize};

/// One change, paths below the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// The path and everything below it are gone.
    Delete {
        /// The path.
        path: String,
    },
    /// Everything below the directory is gone (it is put again right after).
    Opaque {
        /// The directory.
        path: String,
    },
    /// The entry is written (a file's blob is in the store); a non-directory replaces whatever
    /// was below the path.
    Put {
        /// The entry (its path below the root).
        entry: TreeEntry,
    },
}

/// Reads the upper directory `upper` as changes in path order. The overlay's own markers
/// (whiteouts, opaque directories) become deletions and opaque changes and the whiteouts are
/// removed; what is left is ingested by the store like any node output (files moved in,
/// modes read before any file is stored, files with other links copied).
pub fn read_upper(store: &Store, upper: &Path) -> Result<Vec<Change>, RunError> {
    let mut markers = Vec::new();
    for e in walkdir::WalkDir::new(upper)
        .min_depth(1)
        .follow_links(false)
    {
        let e = e.map_err(|e| RunError::msg(format!("reading the run's changes: {e}")))?;
        let rel = e
            .path()
            .strip_prefix(upper)
            .expect("below upper")
            .to_str()
            .ok_or_else(|| RunError::msg(format!("{}: not a UTF-8 path", e.path().display())))?
            .to_string();
        let ft = e.file_type();
        if ft.is_dir() {
            if super::sys::lgetxattr(e.path(), "trusted.overlay.opaque").as_deref() == Some(b"y") {
                markers.push(Change::Opaque { path: rel });
            }
        } else if ft.is_file() {
            if super::sys::lgetxattr(e.path(), "trusted.overlay.metacopy").is_some() {
                return Err(RunError::msg(format!(
                    "{rel}: a metadata-only copy-up; the overlay must be mounted metacopy=off"
                )));
            }
        } else if !ft.is_symlink() {
            let meta = fs_err::symlink_metadata(e.path())?;
            if !(ft.is_char_device() && meta.rdev() == 0) {
                return Err(RunError::msg(format!(
                    "/{rel}: the run made a device node, socket or fifo, which a tree cannot hold"
                )));
            }
            markers.push(Change::Delete { path: rel });
        }
    }
    for m in &markers {
        if let Change::Delete { path } = m {
            fs_err::remove_file(upper.join(path))?;
        }
    }
    let (_, tree) = store.ingest_dir(upper, true)?;
    let mut out = markers;
    out.extend(tree.entries.into_iter().map(|entry| Change::Put { entry }));
    // Path order; at one path an opaque marker comes before the directory put again.
    out.sort_by(|a, b| {
        let key = |c: &Change| match c {
            Change::Delete { path } | Change::Opaque { path } => (path.clone(), 0),
            Change::Put { entry } => (entry.path.clone(), 1),
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// `tree` with `changes` applied to its entries under `prefix` (`root/`); other entries are
/// kept as they are.
pub fn apply(tree: &Tree, prefix: &str, changes: &[Change]) -> Tree {
    let mut map: BTreeMap<String, TreeEntry> = tree
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect();
    for c in changes {
        match c {
            Change::Delete { path } => {
                let full = format!("{prefix}{path}");
                take_subtree(&mut map, &full, true);
            }
            Change::Opaque { path } => {
                take_subtree(&mut map, &format!("{prefix}{path}"), false);
            }
            Change::Put { entry } => {
                let full = format!("{prefix}{}", entry.path);
                if entry.kind != EntryKind::Dir {
                    take_subtree(&mut map, &full, false);
                }
                map.insert(
                    full.clone(),
                    TreeEntry {
                        path: full,
                        ..entry.clone()
                    },
                );
            }
        }
    }
    Tree {
        entries: map.into_values().collect(),
    }
}

/// The files a list of changes writes: blob and size.
pub fn blobs(changes: &[Change]) -> impl Iterator<Item = (Digest, u64)> + '_ {
    changes.iter().filter_map(|c| match c {
        Change::Put {
            entry:
                TreeEntry {
                    kind: EntryKind::File { digest, size },
                    ..
                },
        } => Some((*digest, *size)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            mode: 0o755,
            kind,
        }
    }

    #[test]
    fn an_upper_directory_reads_as_changes_with_hardlinked_modes_kept() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let upper = tmp.path().join("upper");
        fs_err::create_dir_all(upper.join("etc")).unwrap();
        fs_err::write(upper.join("etc/a"), "x").unwrap();
        std::fs::set_permissions(upper.join("etc/a"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        fs_err::hard_link(upper.join("etc/a"), upper.join("etc/b")).unwrap();
        nosa_testkit::run(
            "mknod",
            &[upper.join("etc/gone").to_str().unwrap(), "c", "0", "0"],
            "coreutils",
        );
        let changes = read_upper(&store, &upper).unwrap();
        let put = |p: &str| {
            changes.iter().find_map(|c| match c {
                Change::Put { entry } if entry.path == p => Some(entry.mode),
                _ => None,
            })
        };
        assert_eq!((put("etc/a"), put("etc/b")), (Some(0o755), Some(0o755)));
        assert!(changes.contains(&Change::Delete {
            path: "etc/gone".into()
        }));
        assert!(blobs(&changes).all(|(d, _)| store.has_blob(&d)));
    }

    #[test]
    fn deletions_opaque_directories_and_replacements() {
        let f = |c: &str| EntryKind::File {
            digest: Digest::of(c.as_bytes()),
            size: c.len() as u64,
        };
        let mut t = Tree {
            entries: vec![
                e("meta.json", f("{}")),
                e("root/a", EntryKind::Dir),
                e("root/a/x", f("x")),
                e("root/b", EntryKind::Dir),
                e("root/b/y", f("y")),
                e("root/c", EntryKind::Dir),
                e("root/c/z", f("z")),
                e("root/d", f("d")),
            ],
        };
        t.normalize();
        let changes = vec![
            Change::Delete { path: "a".into() },
            Change::Opaque { path: "b".into() },
            Change::Put {
                entry: e("b", EntryKind::Dir),
            },
            Change::Put {
                entry: e("b/new", f("n")),
            },
            Change::Put {
                entry: e("c", f("now a file")),
            },
            Change::Put {
                entry: e("d", EntryKind::Symlink { target: "b".into() }),
            },
        ];
        let out = apply(&t, "root/", &changes);
        let paths: Vec<&str> = out.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["meta.json", "root/b", "root/b/new", "root/c", "root/d"]
        );
        assert_eq!(blobs(&changes).count(), 2);
    }
}
