//! The compose's first nodes on the example and the fixture distro: `rootfs:<arch>` is the union
//! of the unpacked packages with the overlay layers on top; `scriptlets:<arch>` runs the
//! packages' %pre/%post in that tree under bubblewrap. Changing one overlay.d file reruns that
//! overlay node and the nodes after it, no package node, and `graph why` names the file.

mod common;

use common::{fixture_workdir, nosa, summary};

#[test]
fn rootfs_union_and_overlay_change() {
    let (tmp, w) = fixture_workdir();
    let out = nosa(&w, &["graph", "build", "--json", "scriptlets:x86_64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["rootfs:x86_64"], "ran");
    assert_eq!(s["scriptlets:x86_64"], "ran");
    assert!(
        s.keys().any(|k| k.starts_with("unpack:x86_64:systemd-")),
        "{s:?}"
    );

    let listing = nosa(&w, &["graph", "output", "rootfs:x86_64", "--json"]);
    assert!(listing.status.success());
    let v: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let paths: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for want in [
        "root/usr/bin/systemctl",
        "root/usr/lib/os-release",
        "root/etc/test/test.txt",
        "root/usr/lib/systemd/system-preset/40-nestos.preset",
        "meta.json",
    ] {
        assert!(paths.contains(&want), "{want} in the rootfs");
    }
    let kernel = paths
        .iter()
        .any(|p| p.starts_with("root/usr/lib/modules/") && p.ends_with("/vmlinuz"));
    assert!(
        kernel,
        "the kernel is laid out as /usr/lib/modules/<kver>/vmlinuz"
    );

    // The scriptlets ran inside the tree, with rpm's install-count argument.
    let listing = nosa(&w, &["graph", "output", "scriptlets:x86_64", "--json"]);
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let entry = |p: &str| {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .cloned()
    };
    assert!(entry("root/etc/fixture-pre.conf").is_some(), "%pre ran");
    let post = entry("root/etc/fixture-post.conf").expect("%post ran");
    let digest = post["digest"].as_str().unwrap();
    let blob = w.join("cache/store/blobs").join(&digest[..2]).join(digest);
    assert_eq!(fs_err::read_to_string(blob).unwrap(), "post-ran=1 arg=1\n");
    assert!(
        entry("root/tmp/.nosa-scriptlet").is_none(),
        "nothing of the sandbox is left"
    );

    // One overlay file changes: its layer and the rootfs rerun, no package node does.
    let f = tmp
        .path()
        .join("example-config/overlay.d/15nestos/etc/test/test.txt");
    fs_err::write(&f, "changed by the test\n").unwrap();
    let out = nosa(&w, &["graph", "build", "--json", "scriptlets:x86_64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    let ran: Vec<&String> = s
        .iter()
        .filter(|(_, st)| *st == "ran")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ran,
        vec!["overlay:15nestos", "rootfs:x86_64", "scriptlets:x86_64"],
        "{s:?}"
    );
    let why = nosa(&w, &["graph", "why", "rootfs:x86_64", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    assert_eq!(v["state"], "ran");
    let rc = &v["root_causes"][0];
    assert_eq!(rc["node"], "overlay:15nestos", "{v}");
    assert_eq!(rc["kind"], "input-changed");
    assert_eq!(
        rc["name"],
        "src/config/overlay.d/15nestos/etc/test/test.txt"
    );
}

/// The blob of `path` in node `id`'s output.
fn output_file(w: &std::path::Path, id: &str, path: &str) -> Vec<u8> {
    let listing = nosa(w, &["graph", "output", id, "--json"]);
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} in the output of {id}"))
        .clone();
    let digest = e["digest"].as_str().unwrap();
    fs_err::read(w.join("cache/store/blobs").join(&digest[..2]).join(digest)).unwrap()
}

/// nestos-assembler's `overrides/rpm`: an RPM of the fixture distro dropped there is a
/// repository whose packages replace same-name packages of the config's repositories, newer
/// versions included.
#[test]
fn overrides_rpm_replace_same_name_packages() {
    let (_tmp, w) = fixture_workdir();
    let packages = nosa_testkit::fixture_packages();
    let lib13 = "fixture-lib-1.3-1.nosa1.x86_64";
    fs_err::create_dir_all(w.join("overrides/rpm")).unwrap();
    fs_err::copy(
        packages.join(format!("{lib13}.rpm")),
        w.join(format!("overrides/rpm/{lib13}.rpm")),
    )
    .unwrap();
    let out = nosa(&w, &["graph", "build", "--json", "rootfs:x86_64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["overrides-rpm:x86_64"], "ran", "{s:?}");
    assert_eq!(s[&format!("rpm:x86_64:{lib13}")], "ran", "{s:?}");
    let resolved: serde_json::Value =
        serde_json::from_slice(&output_file(&w, "resolve:x86_64", "resolved.json")).unwrap();
    let lib = resolved["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fixture-lib")
        .expect("fixture-lib resolved")
        .clone();
    assert_eq!(lib["repo"], "overrides-rpm", "{lib}");
    assert_eq!(lib["nevra"], lib13);
    let meta: serde_json::Value =
        serde_json::from_slice(&output_file(&w, "rootfs:x86_64", "meta.json")).unwrap();
    assert!(
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == lib13),
        "the override is in the tree: {}",
        meta["packages"]
    );

    // The override is taken even when the repositories have a newer version: with 1.1 in
    // overrides/rpm, fixture-app's `fixture-lib >= 1.2` cannot be met (the repository's 1.3
    // is not considered), as dnf with the override repository first refuses it.
    fs_err::remove_file(w.join(format!("overrides/rpm/{lib13}.rpm"))).unwrap();
    fs_err::copy(
        packages.join("fixture-lib-1.1-1.nosa1.x86_64.rpm"),
        w.join("overrides/rpm/fixture-lib-1.1-1.nosa1.x86_64.rpm"),
    )
    .unwrap();
    let out = nosa(&w, &["graph", "build", "--json", "resolve:x86_64"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fixture-lib >= 1.2"), "{err}");

    // A file that is not an RPM is refused, named (createrepo_c alone would skip it).
    fs_err::write(w.join("overrides/rpm/broken.rpm"), "not an rpm\n").unwrap();
    let out = nosa(&w, &["graph", "build", "--json", "overrides-rpm:x86_64"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("overrides/rpm/broken.rpm: not a readable RPM"),
        "{err}"
    );
}
