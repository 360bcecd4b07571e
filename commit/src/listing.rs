//! `commit_listing`: a store tree committed without a checkout. Each file's content object is
//! written from its blob, or, when an [`ObjectMemo`] says the repository already holds the
//! object for that exact content and header, named without reading the file; directories get
//! their dirmeta from the listing. The result is the commit [`crate::commit_tree`] makes of
//! the same tree on disk (tests compare the two).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nosa_cache::{Digest, EntryKind, Store, TreeEntry};
use ostree::gio;
use ostree::glib::Variant;
use ostree::{MutableTree, ObjectType, Repo};

use crate::CommitError;
use crate::write::Prepared;

/// The file type bits ostree expects in a content header's mode.
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// Content objects a repository holds, by [`content_key`]: what lets a commit name an
/// unchanged file's object without reading the file.
///
/// Failure mode: an entry whose checksum is not the object of its key names wrong content in
/// the commit. Entries are only ever made from what libostree returned for that content, and
/// an entry whose object is missing is written again (the caller links only objects it has).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMemo {
    objects: HashMap<Digest, String>,
}

const MEMO_MAGIC: &str = "nosa-ostree-objects-v1";

impl ObjectMemo {
    /// The object checksum recorded for `key`.
    pub fn get(&self, key: &Digest) -> Option<&str> {
        self.objects.get(key).map(String::as_str)
    }

    /// How many objects it names.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it names none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every (key, object checksum) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, &str)> {
        self.objects.iter().map(|(k, v)| (k, v.as_str()))
    }

    /// Keeps only the objects `keep` accepts (those the repository really holds).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.objects.retain(|_, v| keep(v));
    }

    /// The text form: a header line, then `key checksum` lines sorted by key.
    pub fn encode(&self) -> Vec<u8> {
        let mut lines: Vec<String> = self
            .objects
            .iter()
            .map(|(k, v)| format!("{} {v}\n", k.to_hex()))
            .collect();
        lines.sort();
        let mut out = format!("{MEMO_MAGIC}\n").into_bytes();
        for l in lines {
            out.extend_from_slice(l.as_bytes());
        }
        out
    }

    /// Reads [`ObjectMemo::encode`]'s form; `None` if it is not that.
    pub fn decode(bytes: &[u8]) -> Option<ObjectMemo> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MEMO_MAGIC {
            return None;
        }
        let mut objects = HashMap::new();
        for line in lines {
            let (k, v) = line.split_once(' ')?;
            let valid = v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return None;
            }
            objects.insert(k.parse().ok()?, v.to_string());
        }
        Some(ObjectMemo { objects })
    }
}

/// What determines a content object: the entry's type and content (blob digest or link
/// target), its mode, owner and xattrs, exactly what libostree hashes into the object.
pub fn content_key(kind: &EntryKind, mode: u32, owner: (u32, u32), xattrs: &Variant) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"nosa-ostree-content-v2\0");
    kind.hash_into(&mut h);
    h.update(&mode.to_le_bytes());
    h.update(&owner.0.to_le_bytes());
    h.update(&owner.1.to_le_bytes());
    h.update(xattrs.data());
    h.finalize().into()
}

/// A tree to commit, as the store lists it.
pub struct Listing<'a> {
    /// Where the blobs are.
    pub store: &'a Store,
    /// The root directory's permission bits.
    pub root_mode: u32,
    /// The entries below the root, paths relative to it, sorted by path.
    pub entries: &'a [TreeEntry],
    /// Objects the repository already holds (their files must be in its `objects/`).
    pub known: &'a ObjectMemo,
}

/// What [`commit_listing`] did besides the commit.
#[derive(Debug)]
pub struct ListingOutcome {
    /// The commit.
    pub result: crate::CommitResult,
    /// Every content object the commit names, for the next commit's [`Listing::known`].
    pub memo: ObjectMemo,
    /// How many content objects were written (the rest were named from `known`).
    pub written: usize,
}

