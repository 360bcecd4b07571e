//! The ostree-ext tar format ("bare-split-xattrs", format v1): a commit's objects under
//! `sysroot/ostree/repo/objects/` plus a checkout made of hardlinks to them.
//!
//! Entry order is what ostree-ext's importer requires: in the commit layer, the first file
//! under `sysroot/ostree/repo/` (other than `config`) is the `.commit` object, optionally
//! followed by its `.commitmeta`; every `.file` object is preceded by its `.file-xattrs-link`
//! (a hardlink to the `.file-xattrs` object holding the serialized `a(ayay)`). The checkout
//! (`usr/...`, with `usr/etc` shown as `etc`) is ignored by the importer but makes the layer a
//! usable container root. All headers are GNU, mtime 0 (ostree's canonical mtime), no
//! user/group names, modes and owners from the ostree objects.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};

use ostree::gio;
use ostree::gio::prelude::*;
use ostree::glib::Variant;
use ostree::{ObjectType, Repo};

use crate::OciError;
use crate::hash::sha256_hex;

/// The repository config that marks a tar export.
const REPO_CONFIG: &str = "[core]\nrepo_version=1\nmode=bare-split-xattrs\n";
const OSTREEDIR: &str = "sysroot/ostree";
const S_IFMT: u32 = 0o170000;

/// Content objects and the checkout paths (relative, `/`-separated) that use them, by
/// checksum.
pub(crate) type ContentMap = BTreeMap<String, ContentObject>;

/// One content object of the commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ContentObject {
    /// Its size (0 for symlinks).
    pub size: u64,
    /// Paths in the commit (relative, `usr/bin/sh`), in traversal order.
    pub paths: Vec<String>,
}

pub(crate) fn object_path(suffix: &str, checksum: &str) -> String {
    let (first, rest) = checksum.split_at(2);
    format!("{OSTREEDIR}/repo/objects/{first}/{rest}.{suffix}")
}

fn objtype_suffix(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Commit => "commit",
        ObjectType::CommitMeta => "commitmeta",
        ObjectType::DirTree => "dirtree",
        ObjectType::DirMeta => "dirmeta",
        _ => "file",
    }
}

/// `usr/etc` is shown as `etc` in the checkout, as ostree-ext does.
fn map_path(p: &str) -> String {
    if p == "usr/etc" {
        "etc".into()
    } else if let Some(rest) = p.strip_prefix("usr/etc/") {
        format!("etc/{rest}")
    } else {
        p.to_string()
    }
}

fn header(kind: tar::EntryType, uid: u32, gid: u32, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mode(mode & !S_IFMT);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// A dirtree: files (name, content checksum) and dirs (name, dirtree, dirmeta).
pub(crate) struct DirTree {
    pub files: Vec<(String, String)>,
    pub dirs: Vec<(String, String, String)>,
}

pub(crate) fn hexs(b: &[u8]) -> String {
    crate::hash::hex(b)
}

pub(crate) fn load_dirtree(repo: &Repo, checksum: &str) -> Result<(Variant, DirTree), OciError> {
    let v = repo
        .load_variant(ObjectType::DirTree, checksum)
        .map_err(OciError::ostree(format!("loading dirtree {checksum}")))?;
    let bad = || OciError::BadCommit {
        commit: checksum.into(),
        message: "malformed dirtree".into(),
    };
    let (files, dirs) = v
        .get::<(Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>, Vec<u8>)>)>()
        .ok_or_else(bad)?;
    let tree = DirTree {
        files: files.into_iter().map(|(n, c)| (n, hexs(&c))).collect(),
        dirs: dirs
            .into_iter()
            .map(|(n, t, m)| (n, hexs(&t), hexs(&m)))
            .collect(),
    };
    Ok((v, tree))
}

