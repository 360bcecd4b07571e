//! The OCI archive of `nosa build` on the example config and the fixture distro: one layer per
//! component (package, rpm database, overlay.d layer, initramfs, unpackaged content). Three
//! builds: the example, then one overlay file changed, then one package added. Between two
//! builds only the layers of what changed (and the commit layer) get new digests; every other
//! layer keeps its digest. The last archive is imported with ostree-ext's own importer
//! (`tools/ostree-ext-check`, which runs Debian's `skopeo`) and must give the built commit.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture_workdir, nosa, summary};
use nosa_testkit::{ostree, ostree_ext_check};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

/// Builds, then returns the build dir and the archive's layers: component list (joined by `,`;
/// empty for the commit layer) -> layer digest.
fn build(w: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let out = nosa(w, &["build", "--json"]);
    assert!(
        out.status.success(),
        "nosa build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["oci:x86_64"], "ran");
    let dir = fs_err::canonicalize(w.join("builds/latest/x86_64")).unwrap();
    let oci = json(&dir.join("oci.json"));
    let mut layers = BTreeMap::new();
    for l in oci["layers"].as_array().unwrap() {
        let comps: Vec<&str> = l["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let old = layers.insert(comps.join(","), l["digest"].as_str().unwrap().to_string());
        assert!(old.is_none(), "two layers for {comps:?}");
    }
    (dir, layers)
}

/// The components whose layer digest differs between two builds (added or removed ones too).
fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[test]
fn oci_layers_follow_packages_and_overlays_and_ostree_ext_imports_them() {
    let (tmp, w) = fixture_workdir();
    let (_, first) = build(&w);
    for want in [
        "",
        "systemd",
        "fixture-app",
        "rpmdb",
        "overlay.d/15nestos",
        "initramfs",
        "os-release",
        "unpackaged",
    ] {
        assert!(first.contains_key(want), "a layer for {want:?}: {first:?}");
    }

    // One overlay file: its overlay's layer, the commit layer and os-release (a new build:
    // mutate-os-release stamps the new version into it) change, nothing else; in particular
    // not the package that ships os-release.
    fs_err::write(
        tmp.path()
            .join("example-config/overlay.d/15nestos/etc/test/test.txt"),
        "changed\n",
    )
    .unwrap();
    let (_, second) = build(&w);
    assert_eq!(
        changed(&first, &second),
        ["", "os-release", "overlay.d/15nestos"]
    );

    // One package more: its layer appears, the rpm database, os-release and the commit layer
    // change.
    let pkgs = tmp.path().join("example-config/manifests/packages.yaml");
    let text = fs_err::read_to_string(&pkgs).unwrap();
    assert!(text.contains("  - fixture-app\n"));
    fs_err::write(
        &pkgs,
        text.replace(
            "  - fixture-app\n",
            "  - fixture-app\n  - fixture-conflict-a\n",
        ),
    )
    .unwrap();
    let (dir, third) = build(&w);
    assert_eq!(
        changed(&second, &third),
        ["", "fixture-conflict-a", "os-release", "rpmdb"]
    );

    // ostree-ext imports the archive as the commit nosa built.
    let meta = json(&dir.join("meta.json"));
    let commit = meta["ostree-commit"].as_str().unwrap();
    let oci = json(&dir.join("oci.json"));
    let archive = dir.join(oci["file_name"].as_str().unwrap());
    let dest = tmp.path().join("imported");
    let out = Command::new(ostree_ext_check())
        .arg(&dest)
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree-ext import failed (needs the Debian package skopeo): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commit"], commit, "{v}");
    assert_eq!(v["base_commit"], commit, "{v}");
    assert_eq!(v["layers"], third.len(), "{v}");
    assert_eq!(v["manifest_digest"], oci["manifest_digest"]);
    let fsck = ostree(&dest, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    let merge = v["merge_commit"].as_str().unwrap();
    assert_eq!(ostree(&dest, &["diff", commit, merge]), "");
    let built = dir.join("ostree-commit/repo");
    assert_eq!(
        ostree(&dest, &["ls", "-R", merge]),
        ostree(&built, &["ls", "-R", commit])
    );
}
