//! Test helpers: a small OS tree and the `ostree` CLI (Debian package `ostree`).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Writes a small OS tree under `root`: modes 0644/0755/4755, a symlink, a hardlink pair,
/// nested directories, `/usr/etc/test/test.txt`, a passwd with a non-root user.
pub fn make_tree(root: &Path) {
    let file = |rel: &str, content: &str, mode: u32| {
        let p = root.join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, content).unwrap();
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755);
    file("usr/bin/su", "setuid binary\n", 0o4755);
    file("usr/share/doc/readme", "hello\n", 0o644);
    file("usr/share/a/b/c/d.txt", "deep\n", 0o644);
    file("usr/etc/test/test.txt", "test\n", 0o644);
    file(
        "usr/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nchrony:x:995:993::/var/lib/chrony:/sbin/nologin\n",
        0o644,
    );
    file("usr/etc/group", "root:x:0:\nchrony:x:993:\n", 0o644);
    file("usr/lib/chrony/state", "owned by chrony\n", 0o640);
    file("usr/sbin/ping", "ping\n", 0o755);
    file("usr/lib/one", "same inode\n", 0o644);
    fs_err::hard_link(root.join("usr/lib/one"), root.join("usr/lib/two")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("usr/bin/tool-link")).unwrap();
    fs_err::create_dir_all(root.join("usr/share/empty")).unwrap();
}

/// The `ostree` CLI, or a failure naming the Debian package.
pub fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the `ostree` CLI ({e}): install the Debian package `ostree`")
        });
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One line of `ostree ls -R`: (type+mode, uid, gid, path, link target).
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub path: String,
    pub target: Option<String>,
}

pub fn ls(repo: &Path, rev: &str) -> Vec<Entry> {
    ostree(repo, &["ls", "-R", rev])
        .lines()
        .map(|l| {
            let (l, target) = match l.split_once(" -> ") {
                Some((a, b)) => (a, Some(b.to_string())),
                None => (l, None),
            };
            let f: Vec<&str> = l.split_whitespace().collect();
            Entry {
                mode: f[0].to_string(),
                uid: f[1].parse().unwrap(),
                gid: f[2].parse().unwrap(),
                path: f[4].to_string(),
                target,
            }
        })
        .collect()
}
