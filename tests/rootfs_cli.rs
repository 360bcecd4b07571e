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
        s.keys().any(|k| k.starts_with("unpack:x86_64:busybox-")),
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
        "root/usr/bin/busybox",
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
