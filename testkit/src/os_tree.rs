//! Small OS trees to commit, and a commit request with test defaults.

use std::collections::BTreeMap;
use std::path::Path;

use nosa_commit::{CommitRequest, RepoMode};

use crate::TreeBuilder;

/// Writes a small OS tree under `root`: modes 0644/0755/4755/0640, a symlink, a hardlink pair,
/// nested and empty directories, `/usr/etc/test/test.txt`, a passwd and group with a non-root
/// user (`chrony`, 995:993).
pub fn sample_os_tree(root: &Path) {
    TreeBuilder::new(root)
        .file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
        .file("usr/bin/su", "setuid binary\n", 0o4755)
        .file("usr/share/doc/readme", "hello\n", 0o644)
        .file("usr/share/a/b/c/d.txt", "deep\n", 0o644)
        .file("usr/etc/test/test.txt", "test\n", 0o644)
        .file(
            "usr/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nchrony:x:995:993::/var/lib/chrony:/sbin/nologin\n",
            0o644,
        )
        .file("usr/etc/group", "root:x:0:\nchrony:x:993:\n", 0o644)
        .file("usr/lib/chrony/state", "owned by chrony\n", 0o640)
        .file("usr/sbin/ping", "ping\n", 0o755)
        .file("usr/lib/one", "same inode\n", 0o644)
        .hardlink("usr/lib/one", "usr/lib/two")
        .symlink("usr/bin/tool-link", "tool")
        .dir("usr/share/empty");
}

/// A request to commit `rootfs` into an archive-mode repository `repo` as `ref_name`: no
/// owners, xattrs or metadata, a fixed timestamp, no parent, no fsync. Tests override fields
/// with struct update syntax.
pub fn commit_request(repo: &Path, rootfs: &Path, ref_name: &str) -> CommitRequest {
    CommitRequest {
        repo: repo.to_path_buf(),
        mode: RepoMode::Archive,
        rootfs: rootfs.to_path_buf(),
        owners: BTreeMap::new(),
        xattrs: BTreeMap::new(),
        ref_name: ref_name.into(),
        metadata: BTreeMap::new(),
        timestamp: 1_700_000_000,
        parent: None,
        subject: None,
        fsync: false,
    }
}
