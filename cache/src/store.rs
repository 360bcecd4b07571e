//! The content-addressed store: blobs by blake3 of their content, trees by their canonical digest,
//! ingestion of a directory and materialization of a tree back into one.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::atomic::{publish, sync_dir, temp_name, write_atomic};
use crate::hash::hash_file;
use crate::tree::{EntryKind, Tree, TreeEntry};
use crate::{Digest, Error, Result};

/// How a tree's files are placed when materialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Materialize {
    /// Copy (the kernel reflinks where the filesystem can). Safe for files users may edit.
    /// In every mode, an entry already in place (the same link, directory or file: see
    /// `in_place`) is left untouched, so materializing a tree again writes nothing.
    Copy,
    /// Hardlink to the store's read-only blob, copy if that fails. Only for files nobody edits.
    Hardlink,
    /// Hardlink every file to its blob whatever mode the tree records (files come out 0444;
    /// copy if the link fails). Only for a reader that never writes and ignores file modes.
    Readonly,
}

/// The mode of every blob file.
const BLOB_MODE: u32 = 0o444;

/// A content-addressed store rooted at a directory (`<workdir>/cache/store`).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// Blobs this process has seen present (stat'ed or published): a blob is only ever
    /// deleted by [`Store::gc`], which empties the set. A build checks the same blobs many
    /// times (every record it reuses, every tree a rule hands over: the example's trees name
    /// ~1,500 blobs, ~4 ms of `statx` each time).
    present:
        std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Digest, crate::FxBuildHasher>>>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for sub in ["blobs", "trees", "ac", "tmp", "state", "logs"] {
            fs_err::create_dir_all(root.join(sub))?;
        }
        Ok(Store {
            root,
            present: Default::default(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Scratch space on the store's filesystem, for temporaries that are renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Directory for engine state files (stat cache, last build state).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Directory for node logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `<root>/<kind>/<aa>/<hex><ext>`, built in one allocation: it is asked for once per node
    /// (action records) or per file (blobs) on every build, the no-op one included.
    pub(crate) fn sharded(&self, kind: &str, d: &Digest, ext: &str) -> PathBuf {
        let hex = d.to_hex();
        let root = self.root.as_os_str();
        let mut p = std::ffi::OsString::with_capacity(root.len() + kind.len() + hex.len() + 8);
        p.push(root);
        if !root.as_encoded_bytes().ends_with(b"/") {
            p.push("/");
        }
        p.push(kind);
        p.push("/");
        p.push(&hex[..2]);
        p.push("/");
        p.push(&hex);
        p.push(ext);
        PathBuf::from(p)
    }

    /// Path of blob `d` (which may not exist).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.sharded("blobs", d, "")
    }

    /// Path of tree `d` (which may not exist).
    pub fn tree_path(&self, d: &Digest) -> PathBuf {
        self.sharded("trees", d, ".json")
    }

    /// Where a fact derived from blob `d` alone is kept (`derived/<kind>/<aa>/<hex>`; for
    /// example its SHA-256, which builds/ records): computed once, since a blob never
    /// changes, and removed by [`Store::gc`] with the blob. The directory may not exist yet.
    pub fn derived_path(&self, kind: &str, d: &Digest) -> PathBuf {
        self.sharded(&format!("derived/{kind}"), d, "")
    }

    /// The SHA-256 (hex) of blob `d`: computed once and kept at [`Store::derived_path`]
    /// (`sha256`), since a blob never changes. builds/ records it for every artifact, and
    /// REAPI and HTTP remote caches name blobs by it; a 75 MB qcow2 costs ~0.2 s to hash.
    pub fn sha256_of(&self, d: &Digest) -> Result<String> {
        let memo = self.derived_path("sha256", d);
        if let Ok(hex) = fs_err::read_to_string(&memo)
            && hex.len() == 64
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(hex);
        }
        let (hex, _) = crate::hash::sha256_file(&self.blob_path(d))?;
        fs_err::create_dir_all(memo.parent().expect("sharded path"))?;
        crate::atomic::write_atomic(&self.tmp_dir(), &memo, hex.as_bytes())?;
        Ok(hex)
    }

    /// Whether blob `d` is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        if self.present.lock().expect("present").contains(d) {
            return true;
        }
        let there = self.blob_path(d).exists();
        if there {
            self.seen(d);
        }
        there
    }

    /// Notes that blob `d` is present.
    fn seen(&self, d: &Digest) {
        self.present.lock().expect("present").insert(*d);
    }

    /// Forgets which blobs are present (before blobs are deleted).
    pub(crate) fn forget_present(&self) {
        self.present.lock().expect("present").clear();
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let dest = self.blob_path(&d);
        fs_err::create_dir_all(dest.parent().expect("sharded path"))?;
        let tmp = temp_name(&self.tmp_dir(), "blob");
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(BLOB_MODE))?;
        f.sync_all()?;
        drop(f);
        publish(&tmp, &dest)?;
        self.seen(&d);
        Ok(d)
    }

    /// Stores the file at `src` as a blob and returns its digest. With `take`, the file is
    /// renamed into the store's tmp/ first (it must be on the same filesystem and nobody else
    /// may hold it) and hashed once there, so what is hashed is what is published; a blob
    /// the store already has is dropped without an fsync. Otherwise it is hashed, copied
    /// unless the store has it, and the copy is hashed again (a file changed under us must not
    /// enter the store misnamed).
    pub fn put_file(&self, src: &Path, take: bool) -> Result<Digest> {
        let tmp = temp_name(&self.tmp_dir(), "blob");
        let moved = take && fs_err::rename(src, &tmp).is_ok();
        let d = if moved {
            let d = hash_file(&tmp)?;
            if self.has_blob(&d) {
                fs_err::remove_file(&tmp)?;
                return Ok(d);
            }
            d
        } else {
            let d = hash_file(src)?;
            if self.has_blob(&d) {
                return Ok(d);
            }
            fs_err::copy(src, &tmp)?;
            d
        };
        let f = fs_err::File::open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(BLOB_MODE))?;
        f.sync_all()?;
        drop(f);
        if !moved && hash_file(&tmp)? != d {
            let _ = fs_err::remove_file(&tmp);
            return Err(Error::Corrupt(format!(
                "{} changed while it was being stored",
                src.display()
            )));
        }
        let dest = self.blob_path(&d);
        fs_err::create_dir_all(dest.parent().expect("sharded path"))?;
        publish(&tmp, &dest)?;
        self.seen(&d);
        Ok(d)
    }

    /// Stores `tree` (its blobs must already be stored) and returns its digest. The one way a
    /// tree enters the store, so the one place its paths are checked ([`Tree::check_paths`]):
    /// what the store materializes or syncs was checked when it was put.
    pub fn put_tree(&self, tree: &Tree) -> Result<Digest> {
        tree.check_paths().map_err(Error::Invalid)?;
        let d = tree.digest();
        let dest = self.tree_path(&d);
        if dest.exists() {
            return Ok(d);
        }
        fs_err::create_dir_all(dest.parent().expect("sharded path"))?;
        let bytes = serde_json::to_vec(tree)?;
        write_atomic(&self.tmp_dir(), &dest, &bytes)?;
        Ok(d)
    }

    /// Reads tree `d`, checking that its content matches its name.
    pub fn get_tree(&self, d: &Digest) -> Result<Tree> {
        let path = self.tree_path(d);
        let bytes = fs_err::read(&path)?;
        let tree: Tree = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
        if tree.digest() != *d {
            return Err(Error::Corrupt(format!(
                "{}: content does not match its digest",
                path.display()
            )));
        }
        Ok(tree)
    }

    /// Whether tree `d` and every blob it names are present.
    pub fn tree_complete(&self, d: &Digest) -> bool {
        match self.get_tree(d) {
            Ok(t) => t.blobs().all(|b| self.has_blob(&b)),
            Err(_) => false,
        }
    }

    /// Ingests the directory `dir` as a tree: every file becomes a blob (hashed in parallel),
    /// symlinks are kept as links, directories as entries. With `take`, files are moved into
    /// the store instead of copied. Device nodes, sockets and fifos are refused.
    pub fn ingest_dir(&self, dir: &Path, take: bool) -> Result<(Digest, Tree)> {
        self.ingest_dir_hinted(dir, take, None)
    }

    /// [`Store::ingest_dir`], with `hint` a tree that may name some of `dir`'s files (the
    /// node's previous output, whose unchanged files a run links in from the store): a file
    /// at a path the hint names with digest `d` that is blob `d`'s own inode (a hardlink to
    /// it) is that blob, and is not read again. Anything else is hashed as usual.
    pub fn ingest_dir_hinted(
        &self,
        dir: &Path,
        take: bool,
        hint: Option<&Tree>,
    ) -> Result<(Digest, Tree)> {
        use rayon::prelude::*;
        let hinted: std::collections::HashMap<&str, Digest> = hint
            .into_iter()
            .flat_map(|t| &t.entries)
            .filter_map(|e| match e.kind {
                EntryKind::File { digest, .. } => Some((e.path.as_str(), digest)),
                _ => None,
            })
            .collect();
        let linked_blob = |rel: &str, meta: &std::fs::Metadata| -> Option<Digest> {
            let d = *hinted.get(rel)?;
            if meta.nlink() < 2 {
                return None;
            }
            let b = self.blob_path(&d).symlink_metadata().ok()?;
            (b.dev() == meta.dev() && b.ino() == meta.ino()).then_some(d)
        };
        let mut walked = Vec::new();
        for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            let rel = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir yields children")
                .to_str()
                .ok_or_else(|| {
                    Error::Invalid(format!("non-UTF-8 path {}", entry.path().display()))
                })?
                .to_string();
            walked.push((rel, entry.path().to_path_buf(), entry.file_type()));
        }
        // Every mode is read before any file is stored: storing a file makes its inode the
        // blob (mode 0444), and a hardlink to it elsewhere in the tree would otherwise be
        // recorded with the blob's mode or its own depending on timing and on whether the
        // blob existed already.
        let walked: Vec<(String, PathBuf, std::fs::FileType, std::fs::Metadata)> = walked
            .into_par_iter()
            .map(|(rel, path, ft)| {
                let meta = fs_err::symlink_metadata(&path)?;
                Ok((rel, path, ft, meta))
            })
            .collect::<Result<_>>()?;
        let entries: Vec<TreeEntry> = walked
            .into_par_iter()
            .map(|(rel, path, ft, meta)| -> Result<TreeEntry> {
                let mode = meta.mode() & 0o7777;
                let kind = if ft.is_symlink() {
                    let target = fs_err::read_link(&path)?;
                    let target = target.to_str().ok_or_else(|| {
                        Error::Invalid(format!("non-UTF-8 link target in {}", path.display()))
                    })?;
                    EntryKind::Symlink {
                        target: target.to_string(),
                    }
                } else if ft.is_dir() {
                    EntryKind::Dir
                } else if ft.is_file() {
                    // A file with other links is copied: moving its inode into the store would
                    // leave the blob reachable (and writable) through them.
                    let digest = match linked_blob(&rel, &meta) {
                        Some(d) => d,
                        None => self.put_file(&path, take && meta.nlink() == 1)?,
                    };
                    EntryKind::File {
                        digest,
                        size: meta.len(),
                    }
                } else {
                    return Err(Error::Invalid(format!(
                        "{}: only files, directories and symlinks can be stored",
                        path.display()
                    )));
                };
                Ok(TreeEntry {
                    path: rel,
                    mode,
                    kind,
                })
            })
            .collect::<Result<_>>()?;
        let mut tree = Tree { entries };
        tree.normalize();
        let d = self.put_tree(&tree)?;
        Ok((d, tree))
    }

    /// Writes `tree` under `dest`, replacing what is at each of its paths. Each file is written
    /// under a temporary name and renamed, so a reader never sees half a file.
    pub fn materialize(&self, tree: &Tree, dest: &Path, how: Materialize) -> Result<()> {
        fs_err::create_dir_all(dest)?;
        for e in &tree.entries {
            let target = dest.join(&e.path);
            match &e.kind {
                EntryKind::Dir => match target.symlink_metadata() {
                    Ok(m) if m.is_dir() && m.mode() & 0o7777 == e.mode => {}
                    found => {
                        if found.is_ok_and(|m| !m.is_dir()) {
                            fs_err::remove_file(&target)?;
                        }
                        fs_err::create_dir_all(&target)?;
                        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(e.mode))?;
                    }
                },
                EntryKind::Symlink { target: link } => {
                    if fs_err::read_link(&target).is_ok_and(|t| t.as_os_str() == link.as_str()) {
                        continue;
                    }
                    let parent = target.parent().expect("joined path has a parent");
                    let tmp = temp_name(parent, "ln");
                    std::os::unix::fs::symlink(link, &tmp)
                        .map_err(|err| Error::Io(annotate(err, &tmp)))?;
                    fs_err::rename(&tmp, &target)?;
                }
                EntryKind::File { digest, size } => {
                    let blob = self.blob_path(digest);
                    // A hardlink shares the blob's inode and so its mode (0444): only an entry
                    // of exactly that mode may be one (an 0555 executable may not).
                    let link = match how {
                        Materialize::Copy => false,
                        Materialize::Hardlink => e.mode == BLOB_MODE,
                        Materialize::Readonly => true,
                    };
                    if in_place(&blob, &target, e.mode, *size, link) {
                        continue;
                    }
                    let parent = target.parent().expect("joined path has a parent");
                    fs_err::create_dir_all(parent)?;
                    let tmp = temp_name(parent, "mat");
                    let linked = link && std::fs::hard_link(&blob, &tmp).is_ok();
                    if !linked {
                        fs_err::copy(&blob, &tmp)?;
                        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(e.mode))?;
                    }
                    fs_err::rename(&tmp, &target)?;
                    if linked {
                        // rename(2) of a link onto another link of the same inode does nothing
                        // and leaves both: a target linked meanwhile keeps the temporary.
                        let _ = fs_err::remove_file(&tmp);
                    }
                }
            }
        }
        Ok(())
    }

    /// Where [`Store::sync_into`] keeps the staged tree called `name` (a node and its
    /// dependency): `stage/<name>`. Removed by [`Store::gc`], which may delete blobs it links.
    pub fn stage_path(&self, name: &str) -> PathBuf {
        self.root.join("stage").join(name)
    }

    /// Makes `dest` hold exactly `tree`, as [`Store::materialize`] with `how` would make it
    /// in an empty directory, touching only what differs: entries already in place are left
    /// (a hardlink to the right blob, the same symlink, a directory of the right mode),
    /// entries the tree lacks or holds as another type are removed first. A kept staging
    /// directory pays for what changed since its last use, not for the tree (on a file
    /// system where each new inode costs a scan of recently freed ones, mkdir of hundreds of
    /// directories was most of staging). Interrupted, it leaves a directory the next call
    /// repairs.
    pub fn sync_into(&self, tree: &Tree, dest: &Path, how: Materialize) -> Result<()> {
        if dest.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            fs_err::remove_file(dest)?;
        }
        if dest.is_dir() {
            let mut wanted: std::collections::HashMap<&str, bool> = tree
                .entries
                .iter()
                .map(|e| (e.path.as_str(), matches!(e.kind, EntryKind::Dir)))
                .collect();
            // Directories the tree implies (parents of its entries) are kept too, as
            // materialize would make them.
            for e in &tree.entries {
                let mut p = e.path.as_str();
                while let Some((parent, _)) = p.rsplit_once('/') {
                    wanted.entry(parent).or_insert(true);
                    p = parent;
                }
            }
            let mut walk = walkdir::WalkDir::new(dest).min_depth(1).into_iter();
            while let Some(entry) = walk.next() {
                let entry = entry.map_err(|e| Error::Io(e.into()))?;
                let rel = entry
                    .path()
                    .strip_prefix(dest)
                    .expect("walked under dest")
                    .to_str();
                let is_dir = entry.file_type().is_dir();
                if rel.and_then(|r| wanted.get(r)) == Some(&is_dir) {
                    continue;
                }
                if is_dir {
                    walk.skip_current_dir();
                    fs_err::remove_dir_all(entry.path())?;
                } else {
                    fs_err::remove_file(entry.path())?;
                }
            }
        }
        self.materialize(tree, dest, how)
    }

    /// fsyncs the store's directories touched by publication (used after bulk ingestion).
    pub fn sync(&self) -> Result<()> {
        sync_dir(&self.root)
    }
}