/// Commits `listing` into `req.repo` as [`crate::commit_tree`] would commit the same tree
/// materialized at `req.rootfs` (which is not read): same owners, xattrs, metadata, so the
/// same checksums. Only content objects `listing.known` lacks are written.
pub fn commit_listing(
    req: &crate::CommitRequest,
    listing: &Listing<'_>,
) -> Result<ListingOutcome, CommitError> {
    let prep = Prepared::open(req)?;
    let repo = &prep.repo;
    let tx = repo
        .auto_transaction(gio::Cancellable::NONE)
        .map_err(|e| CommitError::ostree("preparing the transaction", e))?;
    let mut writer = ObjectWriter {
        repo,
        store: listing.store,
        known: listing.known,
        memo: ObjectMemo::default(),
        dirmeta: HashMap::new(),
        written: 0,
        seen: BTreeSet::new(),
    };
    let mtree = MutableTree::new();
    let root_meta = writer.dirmeta(&prep, "/", listing.root_mode)?;
    mtree.set_metadata_checksum(&root_meta);
    let mut dirs: BTreeMap<String, MutableTree> = BTreeMap::new();
    for e in listing.entries {
        let (parent, name) = match e.path.rsplit_once('/') {
            Some((p, n)) => (dirs.get(p), n),
            None => (Some(&mtree), e.path.as_str()),
        };
        let parent = parent.ok_or_else(|| {
            CommitError::Metadata(format!("{}: listed before its directory", e.path))
        })?;
        let abs = format!("/{}", e.path);
        match &e.kind {
            EntryKind::Dir => {
                let sub = parent
                    .ensure_dir(name)
                    .map_err(|err| CommitError::ostree(format!("adding {abs}"), err))?;
                let meta = writer.dirmeta(&prep, &abs, e.mode)?;
                sub.set_metadata_checksum(&meta);
                dirs.insert(e.path.clone(), sub);
            }
            kind => {
                let checksum = writer.content(&prep, &abs, kind, e.mode)?;
                parent
                    .replace_file(name, &checksum)
                    .map_err(|err| CommitError::ostree(format!("adding {abs}"), err))?;
            }
        }
    }
    let ObjectWriter {
        memo,
        written,
        seen,
        ..
    } = writer;
    let result = prep.finish(&mtree, tx, seen)?;
    Ok(ListingOutcome {
        result,
        memo,
        written,
    })
}

struct ObjectWriter<'a> {
    repo: &'a Repo,
    store: &'a Store,
    known: &'a ObjectMemo,
    memo: ObjectMemo,
    dirmeta: HashMap<Digest, String>,
    written: usize,
    seen: BTreeSet<String>,
}

impl ObjectWriter<'_> {
    fn dirmeta(&mut self, prep: &Prepared, abs: &str, mode: u32) -> Result<String, CommitError> {
        let owner = prep.owner(abs);
        let xattrs = prep.xattrs(abs);
        self.seen.insert(abs.to_string());
        let key = content_key(&EntryKind::Dir, mode, owner, &xattrs);
        if let Some(c) = self.dirmeta.get(&key) {
            return Ok(c.clone());
        }
        let info = gio::FileInfo::new();
        info.set_attribute_uint32("unix::uid", owner.0);
        info.set_attribute_uint32("unix::gid", owner.1);
        info.set_attribute_uint32("unix::mode", S_IFDIR | mode);
        let meta = ostree::create_directory_metadata(&info, Some(&xattrs));
        let checksum = self
            .repo
            .write_metadata(ObjectType::DirMeta, None, &meta, gio::Cancellable::NONE)
            .map_err(|e| CommitError::ostree(format!("writing the dirmeta of {abs}"), e))?
            .to_string();
        self.dirmeta.insert(key, checksum.clone());
        Ok(checksum)
    }

    fn content(
        &mut self,
        prep: &Prepared,
        abs: &str,
        kind: &EntryKind,
        mode: u32,
    ) -> Result<String, CommitError> {
        let owner = prep.owner(abs);
        let xattrs = prep.xattrs(abs);
        self.seen.insert(abs.to_string());
        let key = content_key(kind, mode, owner, &xattrs);
        if let Some(c) = self.memo.get(&key) {
            return Ok(c.to_string());
        }
        let checksum = match (self.known.get(&key), kind) {
            (Some(c), _) => c.to_string(),
            (None, EntryKind::File { digest, .. }) => {
                self.written += 1;
                let bytes = fs_err::read(self.store.blob_path(digest))?;
                self.repo
                    .write_regfile_inline(
                        None,
                        owner.0,
                        owner.1,
                        S_IFREG | mode,
                        Some(&xattrs),
                        &bytes,
                        gio::Cancellable::NONE,
                    )
                    .map_err(|e| CommitError::ostree(format!("writing {abs}"), e))?
                    .to_string()
            }
            (None, EntryKind::Symlink { target }) => {
                self.written += 1;
                self.repo
                    .write_symlink(
                        None,
                        owner.0,
                        owner.1,
                        Some(&xattrs),
                        target,
                        gio::Cancellable::NONE,
                    )
                    .map_err(|e| CommitError::ostree(format!("writing {abs}"), e))?
                    .to_string()
            }
            (None, EntryKind::Dir) => unreachable!("directories get dirmeta, not content"),
        };
        self.memo.objects.insert(key, checksum.clone());
        Ok(checksum)
    }
}
