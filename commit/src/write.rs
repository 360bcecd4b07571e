//! `commit_tree`: a directory written into an ostree repository as one commit, with explicit
//! ownership and xattrs and a fixed timestamp, so that the same tree always gives the same
//! commit checksum.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ostree::gio;
use ostree::glib::prelude::*;
use ostree::glib::{Variant, VariantTy};
use ostree::{MutableTree, ObjectType, Repo, RepoCommitFilterResult, RepoCommitModifier};
use ostree::{RepoCommitModifierFlags, RepoFile};

use crate::CommitError;
use crate::meta::{self, MetaValue};

/// Extended attributes per path in the commit (`/usr/bin/ping`): (name, value) pairs.
pub type Xattrs = BTreeMap<String, Vec<(String, Vec<u8>)>>;

/// The repository mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepoMode {
    /// `archive`: compressed objects, plain files owned by whoever wrote them. What the store
    /// holds and what is served over HTTP.
    #[default]
    Archive,
    /// `bare-user`: uncompressed objects, ownership and xattrs in a user xattr; works without
    /// root.
    BareUser,
}

impl RepoMode {
    fn to_ostree(self) -> ostree::RepoMode {
        match self {
            RepoMode::Archive => ostree::RepoMode::Archive,
            RepoMode::BareUser => ostree::RepoMode::BareUser,
        }
    }

    /// The name ostree uses in the repository's `config`.
    pub fn name(self) -> &'static str {
        match self {
            RepoMode::Archive => "archive",
            RepoMode::BareUser => "bare-user",
        }
    }
}

/// What to commit, where.
#[derive(Clone, Debug, Default)]
pub struct CommitRequest {
    /// The repository; created (with `mode`) if it has no `config`.
    pub repo: PathBuf,
    /// The repository mode; an existing repository must have it.
    pub mode: RepoMode,
    /// The directory whose contents become the commit's root.
    pub rootfs: PathBuf,
    /// Owners (uid, gid) by absolute path in the commit (`/usr/bin/x`); every other path is
    /// owned by 0:0, whoever owns it on disk.
    pub owners: BTreeMap<String, (u32, u32)>,
    /// Extended attributes by absolute path in the commit. On-disk xattrs are never read.
    pub xattrs: Xattrs,
    /// The ref to point at the commit (`nestos/x86_64/stable`).
    pub ref_name: String,
    /// Commit metadata (`version`, ...), written in key order.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The commit timestamp (seconds since the epoch), e.g. SOURCE_DATE_EPOCH.
    pub timestamp: u64,
    /// The parent commit checksum, if any (it enters the commit checksum).
    pub parent: Option<String>,
    /// The commit subject, if any.
    pub subject: Option<String>,
    /// fsync objects (off when the caller syncs the result itself, as the store does).
    pub fsync: bool,
}

/// A written commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitResult {
    /// The commit checksum (sha256 hex).
    pub checksum: String,
    /// The content checksum: sha256 of the root dirtree and dirmeta checksums; independent of
    /// the timestamp, metadata, subject and parent.
    pub content_checksum: String,
    /// Paths named in `owners` or `xattrs` that are not in the tree (ignored).
    pub unmatched: Vec<String>,
}

fn normalize(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    format!("/{trimmed}")
}

pub(crate) fn xattr_variant(attrs: Option<&Vec<(String, Vec<u8>)>>) -> Variant {
    let mut sorted: Vec<&(String, Vec<u8>)> = attrs.map(|a| a.iter().collect()).unwrap_or_default();
    sorted.sort();
    let entries = sorted.into_iter().map(|(name, value)| {
        // ostree stores xattr names as NUL-terminated bytestrings.
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        Variant::tuple_from_iter([
            Variant::array_from_fixed_array(&n),
            Variant::array_from_fixed_array(value),
        ])
    });
    Variant::array_from_iter_with_type(VariantTy::new("(ayay)").expect("valid type"), entries)
}

/// Opens the repository at `path`, creating it (with `mode`) if it has no `config` yet; an
/// existing one must have `mode`.
pub fn open_or_create(path: &Path, mode: RepoMode) -> Result<Repo, CommitError> {
    let repo = Repo::new_for_path(path);
    if path.join("config").exists() {
        repo.open(gio::Cancellable::NONE)
            .map_err(|e| CommitError::ostree(format!("opening {}", path.display()), e))?;
        let found = repo.mode();
        if found != mode.to_ostree() {
            return Err(CommitError::ModeMismatch {
                path: path.to_path_buf(),
                found: format!("{found:?}"),
                expected: mode.name().to_string(),
            });
        }
    } else {
        fs_err::create_dir_all(path)?;
        repo.create(mode.to_ostree(), gio::Cancellable::NONE)
            .map_err(|e| CommitError::ostree(format!("creating {}", path.display()), e))?;
    }
    Ok(repo)
}

