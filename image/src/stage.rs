//! Staging a dependency's output for reading only: files become hardlinks to the store's
//! read-only blobs, so a multi-GiB disk or partition image is not copied.

use std::path::Path;

use nosa_cache::EntryKind;
use nosa_engine::{DepOutput, RunContext, RunError};

/// Makes `dep`'s output tree appear under `dir`: directories created, symlinks recreated, files
/// hardlinked to their blobs (mode 0444 whatever the tree says; copied if the link fails).
/// Only for outputs the rule never writes: QEMU opens disks with `snapshot=on`, the disk
/// assembly reads partition images.
pub(crate) fn stage_readonly(
    ctx: &RunContext<'_>,
    dep: &DepOutput,
    dir: &Path,
) -> Result<(), RunError> {
    let tree = ctx.dep_tree(dep)?;
    fs_err::create_dir_all(dir)?;
    for e in &tree.entries {
        let to = dir.join(&e.path);
        match &e.kind {
            EntryKind::Dir => fs_err::create_dir_all(&to)?,
            EntryKind::Symlink { target } => {
                if let Some(p) = to.parent() {
                    fs_err::create_dir_all(p)?;
                }
                std::os::unix::fs::symlink(target, &to)
                    .map_err(|err| RunError::msg(format!("{}: {err}", to.display())))?;
            }
            EntryKind::File { digest, .. } => {
                if let Some(p) = to.parent() {
                    fs_err::create_dir_all(p)?;
                }
                let blob = ctx.store().blob_path(digest);
                if std::fs::hard_link(&blob, &to).is_err() {
                    fs_err::copy(&blob, &to)?;
                }
            }
        }
    }
    Ok(())
}
