//! Reading a staged OS tree without leaving it: the tree's own passwd/group files, to turn
//! `user:group` owners into ids.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::CommitError;

/// The regular file `rel` below `root`, or `None` if it, or any directory on the way, is
/// missing, a symlink or not what it should be (a symlink could point out of the tree, at the
/// host's files).
pub(crate) fn regular_file_in(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    let comps: Vec<Component<'_>> = Path::new(rel).components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::Normal(n) => cur.push(n),
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => return None,
        }
        let m = cur.symlink_metadata().ok()?;
        let last = i + 1 == comps.len();
        if (last && !m.is_file()) || (!last && !m.is_dir()) {
            return None;
        }
    }
    Some(cur)
}

/// User and group names to ids, from the tree's own files: `usr/etc/passwd` (ostree layout),
/// `etc/passwd`, `usr/lib/passwd` (nss-altfiles), and the same for `group`. The first file
/// that names an account wins. `root` is always 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// User name -> uid.
    pub users: BTreeMap<String, u32>,
    /// Group name -> gid.
    pub groups: BTreeMap<String, u32>,
}

const DIRS: [&str; 3] = ["usr/etc", "etc", "usr/lib"];

fn parse_db(text: &str, into: &mut BTreeMap<String, u32>) {
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(id) = id.trim().parse() {
            into.entry(name.trim().to_string()).or_insert(id);
        }
    }
}

impl IdMap {
    /// Reads the tree at `root`.
    pub fn from_tree(root: &Path) -> Result<IdMap, CommitError> {
        let mut map = IdMap::default();
        map.users.insert("root".into(), 0);
        map.groups.insert("root".into(), 0);
        for dir in DIRS {
            if let Some(p) = regular_file_in(root, &format!("{dir}/passwd")) {
                parse_db(&fs_err::read_to_string(p)?, &mut map.users);
            }
            if let Some(p) = regular_file_in(root, &format!("{dir}/group")) {
                parse_db(&fs_err::read_to_string(p)?, &mut map.groups);
            }
        }
        Ok(map)
    }

    /// `user:group` (names or numbers) as ids.
    pub fn resolve(&self, owner: &str) -> Result<(u32, u32), String> {
        let (u, g) = owner
            .split_once(':')
            .ok_or_else(|| format!("owner {owner:?} is not user:group"))?;
        let id = |name: &str, db: &BTreeMap<String, u32>, what: &str| {
            name.parse::<u32>()
                .ok()
                .or_else(|| db.get(name).copied())
                .ok_or_else(|| {
                    format!("{what} {name:?} is not in the tree's passwd/group files (usr/etc, etc, usr/lib)")
                })
        };
        Ok((id(u, &self.users, "user")?, id(g, &self.groups, "group")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_tree_and_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs_err::create_dir_all(root.join("usr/etc")).unwrap();
        fs_err::create_dir_all(root.join("etc")).unwrap();
        fs_err::write(
            root.join("usr/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nchrony:x:995:993::/:/sbin/nologin\n",
        )
        .unwrap();
        fs_err::write(root.join("usr/etc/group"), "root:x:0:\nchrony:x:993:\n").unwrap();
        // An absolute symlink would read the host's file: ignored.
        std::os::unix::fs::symlink("/etc/group", root.join("etc/group")).unwrap();
        fs_err::write(
            root.join("etc/passwd"),
            "chrony:x:1:1::/:/bin/false\nbin:x:2:2::/:/x\n",
        )
        .unwrap();
        let ids = IdMap::from_tree(root).unwrap();
        assert_eq!(ids.resolve("chrony:chrony"), Ok((995, 993)));
        assert_eq!(ids.resolve("bin:root"), Ok((2, 0)));
        assert_eq!(ids.resolve("7:8"), Ok((7, 8)));
        assert!(ids.resolve("nobody:root").unwrap_err().contains("nobody"));
        assert!(ids.resolve("root").is_err());
        assert_eq!(regular_file_in(root, "etc/group"), None);
        assert_eq!(regular_file_in(root, "../x"), None);
    }
}