/// Copies compared byte for byte to tell whether they are in place; larger ones are copied
/// again.
const COMPARE_MAX: u64 = 64 * 1024;

/// Whether `target` already is what materializing `blob` there would make: a hardlink to it
/// (`link`), or a separate file of mode `mode` with the same bytes (compared up to
/// [`COMPARE_MAX`]). A copy is never left sharing the blob's inode: whoever edits it would
/// edit the store.
fn in_place(blob: &Path, target: &Path, mode: u32, size: u64, link: bool) -> bool {
    let (Ok(t), Ok(b)) = (target.symlink_metadata(), blob.metadata()) else {
        return false;
    };
    if !t.is_file() {
        return false;
    }
    let same_inode = t.dev() == b.dev() && t.ino() == b.ino();
    if link {
        return same_inode;
    }
    if same_inode || t.mode() & 0o7777 != mode || t.len() != size || size > COMPARE_MAX {
        return false;
    }
    matches!((fs_err::read(target), fs_err::read(blob)), (Ok(x), Ok(y)) if x == y)
}

fn annotate(err: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_paths_are_the_joined_layout() {
        let d = Digest::of(b"x");
        let hex = d.to_hex();
        for root in ["/w/cache/store", "/w/cache/store/"] {
            let store = Store {
                root: PathBuf::from(root),
                present: Default::default(),
            };
            let joined = Path::new("/w/cache/store/ac")
                .join(&hex[..2])
                .join(format!("{hex}.json"));
            let got = store.sharded("ac", &d, ".json");
            assert_eq!(got.as_os_str(), joined.as_os_str(), "root {root}");
            assert_eq!(
                store.blob_path(&d).as_os_str(),
                Path::new("/w/cache/store/blobs")
                    .join(&hex[..2])
                    .join(&hex)
                    .as_os_str()
            );
        }
    }

    #[test]
    fn ingest_then_materialize_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(src.join("d")).unwrap();
        fs_err::write(src.join("d/a.txt"), "hello").unwrap();
        fs_err::write(src.join("x.sh"), "#!/bin/sh\n").unwrap();
        fs_err::set_permissions(src.join("x.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("d/a.txt", src.join("link")).unwrap();
        let (d, tree) = store.ingest_dir(&src, false).unwrap();
        assert_eq!(tree.entries.len(), 4);
        assert!(store.tree_complete(&d));
        let out = tmp.path().join("out");
        store.materialize(&tree, &out, Materialize::Copy).unwrap();
        assert_eq!(
            fs_err::read_to_string(out.join("d/a.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs_err::metadata(out.join("x.sh")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs_err::read_link(out.join("link")).unwrap(),
            Path::new("d/a.txt")
        );
        let (d2, _) = store.ingest_dir(&out, false).unwrap();
        assert_eq!(d, d2, "materialized tree ingests to the same digest");
    }

    /// `t` without its directory entries.
    fn without_dirs(t: &Tree) -> Tree {
        Tree {
            entries: t
                .entries
                .iter()
                .filter(|e| !matches!(e.kind, EntryKind::Dir))
                .cloned()
                .collect(),
        }
    }

    #[test]
    fn sync_into_leaves_exactly_the_tree_whatever_was_there() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(src.join("d/e")).unwrap();
        fs_err::write(src.join("d/e/kept"), "kept").unwrap();
        fs_err::write(src.join("d/was-file"), "file").unwrap();
        std::os::unix::fs::symlink("d", src.join("was-link")).unwrap();
        let (_, first) = store.ingest_dir(&src, false).unwrap();
        let dest = tmp.path().join("kept");
        store
            .sync_into(&first, &dest, Materialize::Readonly)
            .unwrap();
        let kept_ino = fs_err::metadata(dest.join("d/e/kept")).unwrap().ino();
        // The next tree: a file becomes a directory, a link a file, one file goes, one is new.
        fs_err::remove_file(src.join("d/was-file")).unwrap();
        fs_err::create_dir(src.join("d/was-file")).unwrap();
        fs_err::write(src.join("d/was-file/inside"), "x").unwrap();
        fs_err::remove_file(src.join("was-link")).unwrap();
        fs_err::write(src.join("was-link"), "now a file").unwrap();
        fs_err::write(src.join("new"), "new").unwrap();
        let (want, second) = store.ingest_dir(&src, false).unwrap();
        // And what a rule left behind in the kept directory.
        fs_err::write(dest.join("d/e/left-behind"), "junk").unwrap();
        fs_err::create_dir_all(dest.join("junkdir/sub")).unwrap();
        store
            .sync_into(&second, &dest, Materialize::Readonly)
            .unwrap();
        assert_eq!(
            fs_err::metadata(dest.join("d/e/kept")).unwrap().ino(),
            kept_ino,
            "an entry in place is left"
        );
        assert!(!dest.join("junkdir").exists() && !dest.join("d/e/left-behind").exists());
        // Read-only staging links blobs (0444), so compare by content and type, through a
        // copy of the synced directory made with the tree's modes.
        let copy = tmp.path().join("copy");
        store
            .materialize(&second, &copy, Materialize::Copy)
            .unwrap();
        let names = |root: &Path| -> Vec<String> {
            walkdir::WalkDir::new(root)
                .sort_by_file_name()
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    let kind = if e.file_type().is_dir() {
                        "d"
                    } else if e.file_type().is_symlink() {
                        "l"
                    } else {
                        "f"
                    };
                    format!("{kind} {}", e.path().strip_prefix(root).unwrap().display())
                })
                .collect()
        };
        assert_eq!(names(&dest), names(&copy));
        assert_eq!(store.ingest_dir(&copy, false).unwrap().0, want);
        assert_eq!(
            fs_err::read_to_string(dest.join("was-link")).unwrap(),
            "now a file"
        );
        // A tree that names a file but not its directory keeps the directory.
        store
            .sync_into(&without_dirs(&second), &dest, Materialize::Readonly)
            .unwrap();
        assert!(dest.join("d/e/kept").is_file());
        assert!(dest.join("d/was-file/inside").is_file());
        store
            .sync_into(&second, &dest, Materialize::Readonly)
            .unwrap();
        // Interrupted half way (simulated: a file removed behind its back): repaired.
        fs_err::remove_file(dest.join("new")).unwrap();
        store
            .sync_into(&second, &dest, Materialize::Readonly)
            .unwrap();
        assert_eq!(names(&dest), names(&copy));
    }

    #[test]
    fn materializing_again_writes_nothing_and_restores_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(src.join("d")).unwrap();
        fs_err::write(src.join("d/ro"), "read-only").unwrap();
        fs_err::set_permissions(src.join("d/ro"), std::fs::Permissions::from_mode(0o444)).unwrap();
        fs_err::write(src.join("d/rw"), "editable").unwrap();
        std::os::unix::fs::symlink("d/ro", src.join("link")).unwrap();
        let (_, tree) = store.ingest_dir(&src, false).unwrap();
        let ids = |out: &Path| -> Vec<(u64, i64, i64)> {
            ["d", "d/ro", "d/rw", "link"]
                .iter()
                .map(|p| {
                    let m = out.join(p).symlink_metadata().unwrap();
                    (m.ino(), m.ctime(), m.ctime_nsec())
                })
                .collect()
        };
        let listing = |out: &Path| {
            let mut v: Vec<_> = walkdir::WalkDir::new(out)
                .into_iter()
                .map(|e| e.unwrap().path().to_path_buf())
                .collect();
            v.sort();
            v
        };
        for how in [
            Materialize::Copy,
            Materialize::Hardlink,
            Materialize::Readonly,
        ] {
            let out = tmp.path().join(format!("{how:?}"));
            store.materialize(&tree, &out, how).unwrap();
            let (first, names) = (ids(&out), listing(&out));
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.materialize(&tree, &out, how).unwrap();
            assert_eq!(ids(&out), first, "{how:?}: an entry in place was rewritten");
            // rename(2) onto another link of the same inode would have left the temporary.
            assert_eq!(listing(&out), names, "{how:?}: a temporary was left");
            // A copy edited in place, or a link replaced by an edited file, is put back.
            let rw = out.join("d/rw");
            let _ = fs_err::remove_file(&rw);
            fs_err::write(&rw, "Editable").unwrap();
            store.materialize(&tree, &out, how).unwrap();
            assert_eq!(fs_err::read_to_string(&rw).unwrap(), "editable", "{how:?}");
            // A copy never shares the blob's inode.
            if how == Materialize::Copy {
                let blob = store
                    .blob_path(&Digest::of(b"read-only"))
                    .metadata()
                    .unwrap();
                assert_ne!(out.join("d/ro").metadata().unwrap().ino(), blob.ino());
            }
        }
    }

    #[test]
    fn a_hint_names_only_files_that_are_its_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(&src).unwrap();
        for (name, body) in [("same", "one"), ("edited", "two"), ("swapped", "three")] {
            fs_err::write(src.join(name), body).unwrap();
            fs_err::set_permissions(src.join(name), std::fs::Permissions::from_mode(0o444))
                .unwrap();
        }
        let (_, before) = store.ingest_dir(&src, false).unwrap();
        // The next run: `same` linked in from the store, `edited` a new file at the hinted
        // path, `swapped` a link to another blob than the hint names.
        let out = tmp.path().join("out");
        fs_err::create_dir_all(&out).unwrap();
        let d = |s: &str| Digest::of(s.as_bytes());
        fs_err::hard_link(store.blob_path(&d("one")), out.join("same")).unwrap();
        fs_err::write(out.join("edited"), "TWO").unwrap();
        fs_err::set_permissions(out.join("edited"), std::fs::Permissions::from_mode(0o444))
            .unwrap();
        fs_err::hard_link(store.blob_path(&d("one")), out.join("swapped")).unwrap();
        let (_, after) = store.ingest_dir_hinted(&out, true, Some(&before)).unwrap();
        let digest = |t: &Tree, p: &str| {
            t.entries.iter().find_map(|e| match e.kind {
                EntryKind::File { digest, .. } if e.path == p => Some(digest),
                _ => None,
            })
        };
        assert_eq!(digest(&after, "same"), Some(d("one")));
        assert_eq!(digest(&after, "edited"), Some(d("TWO")));
        assert_eq!(digest(&after, "swapped"), Some(d("one")));
        assert_eq!(
            fs_err::read_to_string(store.blob_path(&d("TWO"))).unwrap(),
            "TWO"
        );
        // A file that is its hinted blob's inode is not read: shown by a blob whose bytes
        // were changed behind the store's back (never done outside this test).
        let out2 = tmp.path().join("out2");
        fs_err::create_dir_all(&out2).unwrap();
        fs_err::hard_link(store.blob_path(&d("three")), out2.join("swapped")).unwrap();
        fs_err::write(store.blob_path(&d("three")), "THREE").unwrap();
        let (_, again) = store.ingest_dir_hinted(&out2, true, Some(&before)).unwrap();
        assert_eq!(
            digest(&again, "swapped"),
            Some(d("three")),
            "taken from the hint"
        );
        let (_, unhinted) = store.ingest_dir(&out2, false).unwrap();
        assert_eq!(
            digest(&unhinted, "swapped"),
            Some(d("THREE")),
            "read without it"
        );
    }

    #[test]
    fn hardlinked_files_keep_their_mode_when_taken() {
        // Two names for one 0644 inode, ingested with `take` into a store that has or has not
        // the blob already: both names are recorded 0644 every time.
        for seeded in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let store = Store::open(tmp.path().join("store")).unwrap();
            if seeded {
                store.put_bytes(b"shared content").unwrap();
            }
            let src = tmp.path().join("src");
            fs_err::create_dir_all(&src).unwrap();
            for i in 0..50 {
                let a = src.join(format!("a{i:02}"));
                fs_err::write(&a, "shared content").unwrap();
                fs_err::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
                fs_err::hard_link(&a, src.join(format!("b{i:02}"))).unwrap();
            }
            let (_, tree) = store.ingest_dir(&src, true).unwrap();
            for e in &tree.entries {
                assert_eq!(e.mode, 0o644, "{} (blob present before: {seeded})", e.path);
            }
        }
    }

    #[test]
    fn hardlinks_only_where_the_mode_is_the_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs_err::create_dir_all(&src).unwrap();
        for (name, mode) in [("ro", 0o444), ("exec", 0o555), ("rw", 0o644)] {
            fs_err::write(src.join(name), "same content").unwrap();
            fs_err::set_permissions(src.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let (_, tree) = store.ingest_dir(&src, false).unwrap();
        let out = tmp.path().join("out");
        store
            .materialize(&tree, &out, Materialize::Hardlink)
            .unwrap();
        for (name, mode, links) in [
            ("ro", 0o444, true),
            ("exec", 0o555, false),
            ("rw", 0o644, false),
        ] {
            let m = fs_err::metadata(out.join(name)).unwrap();
            assert_eq!(m.mode() & 0o7777, mode, "{name} keeps its mode");
            assert_eq!(
                m.nlink() > 1,
                links,
                "{name} is a hardlink to the blob: {links}"
            );
        }
        // Readonly links every file, whatever its recorded mode.
        let ro = tmp.path().join("ro");
        store
            .materialize(&tree, &ro, Materialize::Readonly)
            .unwrap();
        for name in ["ro", "exec", "rw"] {
            let m = fs_err::metadata(ro.join(name)).unwrap();
            assert!(m.nlink() > 1 && m.mode() & 0o7777 == BLOB_MODE, "{name}");
        }
    }

    #[test]
    fn corrupt_tree_file_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let d = store.put_tree(&Tree::default()).unwrap();
        let p = store.tree_path(&d);
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        fs_err::write(&p, br#"{"entries":[{"path":"x","mode":0,"type":"dir"}]}"#).unwrap();
        assert!(store.get_tree(&d).is_err());
    }
}