/// Commits `req.rootfs` into `req.repo` and points `req.ref_name` at it.
///
/// Modes are kept as they are on disk (setuid bits included); owners are 0:0 unless
/// `req.owners` says otherwise; xattrs are exactly `req.xattrs`. Object checksums do not depend
/// on mtimes, so the same tree, owners, xattrs, metadata, timestamp and parent give the same
/// commit checksum in any repository of either mode.
pub fn commit_tree(req: &CommitRequest) -> Result<CommitResult, CommitError> {
    if !req.rootfs.is_dir() {
        return Err(CommitError::NotADirectory {
            path: req.rootfs.clone(),
        });
    }
    let prep = Prepared::open(req)?;
    let seen: Rc<RefCell<BTreeSet<String>>> = Rc::default();
    let filter = {
        let seen = Rc::clone(&seen);
        let owners = prep.owners.clone();
        move |_: &Repo, path: &str, info: &gio::FileInfo| {
            let (uid, gid) = owners.get(path).copied().unwrap_or((0, 0));
            info.set_attribute_uint32("unix::uid", uid);
            info.set_attribute_uint32("unix::gid", gid);
            seen.borrow_mut().insert(path.to_string());
            RepoCommitFilterResult::Allow
        }
    };
    let modifier =
        RepoCommitModifier::new(RepoCommitModifierFlags::SKIP_XATTRS, Some(Box::new(filter)));
    {
        let xattrs = prep.xattrs.clone();
        modifier.set_xattr_callback(move |_, path, _| xattr_variant(xattrs.get(path)));
    }

    let tx = prep
        .repo
        .auto_transaction(gio::Cancellable::NONE)
        .map_err(|e| CommitError::ostree("preparing the transaction", e))?;
    let mtree = MutableTree::new();
    prep.repo
        .write_directory_to_mtree(
            &gio::File::for_path(&req.rootfs),
            &mtree,
            Some(&modifier),
            gio::Cancellable::NONE,
        )
        .map_err(|e| CommitError::ostree(format!("writing {}", req.rootfs.display()), e))?;
    let seen = seen.borrow().clone();
    prep.finish(&mtree, tx, seen)
}

/// A repository opened for a commit, with the request's owners and xattrs by normalized path:
/// what [`commit_tree`] and [`crate::commit_listing`] share.
pub(crate) struct Prepared<'r> {
    pub(crate) repo: Repo,
    req: &'r CommitRequest,
    owners: BTreeMap<String, (u32, u32)>,
    xattrs: Xattrs,
}

