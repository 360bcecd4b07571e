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

/// Is `p` a directory itself (not a symlink to one)?
fn real_dir(p: &Path) -> bool {
    fs_err::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Where an absolute, symlink-free path of the deployed system lives in the committed tree:
/// `/etc` is `/usr/etc` in ostree's layout (when the tree has no `/etc` of its own and `/usr`
/// and `/usr/etc` are real directories).
fn physical(root: &Path, abs: &Path) -> PathBuf {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    if let Ok(rest) = rel.strip_prefix("etc")
        && fs_err::symlink_metadata(root.join("etc")).is_err()
        && real_dir(&root.join("usr"))
        && real_dir(&root.join("usr/etc"))
    {
        return root.join("usr/etc").join(rest);
    }
    root.join(rel)
}

/// Resolves the absolute path `abs` of the deployed system inside the tree at `root`, one
/// component at a time, so that no symlink is ever followed by the OS: a link's target is
/// read as the deployed system reads it (relative to the link's directory in the deployed
/// system, absolute from the tree's root, `..` stopping at the root). Returns the logical
/// path without symlinks, or `None` when a component does not exist.
fn resolve_in_tree(root: &Path, abs: &Path) -> Result<Option<PathBuf>, CommitError> {
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    let push_front = |todo: &mut Vec<std::ffi::OsString>, p: &Path| {
        let comps: Vec<std::ffi::OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        for c in comps.into_iter().rev() {
            todo.push(c);
        }
    };
    push_front(&mut todo, abs);
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let md = match fs_err::symlink_metadata(physical(root, &next)) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CommitError::OsRelease(e.to_string())),
        };
        if md.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(CommitError::OsRelease(format!(
                    "more than {MAX_LINKS} symlinks resolving {}",
                    abs.display()
                )));
            }
            let target = fs_err::read_link(physical(root, &next))
                .map_err(|e| CommitError::OsRelease(e.to_string()))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            push_front(&mut todo, &target);
        } else {
            if !todo.is_empty() && !md.is_dir() {
                return Ok(None);
            }
            cur = next;
        }
    }
    Ok(Some(cur))
}

/// The file `/etc/os-release` names in the tree at `root` (its symlinks followed inside the
/// tree as the deployed system reads them, see [`resolve_in_tree`]), or `/usr/lib/os-release`
/// when there is no `/etc/os-release`. Returns the tree-relative path of a regular file.
pub fn os_release_path(root: &Path) -> Result<PathBuf, CommitError> {
    for abs in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(logical) = resolve_in_tree(root, Path::new(abs))? else {
            continue;
        };
        let p = physical(root, &logical);
        let md = fs_err::symlink_metadata(&p).map_err(|e| CommitError::OsRelease(e.to_string()))?;
        if !md.is_file() {
            return Err(CommitError::OsRelease(format!(
                "{abs} leads to {}, which is not a regular file",
                logical.display()
            )));
        }
        return Ok(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
    }
    Err(CommitError::OsRelease(
        "the tree has neither /etc/os-release nor /usr/lib/os-release".into(),
    ))
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
    fn absolute_directory_links_resolve_inside_the_tree() {
        // /usr/etc/os-release -> /usr/lib/os-release where /usr/lib -> /host-lib (absolute):
        // resolved inside the tree, never the host's /host-lib.
        let t = tree();
        fs_err::create_dir_all(t.path().join("host-lib")).unwrap();
        fs_err::write(t.path().join("host-lib/os-release"), "VERSION=\"h\"\n").unwrap();
        fs_err::rename(t.path().join("usr/lib"), t.path().join("usr/lib-real")).unwrap();
        std::os::unix::fs::symlink("/host-lib", t.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", t.path().join("usr/etc/os-release"))
            .unwrap();
        assert_eq!(
            os_release_path(t.path()).unwrap(),
            Path::new("host-lib/os-release")
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
        assert!(
            e.contains("neither /etc/os-release nor /usr/lib/os-release"),
            "{e}"
        );
    }
}
