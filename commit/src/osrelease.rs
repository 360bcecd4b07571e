//! rpm-ostree's `mutate-os-release`: the tree's os-release gets the commit version, in
//! `VERSION=` and `PRETTY_NAME=` (the treefile's base string replaced by the version) and as
//! a new `OSTREE_VERSION=` line.

use std::path::{Component, Path, PathBuf};

use crate::CommitError;

/// How many symlinks resolving `/etc/os-release` may cross.
const MAX_LINKS: usize = 32;

/// `contents` with `base` replaced by `version` in the `VERSION=` and `PRETTY_NAME=` lines,
/// empty lines dropped, and `OSTREE_VERSION=<version, shell-quoted>` appended (rpm-ostree's
/// rules, so an os-release mutated twice would carry two `OSTREE_VERSION` lines as there).
pub fn mutate_os_release_contents(contents: &str, base: &str, version: &str) -> String {
    let mut out = String::new();
    for line in contents.lines().filter(|l| !l.is_empty()) {
        let key = ["VERSION=", "PRETTY_NAME="]
            .into_iter()
            .find(|k| line.starts_with(k));
        match key {
            Some(k) if !base.is_empty() => {
                out.push_str(k);
                out.push_str(&line[k.len()..].replace(base, version));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("OSTREE_VERSION=");
    out.push_str(&shell_quote(version));
    out.push('\n');
    out
}

/// Single-quoted for a shell (as `g_shell_quote`): `'` becomes `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `p` made absolute and normalised lexically (`..` stops at `/`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Where an absolute path of the deployed system lives in the committed tree: `/etc` is
/// `/usr/etc` in ostree's layout (when the tree has no `/etc` of its own).
fn physical(root: &Path, abs: &Path) -> PathBuf {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    if let Ok(rest) = rel.strip_prefix("etc")
        && !root.join("etc").is_dir()
        && root.join("usr/etc").is_dir()
    {
        return root.join("usr/etc").join(rest);
    }
    root.join(rel)
}

/// The file `/etc/os-release` names in the tree at `root`, following symlinks inside the tree
/// (a link's target is read as the deployed system would: relative to `/etc`, absolute from
/// the tree's root), or `/usr/lib/os-release` when there is no `/etc/os-release`. Returns the
/// tree-relative path of a regular file.
pub fn os_release_path(root: &Path) -> Result<PathBuf, CommitError> {
    let mut abs = PathBuf::from("/etc/os-release");
    for _ in 0..MAX_LINKS {
        let p = physical(root, &abs);
        let md = match fs_err::symlink_metadata(&p) {
            Ok(md) => md,
            Err(_) if abs == Path::new("/etc/os-release") => {
                abs = PathBuf::from("/usr/lib/os-release");
                continue;
            }
            Err(_) => {
                return Err(CommitError::OsRelease(format!(
                    "/etc/os-release leads to {}, which is not in the tree",
                    abs.display()
                )));
            }
        };
        if md.file_type().is_symlink() {
            let target =
                fs_err::read_link(&p).map_err(|e| CommitError::OsRelease(e.to_string()))?;
            let parent = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
            abs = normalize(&parent.join(target));
            continue;
        }
        if !md.is_file() {
            return Err(CommitError::OsRelease(format!(
                "{} is not a regular file",
                abs.display()
            )));
        }
        return Ok(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
    }
    Err(CommitError::OsRelease(format!(
        "more than {MAX_LINKS} symlinks resolving /etc/os-release"
    )))
}

/// Applies `mutate-os-release` (`base` is its value, e.g. the releasever) with `version` to
/// the tree at `root`, in place. Returns the tree-relative path it rewrote. The file is
/// replaced by a new one (mode 0644), never written through a hardlink.
pub fn mutate_os_release(root: &Path, base: &str, version: &str) -> Result<PathBuf, CommitError> {
    let rel = os_release_path(root)?;
    let path = root.join(&rel);
    let text = fs_err::read_to_string(&path).map_err(|e| CommitError::OsRelease(e.to_string()))?;
    let new = mutate_os_release_contents(&text, base, version);
    let tmp = path.with_extension("nosa-tmp");
    fs_err::write(&tmp, new).map_err(|e| CommitError::OsRelease(e.to_string()))?;
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| CommitError::OsRelease(e.to_string()))?;
    fs_err::rename(&tmp, &path).map_err(|e| CommitError::OsRelease(e.to_string()))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_pretty_name_get_the_version() {
        let text = "NAME=\"NestOS\"\nVERSION=\"24.03-LTS (x)\"\n\nVERSION_ID=24.03-LTS\n\
                    PRETTY_NAME=\"NestOS 24.03-LTS\"\n";
        assert_eq!(
            mutate_os_release_contents(text, "24.03-LTS", "24.03-LTS.20250101.dev.0"),
            "NAME=\"NestOS\"\nVERSION=\"24.03-LTS.20250101.dev.0 (x)\"\n\
             VERSION_ID=24.03-LTS\nPRETTY_NAME=\"NestOS 24.03-LTS.20250101.dev.0\"\n\
             OSTREE_VERSION='24.03-LTS.20250101.dev.0'\n"
        );
    }

    #[test]
    fn a_base_not_found_still_adds_ostree_version() {
        let text = "VERSION=\"1\"\n";
        assert_eq!(
            mutate_os_release_contents(text, "40", "it's"),
            "VERSION=\"1\"\nOSTREE_VERSION='it'\\''s'\n"
        );
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(t.path().join("usr/lib")).unwrap();
        fs_err::create_dir_all(t.path().join("usr/etc")).unwrap();
        fs_err::write(t.path().join("usr/lib/os-release"), "VERSION=\"7\"\n").unwrap();
        t
    }

    #[test]
    fn the_etc_link_is_followed_as_the_deployed_system_reads_it() {
        let t = tree();
        // Relative to /etc (not to /usr/etc, where the link lives in ostree's layout).
        std::os::unix::fs::symlink("../usr/lib/os-release", t.path().join("usr/etc/os-release"))
            .unwrap();
        assert_eq!(
            os_release_path(t.path()).unwrap(),
            Path::new("usr/lib/os-release")
        );
        mutate_os_release(t.path(), "7", "7.1").unwrap();
        assert_eq!(
            fs_err::read_to_string(t.path().join("usr/lib/os-release")).unwrap(),
            "VERSION=\"7.1\"\nOSTREE_VERSION='7.1'\n"
        );
        assert!(
            fs_err::symlink_metadata(t.path().join("usr/etc/os-release"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn escaping_links_stay_in_the_tree() {
        let t = tree();
        std::os::unix::fs::symlink(
            "../../../../usr/lib/os-release",
            t.path().join("usr/etc/os-release"),
        )
        .unwrap();
        assert_eq!(
            os_release_path(t.path()).unwrap(),
            Path::new("usr/lib/os-release")
        );
    }

    #[test]
    fn without_etc_os_release_usr_lib_is_used_and_none_is_an_error() {
        let t = tree();
        assert_eq!(
            os_release_path(t.path()).unwrap(),
            Path::new("usr/lib/os-release")
        );
        fs_err::remove_file(t.path().join("usr/lib/os-release")).unwrap();
        let e = os_release_path(t.path()).unwrap_err().to_string();
        assert!(e.contains("/usr/lib/os-release"), "{e}");
    }
}
