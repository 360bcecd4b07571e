//! End-to-end export: a small tree committed with `nosa_commit::commit_tree`, exported, then
//! checked with skopeo (Debian package `skopeo`), by reading the layer tar, and by loading the
//! layer's `sysroot/ostree/repo` back with the `ostree` CLI (Debian package `ostree`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use nosa_commit::{CommitRequest, MetaValue, commit_tree};
use nosa_oci::{Chunking, ExportRequest, ExportResult, ReusableLayer, export_commit};
use nosa_testkit::{TreeBuilder, commit_request, run};

fn make_tree(root: &Path) {
    TreeBuilder::new(root)
        .file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
        .file("usr/bin/su", "setuid binary\n", 0o4755)
        .file("usr/share/doc/readme", "hello\n", 0o644)
        .file("usr/etc/test/test.txt", "test\n", 0o644)
        .file("usr/lib/chrony/state", "owned by chrony\n", 0o640)
        .file("usr/lib/one", "same content\n", 0o644)
        .file("usr/lib/two", "same content\n", 0o644)
        .file("usr/lib/empty", "", 0o644)
        .file(
            "usr/lib/modules/6.1.0/vmlinuz",
            "not really a kernel\n",
            0o644,
        )
        .symlink("usr/bin/tool-link", "tool")
        .dir("usr/share/empty");
}

/// Commits the test tree into an archive repo under `dir/repo`; returns (repo, checksum).
fn commit(dir: &Path) -> (PathBuf, String) {
    commit_edited(dir, |_| {})
}

/// Commits the test tree after `edit` changed it.
fn commit_edited(dir: &Path, edit: impl FnOnce(&Path)) -> (PathBuf, String) {
    let rootfs = dir.join("root");
    make_tree(&rootfs);
    edit(&rootfs);
    let repo = dir.join("repo");
    let req = CommitRequest {
        owners: BTreeMap::from([("/usr/lib/chrony/state".to_string(), (995, 993))]),
        xattrs: BTreeMap::from([(
            "/usr/bin/tool".to_string(),
            vec![(
                "security.capability".to_string(),
                nosa_commit::caps_from_text("cap_net_raw=ep")
                    .unwrap()
                    .unwrap(),
            )],
        )]),
        metadata: BTreeMap::from([
            ("version".to_string(), MetaValue::Str("1.0".into())),
            (
                "rpmostree.inputhash".to_string(),
                MetaValue::Str("f44f5836de5c".into()),
            ),
        ]),
        ..commit_request(&repo, &rootfs, "nestos/x86_64/test")
    };
    let r = commit_tree(&req).unwrap();
    (repo, r.checksum)
}

fn export(repo: &Path, out: &Path, chunking: Chunking) -> ExportResult {
    export_reusing(repo, out, chunking, BTreeMap::new(), BTreeMap::new())
}

fn export_reusing(
    repo: &Path,
    out: &Path,
    chunking: Chunking,
    reuse: BTreeMap<String, ReusableLayer>,
    known_sizes: BTreeMap<String, u64>,
) -> ExportResult {
    export_commit(&ExportRequest {
        repo: repo.to_path_buf(),
        rev: "nestos/x86_64/test".into(),
        arch: "x86_64".into(),
        name: "nestos".into(),
        version: "1.0".into(),
        chunking,
        labels: BTreeMap::new(),
        out_dir: out.join("out"),
        scratch: out.join("scratch"),
        reuse,
        known_sizes,
    })
    .unwrap()
}

/// The blobs of an ociarchive, by path in the archive.
fn archive_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs_err::File::open(path).unwrap());
    let mut files = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        files.insert(name, buf);
    }
    files
}

struct Entry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<String>,
    data: Vec<u8>,
}