/// Every content object of the commit rooted at dirtree `root`, with its paths.
pub(crate) fn collect_content(
    repo: &Repo,
    root: &str,
    known: &BTreeMap<String, u64>,
) -> Result<ContentMap, OciError> {
    fn walk(
        repo: &Repo,
        prefix: &str,
        tree: &str,
        known: &BTreeMap<String, u64>,
        out: &mut ContentMap,
    ) -> Result<(), OciError> {
        let (_, t) = load_dirtree(repo, tree)?;
        for (name, csum) in t.files {
            let path = join(prefix, &name);
            if !out.contains_key(&csum) {
                let size = match known.get(&csum) {
                    Some(size) => *size,
                    None => {
                        let (_, info, _) = repo
                            .load_file(&csum, gio::Cancellable::NONE)
                            .map_err(OciError::ostree(format!("loading {path}")))?;
                        if info.file_type() == gio::FileType::Regular {
                            info.size() as u64
                        } else {
                            0
                        }
                    }
                };
                out.insert(
                    csum.clone(),
                    ContentObject {
                        size,
                        paths: Vec::new(),
                    },
                );
            }
            out.get_mut(&csum).expect("inserted").paths.push(path);
        }
        for (name, sub, _) in t.dirs {
            walk(repo, &join(prefix, &name), &sub, known, out)?;
        }
        Ok(())
    }
    let mut out = ContentMap::new();
    walk(repo, "", root, known, &mut out)?;
    Ok(out)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Writes ostree objects and checkout entries to one tar stream (one layer).
pub(crate) struct OstreeTarWriter<'a, W: Write> {
    repo: &'a Repo,
    out: tar::Builder<W>,
    wrote_meta: BTreeSet<String>,
    wrote_xattrs: BTreeSet<String>,
    wrote_vartmp: bool,
}

impl<'a, W: Write> OstreeTarWriter<'a, W> {
    pub(crate) fn new(repo: &'a Repo, out: W) -> Self {
        let mut out = tar::Builder::new(out);
        out.mode(tar::HeaderMode::Deterministic);
        OstreeTarWriter {
            repo,
            out,
            wrote_meta: BTreeSet::new(),
            wrote_xattrs: BTreeSet::new(),
            wrote_vartmp: false,
        }
    }

    pub(crate) fn finish(self) -> Result<W, OciError> {
        Ok(self.out.into_inner()?)
    }

    fn dir(&mut self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), OciError> {
        let mut h = header(tar::EntryType::Directory, uid, gid, mode, 0);
        self.out.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    }

    fn data(&mut self, path: &str, buf: &[u8]) -> Result<(), OciError> {
        let mut h = header(tar::EntryType::Regular, 0, 0, 0o644, buf.len() as u64);
        self.out.append_data(&mut h, path, buf)?;
        Ok(())
    }

    fn hardlink(&mut self, path: &str, target: &str, mut h: tar::Header) -> Result<(), OciError> {
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        self.out.append_link(&mut h, path, target)?;
        Ok(())
    }

    /// `sysroot/ostree/repo/` with `objects/00..ff`, the standard subdirectories and `config`.
    pub(crate) fn repo_structure(&mut self) -> Result<(), OciError> {
        for d in ["sysroot", "sysroot/ostree", "sysroot/ostree/repo"] {
            self.dir(d, 0, 0, 0o755)?;
        }
        self.dir("sysroot/ostree/repo/objects", 0, 0, 0o755)?;
        for i in 0..=0xffu32 {
            self.dir(&format!("{OSTREEDIR}/repo/objects/{i:02x}"), 0, 0, 0o755)?;
        }
        for d in [
            "extensions",
            "refs",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
            "state",
            "tmp",
            "tmp/cache",
        ] {
            self.dir(&format!("{OSTREEDIR}/repo/{d}"), 0, 0, 0o755)?;
        }
        self.data(&format!("{OSTREEDIR}/repo/config"), REPO_CONFIG.as_bytes())
    }

    /// A metadata object, once per layer.
    fn metadata(&mut self, t: ObjectType, checksum: &str, v: &Variant) -> Result<(), OciError> {
        let path = object_path(objtype_suffix(t), checksum);
        if matches!(t, ObjectType::DirTree | ObjectType::DirMeta)
            && !self.wrote_meta.insert(path.clone())
        {
            return Ok(());
        }
        let bytes = v.data_as_bytes();
        self.data(&path, &bytes)
    }

    /// The commit layer's structure: root directory, repository, commit (+ commitmeta), every
    /// dirtree and dirmeta, the directories of the checkout, `var/tmp`. No content objects.
    pub(crate) fn commit_structure(
        &mut self,
        commit: &crate::read::Commit,
    ) -> Result<(), OciError> {
        let root = &commit.root_meta;
        self.dir("./", root.uid, root.gid, root.mode)?;
        self.repo_structure()?;
        self.metadata(ObjectType::Commit, &commit.checksum, &commit.variant)?;
        if let Some(m) = &commit.detached {
            self.metadata(ObjectType::CommitMeta, &commit.checksum, m)?;
        }
        let meta_v = self.load_dirmeta(&commit.root_meta_checksum)?.0;
        self.metadata(ObjectType::DirMeta, &commit.root_meta_checksum, &meta_v)?;
        self.dirtree("", &commit.root_tree)?;
        if !self.wrote_vartmp {
            self.dir("var/tmp", 0, 0, 0o1777)?;
        }
        Ok(())
    }

