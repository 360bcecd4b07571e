//! Reading the commit to export: the commit object, its detached metadata, root, timestamp,
//! subject and the metadata keys the image labels come from.

use std::path::Path;

use ostree::gio;
use ostree::glib::{Variant, VariantDict};
use ostree::{ObjectType, Repo};

use crate::OciError;
use crate::tarstream::hexs;

/// The commit metadata key (and image label) of rpm-ostree's input hash.
pub const INPUTHASH_KEY: &str = "rpmostree.inputhash";

/// A loaded commit.
pub(crate) struct Commit {
    pub checksum: String,
    pub variant: Variant,
    pub detached: Option<Variant>,
    pub timestamp: u64,
    pub subject: String,
    pub version: Option<String>,
    pub bootable: Option<bool>,
    pub linux: Option<String>,
    /// `rpmostree.inputhash`, which rpm-ostree's `container-encapsulate` copies to a label.
    pub inputhash: Option<String>,
    pub root_tree: String,
    pub root_meta_checksum: String,
    pub root_meta: ostree::DirMetaParsed,
}

/// Opens `repo` and loads `rev` (a ref or a checksum).
pub(crate) fn open(repo_path: &Path, rev: &str) -> Result<(Repo, Commit), OciError> {
    let repo = Repo::new_for_path(repo_path);
    repo.open(gio::Cancellable::NONE)
        .map_err(OciError::ostree(format!("opening {}", repo_path.display())))?;
    let checksum = repo
        .resolve_rev(rev, false)
        .map_err(OciError::ostree(format!("resolving {rev}")))?
        .ok_or_else(|| OciError::Request(format!("{rev}: no such ref or commit")))?
        .to_string();
    let (variant, _) = repo
        .load_commit(&checksum)
        .map_err(OciError::ostree(format!("loading commit {checksum}")))?;
    let detached = repo
        .read_commit_detached_metadata(&checksum, gio::Cancellable::NONE)
        .map_err(OciError::ostree(format!(
            "reading detached metadata of {checksum}"
        )))?;
    let bad = |m: &str| OciError::BadCommit {
        commit: checksum.clone(),
        message: m.into(),
    };
    let meta = VariantDict::new(Some(&variant.child_value(0)));
    let subject = variant
        .child_value(3)
        .str()
        .ok_or_else(|| bad("subject is not a string"))?
        .to_string();
    let root_tree = hexs(
        variant
            .child_value(6)
            .fixed_array::<u8>()
            .map_err(|_| bad("root"))?,
    );
    let root_meta_checksum = hexs(
        variant
            .child_value(7)
            .fixed_array::<u8>()
            .map_err(|_| bad("root meta"))?,
    );
    let root_meta_v = repo
        .load_variant(ObjectType::DirMeta, &root_meta_checksum)
        .map_err(OciError::ostree("loading the root dirmeta"))?;
    let root_meta = ostree::DirMetaParsed::from_variant(&root_meta_v)
        .map_err(|e| bad(&format!("root dirmeta: {e}")))?;
    let version = meta
        .lookup::<String>("version")
        .map_err(|_| bad("version is not a string"))?;
    let bootable = meta
        .lookup::<bool>("ostree.bootable")
        .map_err(|_| bad("ostree.bootable is not a boolean"))?;
    let linux = meta
        .lookup::<String>("ostree.linux")
        .map_err(|_| bad("ostree.linux is not a string"))?;
    let inputhash = meta
        .lookup::<String>(INPUTHASH_KEY)
        .map_err(|_| bad("rpmostree.inputhash is not a string"))?;
    let timestamp = ostree::commit_get_timestamp(&variant);
    Ok((
        repo,
        Commit {
            checksum,
            variant,
            detached,
            timestamp,
            subject,
            version,
            bootable,
            linux,
            inputhash,
            root_tree,
            root_meta_checksum,
            root_meta,
        },
    ))
}