fn layer_entries(gz: &[u8]) -> Vec<(String, Entry)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut v = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        assert_eq!(h.mtime().unwrap(), 0, "{name}: mtime");
        v.push((
            name,
            Entry {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                data,
            },
        ));
    }
    v
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn export_is_reproducible_and_readable_by_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, checksum) = commit(tmp.path());
    let a = export(&repo, &tmp.path().join("a"), Chunking::Single);
    let b = export(&repo, &tmp.path().join("b"), Chunking::Single);
    assert_eq!(a.file_name, "nestos-1.0-ostree.x86_64.ociarchive");
    assert_eq!(a.commit, checksum);
    assert_eq!(
        fs_err::read(&a.path).unwrap(),
        fs_err::read(&b.path).unwrap(),
        "two exports differ"
    );

    let path = a.path.to_str().unwrap();
    let inspect = json(
        run(
            "skopeo",
            &["inspect", &format!("oci-archive:{path}")],
            "skopeo",
        )
        .as_bytes(),
    );
    let labels = &inspect["Labels"];
    assert_eq!(labels["ostree.commit"], checksum.as_str());
    assert_eq!(labels["ostree.bootable"], "true");
    assert_eq!(labels["containers.bootc"], "1");
    assert_eq!(labels["org.opencontainers.image.version"], "1.0");
    assert_eq!(labels["rpmostree.inputhash"], "f44f5836de5c");
    assert_eq!(labels["ostree.final-diffid"], a.layers[0].diff_id.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Digest"], a.manifest_digest.as_str());

    let dir = tmp.path().join("copied");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{path}"),
            &format!("oci:{}:latest", dir.display()),
        ],
        "skopeo",
    );
    assert!(dir.join("index.json").exists());
    let copied = json(&fs_err::read(dir.join("index.json")).unwrap());
    assert_eq!(copied["manifests"][0]["digest"], a.manifest_digest.as_str());

    // The layer: checkout with modes and owners, objects under sysroot/ostree/repo.
    let files = archive_files(&a.path);
    let blob = |d: &str| &files[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))];
    let manifest = json(blob(&a.manifest_digest));
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let entries = layer_entries(blob(manifest["layers"][0]["digest"].as_str().unwrap()));
    let get = |p: &str| {
        &entries
            .iter()
            .find(|(n, _)| n == p)
            .unwrap_or_else(|| panic!("{p} not in the layer"))
            .1
    };
    // ostree-ext's order: root, repo structure, then the commit object first among objects.
    assert_eq!(entries[0].0, "./");
    let first_object = entries
        .iter()
        .find(|(n, e)| {
            n.starts_with("sysroot/ostree/repo/objects/") && e.kind != tar::EntryType::Directory
        })
        .unwrap();
    assert!(first_object.0.ends_with(".commit"), "{}", first_object.0);
    let su = get("usr/bin/su");
    assert_eq!(
        (su.kind, su.mode, su.uid),
        (tar::EntryType::Link, 0o4755, 0)
    );
    let obj = su.link.clone().unwrap();
    assert!(obj.starts_with("sysroot/ostree/repo/objects/") && obj.ends_with(".file"));
    assert_eq!(get(&obj).data, b"setuid binary\n");
    assert_eq!(get(&obj).mode, 0o4755);
    let state = get("usr/lib/chrony/state");
    assert_eq!((state.mode, state.uid, state.gid), (0o640, 995, 993));
    assert_eq!(get("etc/test/test.txt").kind, tar::EntryType::Link);
    assert_eq!(get("usr/lib/one").link, get("usr/lib/two").link);
    assert_eq!(get("usr/lib/empty").kind, tar::EntryType::Regular);
    let link_obj = get("usr/bin/tool-link").link.clone().unwrap();
    assert_eq!(get(&link_obj).kind, tar::EntryType::Symlink);
    assert_eq!(get(&link_obj).link.as_deref(), Some("tool"));
    assert_eq!(get("usr/share/empty").kind, tar::EntryType::Directory);
    assert_eq!(get("var/tmp").mode, 0o1777);
    let (c1, c2) = checksum.split_at(2);
    assert!(
        entries
            .iter()
            .any(|(n, _)| *n == format!("sysroot/ostree/repo/objects/{c1}/{c2}.commit"))
    );
    // Empty xattrs and the capability of usr/bin/tool: two `.file-xattrs` objects.
    let xattr_objects: Vec<_> = entries
        .iter()
        .filter(|(n, _)| n.ends_with(".file-xattrs"))
        .collect();
    assert_eq!(xattr_objects.len(), 2);
    assert!(
        xattr_objects
            .iter()
            .any(|(_, e)| e.data.windows(19).any(|w| w == b"security.capability"))
    );
    for suffix in [".dirtree", ".dirmeta", ".file-xattrs", ".file-xattrs-link"] {
        assert!(
            entries.iter().any(|(n, _)| n.ends_with(suffix)),
            "no {suffix} object"
        );
    }
}

