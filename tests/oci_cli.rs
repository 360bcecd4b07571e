//! The OCI archive of `nosa build` on the example config and the fixture distro: a layer per
//! component (package, rpm database, overlay.d layer, initramfs, unpackaged content), the
//! smaller ones sharing a few layers past 64 (the example has about 160 components). Three
//! builds: the example, then one overlay file changed, then one package added. Between two
//! builds only the layers that hold what changed (and the commit layer) get new digests; every
//! other layer keeps its digest. The last archive is imported with ostree-ext's own importer
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

/// The layer (its component list) that holds component `c`.
fn layer_of(layers: &BTreeMap<String, String>, c: &str) -> String {
    let found: Vec<&String> = layers
        .keys()
        .filter(|k| k.split(',').any(|x| x == c) || (c.is_empty() && k.is_empty()))
        .collect();
    assert_eq!(found.len(), 1, "one layer holds {c:?}: {layers:?}");
    found[0].clone()
}

/// The layers (component lists) whose digest differs between two builds (added or removed
/// ones too).
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
        layer_of(&first, want);
    }
    // The largest components have layers of their own.
    for own in ["", "systemd", "rpmdb", "initramfs"] {
        assert_eq!(layer_of(&first, own), own, "{first:?}");
    }
    assert!(first.len() <= 64, "at most 64 layers: {}", first.len());

    // One overlay file: the layers of its overlay, of os-release (a new build:
    // mutate-os-release stamps the new version into it) and the commit layer change, nothing
    // else; in particular not the package that ships os-release.
    fs_err::write(
        tmp.path()
            .join("example-config/overlay.d/15nestos/etc/test/test.txt"),
        "changed\n",
    )
    .unwrap();
    let (_, second) = build(&w);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>(),
        "the same components share the same layers"
    );
    let mut want = vec![
        String::new(),
        layer_of(&first, "os-release"),
        layer_of(&first, "overlay.d/15nestos"),
    ];
    want.sort();
    want.dedup();
    assert_eq!(changed(&first, &second), want);

    // One package more: its layer (or the shared layer it joins) appears, the rpm database,
    // os-release and the commit layer change.
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
    let joined = layer_of(&third, "fixture-conflict-a");
    let before: String = joined
        .split(',')
        .filter(|c| *c != "fixture-conflict-a")
        .collect::<Vec<_>>()
        .join(",");
    let mut want = vec![
        String::new(),
        layer_of(&second, "os-release"),
        "rpmdb".to_string(),
        joined.clone(),
    ];
    if !before.is_empty() {
        want.push(before);
    }
    if layer_of(&third, "os-release") != layer_of(&second, "os-release") {
        want.push(layer_of(&third, "os-release"));
    }
    want.sort();
    want.dedup();
    assert_eq!(changed(&second, &third), want);

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
