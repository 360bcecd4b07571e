//! A package payload: path -> file, directory or link, built from packages.toml entries or copied from an unpacked tree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Result;
use crate::spec::FileSpec;

/// Absolute path inside the package -> entry; sorted, so RPMs are deterministic.
pub type Payload = BTreeMap<String, FileSpec>;

/// Adds `path` from the host file `src`, keeping its permission bits.
pub fn add_host_file(
    payload: &mut Payload,
    path: &str,
    src: &Path,
    mode: Option<u16>,
) -> Result<()> {
    let meta = fs_err::metadata(src)?;
    let mode = mode.unwrap_or((meta.permissions().mode() & 0o7777) as u16);
    let content = fs_err::read(src)?;
    payload.insert(
        path.to_string(),
        FileSpec::File {
            content,
            mode,
            config: false,
        },
    );
    Ok(())
}

/// Adds `dest` (a directory or file of the unpacked tree `root`, e.g.
/// `/usr/lib/grub/i386-pc`) recursively: directories, files and symlinks with
/// their permission bits. Ancestors deeper than `/usr/lib` are added as
/// directories too, so the package owns e.g. `/usr/lib/grub`.
pub fn copy_tree(payload: &mut Payload, root: &Path, dest: &str) -> Result<()> {
    let top = root.join(dest.trim_start_matches('/'));
    if !top.exists() {
        return Err(format!("{dest} is not in the unpacked package ({})", root.display()).into());
    }
    let mut ancestor = Path::new(dest).parent();
    while let Some(a) = ancestor {
        if a.components().count() > 3 {
            payload.insert(
                a.to_string_lossy().into_owned(),
                FileSpec::Dir { mode: 0o755 },
            );
        }
        ancestor = a.parent();
    }
    for entry in walkdir::WalkDir::new(&top).sort_by_file_name() {
        let entry = entry?;
        let rel = entry.path().strip_prefix(root)?;
        let path = format!("/{}", rel.to_string_lossy());
        let meta = entry.path().symlink_metadata()?;
        let mode = (meta.permissions().mode() & 0o7777) as u16;
        let ft = meta.file_type();
        let spec = if ft.is_symlink() {
            FileSpec::Symlink {
                target: fs_err::read_link(entry.path())?
                    .to_string_lossy()
                    .into_owned(),
            }
        } else if ft.is_dir() {
            FileSpec::Dir { mode }
        } else if ft.is_file() {
            FileSpec::File {
                content: fs_err::read(entry.path())?,
                mode,
                config: false,
            }
        } else {
            return Err(format!("{}: unsupported file type", entry.path().display()).into());
        };
        payload.insert(path, spec);
    }
    Ok(())
}

/// Total size of the regular files, for the summary.
pub fn content_size(payload: &Payload) -> u64 {
    payload
        .values()
        .map(|e| match e {
            FileSpec::File { content, .. } => content.len() as u64,
            _ => 0,
        })
        .sum()
}