/// Extracts the layers into a directory (as the container runtime would) and opens
/// `sysroot/ostree/repo` with the ostree CLI: fsck, then pull-local into a fresh archive repo
/// and compare the commit checksum and the checkout listing.
#[test]
fn layers_round_trip_through_ostree() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, checksum) = commit(tmp.path());
    let chunking = Chunking::Components {
        components: BTreeMap::from([
            ("/usr/bin/su".to_string(), "shadow".to_string()),
            ("/usr/bin/tool".to_string(), "tool".to_string()),
        ]),
        max_layers: 8,
    };
    let a = export(&repo, &tmp.path().join("a"), chunking.clone());
    let b = export(&repo, &tmp.path().join("b"), chunking);
    assert_eq!(
        fs_err::read(&a.path).unwrap(),
        fs_err::read(&b.path).unwrap()
    );
    // The commit layer (metadata only), then one layer per component, by name.
    let comps: Vec<_> = a.layers.iter().map(|l| l.components.clone()).collect();
    assert_eq!(
        comps,
        [vec![], vec!["shadow"], vec!["tool"], vec!["unpackaged"]]
    );
    assert_eq!(a.layers[0].objects, 0);
    assert_eq!(a.labels["ostree.final-diffid"], a.layers[3].diff_id);

    let files = archive_files(&a.path);
    let root = tmp.path().join("extracted");
    fs_err::create_dir_all(&root).unwrap();
    for l in &a.layers {
        let p = tmp.path().join("layer.tar.gz");
        fs_err::write(&p, &files[&format!("blobs/sha256/{}", &l.digest[7..])]).unwrap();
        run(
            "tar",
            &["-xzpf", p.to_str().unwrap(), "-C", root.to_str().unwrap()],
            "tar",
        );
    }
    let srepo = root.join("sysroot/ostree/repo");
    let r = format!("--repo={}", srepo.display());
    run("ostree", &[&r, "fsck"], "ostree");
    let dest = tmp.path().join("dest");
    let d = format!("--repo={}", dest.display());
    run("ostree", &[&d, "init", "--mode=archive"], "ostree");
    run(
        "ostree",
        &[&d, "pull-local", srepo.to_str().unwrap(), &checksum],
        "ostree",
    );
    run("ostree", &[&d, "fsck"], "ostree");
    let o = format!("--repo={}", repo.display());
    assert_eq!(
        run("ostree", &[&d, "ls", "-R", &checksum], "ostree"),
        run("ostree", &[&o, "ls", "-R", &checksum], "ostree")
    );
    let shown = run("ostree", &[&d, "rev-parse", &checksum], "ostree");
    assert_eq!(shown.trim(), checksum);
}

#[test]
fn unchanged_component_layers_are_reused_and_the_archive_equals_a_cold_one() {
    let tmp = tempfile::tempdir().unwrap();
    let chunking = Chunking::Components {
        components: BTreeMap::from([
            ("/usr/bin/su".to_string(), "shadow".to_string()),
            ("/usr/bin/tool".to_string(), "tool".to_string()),
        ]),
        max_layers: 8,
    };
    let (repo1, _) = commit(&tmp.path().join("c1"));
    let first = export(&repo1, &tmp.path().join("e1"), chunking.clone());
    assert_eq!(first.layer_files.len(), first.layers.len() - 1);
    assert!(first.layer_files.iter().all(|l| !l.reused));

    // The tool changes; shadow does not.
    let (repo2, _) = commit_edited(&tmp.path().join("c2"), |root| {
        fs_err::write(root.join("usr/bin/tool"), "#!/bin/sh\necho tool 2\n").unwrap();
    });
    let reuse: BTreeMap<String, ReusableLayer> = first
        .layer_files
        .iter()
        .map(|l| (l.key.clone(), l.layer.clone()))
        .collect();
    // With the first export's object sizes too (most objects are the same ones).
    assert!(!first.object_sizes.is_empty());
    let warm = export_reusing(
        &repo2,
        &tmp.path().join("e2"),
        chunking.clone(),
        reuse,
        first.object_sizes.clone(),
    );
    let cold = export(&repo2, &tmp.path().join("e3"), chunking);
    assert_eq!(warm.object_sizes, cold.object_sizes);
    let reused: BTreeMap<&str, bool> = warm.layers[1..]
        .iter()
        .zip(&warm.layer_files)
        .map(|(l, f)| (l.name.as_str(), f.reused))
        .collect();
    assert_eq!(reused.get("shadow"), Some(&true), "{reused:?}");
    assert_eq!(reused.get("tool"), Some(&false), "{reused:?}");
    assert_eq!(warm.layers, cold.layers);
    assert_eq!(warm.manifest_digest, cold.manifest_digest);
    assert_eq!(
        fs_err::read(&warm.path).unwrap(),
        fs_err::read(&cold.path).unwrap(),
        "an export reusing layers is byte-identical to a cold one"
    );
    // A reusable layer whose file is gone is written again.
    let mut gone = BTreeMap::new();
    for l in &first.layer_files {
        let mut layer = l.layer.clone();
        layer.path = tmp.path().join("no-such-file");
        gone.insert(l.key.clone(), layer);
    }
    let again = export_reusing(
        &repo1,
        &tmp.path().join("e4"),
        Chunking::Single,
        gone.clone(),
        BTreeMap::new(),
    );
    assert!(
        again.layer_files.is_empty(),
        "a single-layer export has no component layers"
    );
    let (repo3, _) = commit(&tmp.path().join("c3"));
    let rewritten = export_reusing(
        &repo3,
        &tmp.path().join("e5"),
        Chunking::Components {
            components: BTreeMap::from([
                ("/usr/bin/su".to_string(), "shadow".to_string()),
                ("/usr/bin/tool".to_string(), "tool".to_string()),
            ]),
            max_layers: 8,
        },
        gone,
        BTreeMap::new(),
    );
    assert!(rewritten.layer_files.iter().all(|l| !l.reused));
    assert_eq!(
        fs_err::read(&rewritten.path).unwrap(),
        fs_err::read(&first.path).unwrap()
    );
}