impl<'r> Prepared<'r> {
    /// Checks the ref and opens (or creates) the repository.
    pub(crate) fn open(req: &'r CommitRequest) -> Result<Prepared<'r>, CommitError> {
        ostree::validate_rev(&req.ref_name).map_err(|e| CommitError::InvalidRef {
            name: req.ref_name.clone(),
            reason: e.message().to_string(),
        })?;
        let repo = open_or_create(&req.repo, req.mode)?;
        repo.set_disable_fsync(!req.fsync);
        let owners = req
            .owners
            .iter()
            .map(|(p, ids)| (normalize(p), *ids))
            .collect();
        let xattrs = req
            .xattrs
            .iter()
            .map(|(p, a)| (normalize(p), a.clone()))
            .collect();
        Ok(Prepared {
            repo,
            req,
            owners,
            xattrs,
        })
    }

    /// The owner of `path` (`/usr/bin/x`): as requested, else 0:0.
    pub(crate) fn owner(&self, path: &str) -> (u32, u32) {
        self.owners.get(path).copied().unwrap_or((0, 0))
    }

    /// The xattrs of `path`, as libostree stores them.
    pub(crate) fn xattrs(&self, path: &str) -> Variant {
        xattr_variant(self.xattrs.get(path))
    }

    /// Writes the trees, the commit and the ref, and commits the transaction; `seen` are the
    /// paths the tree had (owners and xattrs for others are reported as unmatched).
    pub(crate) fn finish(
        &self,
        mtree: &MutableTree,
        tx: ostree::TransactionGuard<'_>,
        seen: BTreeSet<String>,
    ) -> Result<CommitResult, CommitError> {
        let (repo, req) = (&self.repo, self.req);
        let root = repo
            .write_mtree(mtree, gio::Cancellable::NONE)
            .map_err(|e| CommitError::ostree("writing the root tree", e))?;
        let root = root
            .downcast::<RepoFile>()
            .map_err(|_| CommitError::Metadata("write_mtree did not return a RepoFile".into()))?;
        let metadata = meta::to_variant(&req.metadata);
        let checksum = repo
            .write_commit_with_time(
                req.parent.as_deref(),
                req.subject.as_deref(),
                None,
                Some(&metadata),
                &root,
                req.timestamp,
                gio::Cancellable::NONE,
            )
            .map_err(|e| CommitError::ostree("writing the commit", e))?;
        repo.transaction_set_ref(None, &req.ref_name, Some(&checksum));
        tx.commit(gio::Cancellable::NONE)
            .map_err(|e| CommitError::ostree("committing the transaction", e))?;

        let content_checksum = content_checksum_in(repo, &checksum)?;
        let unmatched = self
            .owners
            .keys()
            .chain(self.xattrs.keys())
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(CommitResult {
            checksum: checksum.to_string(),
            content_checksum,
            unmatched,
        })
    }
}

fn content_checksum_in(repo: &Repo, checksum: &str) -> Result<String, CommitError> {
    let commit = repo
        .load_variant(ObjectType::Commit, checksum)
        .map_err(|e| CommitError::ostree(format!("loading commit {checksum}"), e))?;
    ostree::commit_get_content_checksum(&commit)
        .map(|c| c.to_string())
        .ok_or_else(|| CommitError::Metadata(format!("commit {checksum} has no root tree")))
}

/// The content checksum of `rev` (a ref or a checksum) in the repository at `repo`.
pub fn content_checksum(repo: &Path, rev: &str) -> Result<String, CommitError> {
    let r = Repo::new_for_path(repo);
    r.open(gio::Cancellable::NONE)
        .map_err(|e| CommitError::ostree(format!("opening {}", repo.display()), e))?;
    let checksum = r
        .require_rev(rev)
        .map_err(|e| CommitError::ostree(format!("resolving {rev}"), e))?;
    content_checksum_in(&r, &checksum)
}

/// The file name of an object in `repo`'s `objects/` directory (archive repos compress file
/// objects: `.filez`).
pub(crate) fn object_relpath(checksum: &str, ty: ObjectType, archive: bool) -> Option<String> {
    let ext = match ty {
        ObjectType::File if archive => "filez",
        ObjectType::File => "file",
        ObjectType::DirTree => "dirtree",
        ObjectType::DirMeta => "dirmeta",
        ObjectType::Commit => "commit",
        ObjectType::CommitMeta => "commitmeta",
        _ => return None,
    };
    (checksum.len() > 2).then(|| format!("{}/{}.{ext}", &checksum[..2], &checksum[2..]))
}

/// Deletes every object of the repository at `path` that `commit` does not reach (its parent
/// excluded), so that a repository seeded with older objects to save work ends up with the
/// objects a commit into an empty repository would have. Returns how many it deleted.
pub fn keep_reachable_objects(path: &Path, commit: &str) -> Result<usize, CommitError> {
    let repo = Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .map_err(|e| CommitError::ostree(format!("opening {}", path.display()), e))?;
    let archive = repo.mode() == ostree::RepoMode::Archive;
    let reachable = repo
        .traverse_commit(commit, 0, gio::Cancellable::NONE)
        .map_err(|e| CommitError::ostree(format!("traversing {commit}"), e))?;
    let mut keep: BTreeSet<String> = reachable
        .iter()
        .filter_map(|o| object_relpath(o.checksum(), o.object_type(), archive))
        .collect();
    if let Some(meta) = object_relpath(commit, ObjectType::CommitMeta, archive) {
        keep.insert(meta);
    }
    let objects = path.join("objects");
    let mut deleted = 0;
    for dir in fs_err::read_dir(&objects)? {
        let dir = dir?.path();
        if !dir.is_dir() {
            continue;
        }
        let prefix = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for f in fs_err::read_dir(&dir)? {
            let f = f?;
            let rel = format!("{prefix}/{}", f.file_name().to_string_lossy());
            if !keep.contains(&rel) {
                fs_err::remove_file(f.path())?;
                deleted += 1;
            }
        }
        if fs_err::read_dir(&dir)?.next().is_none() {
            fs_err::remove_dir(&dir)?;
        }
    }
    Ok(deleted)
}
