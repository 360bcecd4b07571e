//! The archive as ostree-ext itself imports it: `tools/ostree-ext-check` (its own Cargo
//! workspace, built here with cargo; it links ostree-ext 0.15, the importer rpm-ostree and bootc
//! use, which runs Debian's `skopeo experimental-image-proxy`) imports a chunked export into a
//! fresh repository; the imported commit must be the exported one, with the same content.
//! Needs the Debian packages `skopeo`, `ostree`, `libzstd-dev` (to build the tool).

use std::collections::BTreeMap;
use std::process::Command;

use nosa_commit::{CommitRequest, MetaValue, commit_tree};
use nosa_oci::{Chunking, ExportRequest, export_commit};
use nosa_testkit::{TreeBuilder, commit_request, ostree, ostree_ext_check};

#[test]
fn ostree_ext_imports_a_chunked_export() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    TreeBuilder::new(&root)
        .file("usr/bin/sh", "#!shell\n", 0o755)
        .file("usr/bin/su", "setuid\n", 0o4755)
        .file("usr/lib/libc.so", "libc\n", 0o755)
        .file("usr/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
        .file("usr/lib/modules/6.1.0/vmlinuz", "kernel\n", 0o644)
        .file("usr/lib/modules/6.1.0/initramfs.img", "initramfs\n", 0o644)
        .file("usr/lib/empty", "", 0o644)
        // One object, two components: it is in both layers.
        .file("usr/share/licenses/bash/COPYING", "GPL\n", 0o644)
        .file("usr/share/licenses/glibc/COPYING", "GPL\n", 0o644)
        .symlink("usr/bin/bash", "sh");
    let repo = tmp.path().join("repo");
    let commit = commit_tree(&CommitRequest {
        metadata: BTreeMap::from([("version".to_string(), MetaValue::Str("1.0".into()))]),
        ..commit_request(&repo, &root, "nestos/x86_64/test")
    })
    .unwrap()
    .checksum;
    let components = [
        ("/usr/bin/sh", "bash"),
        ("/usr/bin/bash", "bash"),
        ("/usr/bin/su", "shadow"),
        ("/usr/lib/libc.so", "glibc"),
        ("/usr/share/licenses/bash/COPYING", "bash"),
        ("/usr/share/licenses/glibc/COPYING", "glibc"),
        ("/usr/lib/modules/6.1.0/vmlinuz", "kernel"),
    ];
    let res = export_commit(&ExportRequest {
        repo: repo.clone(),
        rev: commit.clone(),
        arch: "x86_64".into(),
        name: "nestos".into(),
        version: "1.0".into(),
        chunking: Chunking::Components {
            components: components
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect(),
            max_layers: 64,
        },
        labels: BTreeMap::new(),
        out_dir: tmp.path().join("out"),
        scratch: tmp.path().join("scratch"),
        reuse: BTreeMap::new(),
        known_sizes: BTreeMap::new(),
    })
    .unwrap();
    // commit, bash, glibc, initramfs, kernel, shadow, unpackaged
    assert_eq!(res.layers.len(), 7, "{:?}", res.layers);
    let objects: Vec<usize> = res.layers.iter().map(|l| l.objects).collect();
    assert_eq!(objects, [0, 3, 2, 1, 1, 1, 2], "{:?}", res.layers);

    let dest = tmp.path().join("imported");
    let out = Command::new(ostree_ext_check())
        .arg(&dest)
        .arg(format!("oci-archive:{}", res.path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree-ext import failed (needs the Debian package skopeo): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commit"], commit.as_str(), "{v}");
    assert_eq!(v["base_commit"], commit.as_str(), "{v}");
    assert_eq!(v["manifest_digest"], res.manifest_digest.as_str());
    assert_eq!(v["layers"], 7);
    ostree(&dest, &["fsck"]);
    // The merge commit ostree-ext writes has the exported tree.
    let merge = v["merge_commit"].as_str().unwrap();
    assert_eq!(ostree(&dest, &["diff", &commit, merge]), "");
    assert_eq!(
        ostree(&dest, &["ls", "-R", merge]),
        ostree(&repo, &["ls", "-R", &commit])
    );
}