    fn load_dirmeta(&self, checksum: &str) -> Result<(Variant, ostree::DirMetaParsed), OciError> {
        let v = self
            .repo
            .load_variant(ObjectType::DirMeta, checksum)
            .map_err(OciError::ostree(format!("loading dirmeta {checksum}")))?;
        let parsed = ostree::DirMetaParsed::from_variant(&v).map_err(|e| OciError::BadCommit {
            commit: checksum.into(),
            message: format!("malformed dirmeta: {e}"),
        })?;
        Ok((v, parsed))
    }

    fn dirtree(&mut self, prefix: &str, checksum: &str) -> Result<(), OciError> {
        let (v, tree) = load_dirtree(self.repo, checksum)?;
        self.metadata(ObjectType::DirTree, checksum, &v)?;
        if prefix == "var/tmp" {
            self.wrote_vartmp = true;
        }
        for (name, sub, meta) in tree.dirs {
            let (mv, m) = self.load_dirmeta(&meta)?;
            self.metadata(ObjectType::DirMeta, &meta, &mv)?;
            // The layer's own sysroot/ is the repository; a commit's /sysroot is left out of the
            // checkout (its objects are still written).
            if prefix.is_empty() && name == "sysroot" {
                continue;
            }
            let path = join(prefix, &name);
            self.dir(&map_path(&path), m.uid, m.gid, m.mode)?;
            self.dirtree(&path, &sub)?;
        }
        Ok(())
    }

    /// Content objects (sorted by checksum) and their checkout hardlinks.
    pub(crate) fn content<'c>(
        &mut self,
        objects: impl IntoIterator<Item = (&'c String, &'c ContentObject)>,
    ) -> Result<(), OciError> {
        for (checksum, obj) in objects {
            let (objpath, h) = self.content_object(checksum)?;
            for p in &obj.paths {
                let dest = map_path(p);
                let size = h.size()?;
                if h.entry_type() == tar::EntryType::Regular && size == 0 {
                    // As ostree-ext: empty files are not hardlinked.
                    let mut h = h.clone();
                    self.out.append_data(&mut h, &dest, std::io::empty())?;
                } else {
                    self.hardlink(&dest, &objpath, h.clone())?;
                }
            }
        }
        Ok(())
    }

    fn content_object(&mut self, checksum: &str) -> Result<(String, tar::Header), OciError> {
        let path = object_path("file", checksum);
        let (stream, info, xattrs) = self
            .repo
            .load_file(checksum, gio::Cancellable::NONE)
            .map_err(OciError::ostree(format!(
                "loading content object {checksum}"
            )))?;
        let uid = info.attribute_uint32("unix::uid");
        let gid = info.attribute_uint32("unix::gid");
        let mode = info.attribute_uint32("unix::mode");
        // xattrs first: the importer needs them before the object.
        let xbytes = xattrs.data_as_bytes();
        let xsum = sha256_hex(&xbytes);
        let xpath = object_path("file-xattrs", &xsum);
        if self.wrote_xattrs.insert(xsum.clone()) {
            self.data(&xpath, &xbytes)?;
        }
        let link = header(tar::EntryType::Link, 0, 0, 0o644, 0);
        self.hardlink(&object_path("file-xattrs-link", checksum), &xpath, link)?;
        match (stream, info.file_type()) {
            (Some(stream), gio::FileType::Regular) => {
                let size = info.size() as u64;
                let mut h = header(tar::EntryType::Regular, uid, gid, mode, size);
                let reader = BufReader::with_capacity(128 * 1024, stream.into_read());
                self.out.append_data(&mut h.clone(), &path, reader)?;
                h.set_size(size);
                Ok((path, h))
            }
            (None, gio::FileType::SymbolicLink) => {
                let target = info.symlink_target().ok_or_else(|| OciError::BadCommit {
                    commit: checksum.into(),
                    message: "symlink object without target".into(),
                })?;
                let target = target.to_str().ok_or_else(|| OciError::BadCommit {
                    commit: checksum.into(),
                    message: format!("non-UTF-8 symlink target {target:?}"),
                })?;
                let mut h = header(tar::EntryType::Symlink, uid, gid, mode, 0);
                if target.contains("//") {
                    // "Denormal" targets: append_link would normalize them away.
                    h.set_link_name_literal(target)?;
                    self.out.append_data(&mut h, &path, std::io::empty())?;
                } else {
                    self.out.append_link(&mut h, &path, target)?;
                }
                Ok((path, h))
            }
            (_, t) => Err(OciError::BadCommit {
                commit: checksum.into(),
                message: format!("content object of unexpected type {t:?}"),
            }),
        }
    }
}
