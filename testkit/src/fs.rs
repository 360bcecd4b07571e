//! Writing and copying file trees.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes files, symlinks, hardlinks and directories under a root, creating parents.
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    root: PathBuf,
}

impl TreeBuilder {
    /// A builder writing under `root`.
    pub fn new(root: &Path) -> TreeBuilder {
        TreeBuilder {
            root: root.to_path_buf(),
        }
    }

    fn parent_of(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs_err::create_dir_all(p.parent().expect("a path below the root")).unwrap();
        p
    }

    /// A file with `content` and permission bits `mode`.
    pub fn file(&self, rel: &str, content: &str, mode: u32) -> &Self {
        let p = self.parent_of(rel);
        fs_err::write(&p, content).unwrap();
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// A symlink at `rel` pointing to `target`.
    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.parent_of(rel);
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    /// A hardlink at `rel` to the existing `existing`.
    pub fn hardlink(&self, existing: &str, rel: &str) -> &Self {
        let p = self.parent_of(rel);
        fs_err::hard_link(self.root.join(existing), p).unwrap();
        self
    }

    /// A directory (empty unless something is written below it).
    pub fn dir(&self, rel: &str) -> &Self {
        fs_err::create_dir_all(self.root.join(rel)).unwrap();
        self
    }
}

/// `cp -a FROM TO`: hardlinks, modes, owners and times kept (a workdir with its store).
pub fn cp_a(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp (Debian package coreutils)");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Copies the tree at `from` to `to`: directories, files (content and mode), symlinks as
/// symlinks.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            fs_err::create_dir_all(&dest).unwrap();
        } else if e.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            fs_err::copy(e.path(), &dest).unwrap();
        }
    }
}
