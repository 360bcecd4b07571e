//! Overlay layers as real nodes on the example config: normalized like nestos-assembler
//! (umask 022, setuid/setgid dropped, statoverride honoured), and a changed overlay file reruns
//! exactly its layer's node, which `graph why` names as the root cause.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{example_workdir, nosa, summary};

#[test]
fn overlay_nodes_normalize_and_rerun_alone() {
    let (tmp, w) = example_workdir();
    let layer = tmp.path().join("example-config/overlay.d/15nestos");
    // A setuid, group-writable file and a statoverride for it.
    fs_err::create_dir_all(layer.join("usr/bin")).unwrap();
    fs_err::write(layer.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(
        layer.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4775),
    )
    .unwrap();
    fs_err::write(layer.join("etc/test/secret"), "s\n").unwrap();
    fs_err::write(
        layer.join("statoverride"),
        "# modes in decimal\n=288 /etc/test/secret\n",
    )
    .unwrap();

    let out = nosa(
        &w,
        &[
            "graph",
            "build",
            "overlay:05core",
            "overlay:15nestos",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["overlay:15nestos"], "ran");
    assert_eq!(s["overlay:05core"], "ran");

    // Inspect the stored output tree of the 15nestos layer.
    let out = nosa(&w, &["graph", "output", "overlay:15nestos", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mode_of = |p: &str| {
        tree["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {tree}"))["mode"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(mode_of("usr/bin/tool"), 0o755, "setuid dropped, umask 022");
    assert_eq!(mode_of("etc/test/secret"), 0o440, "statoverride =288");
    assert_eq!(mode_of("etc/test/test.txt"), 0o644);
    assert!(
        !tree["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "statoverride"),
        "statoverride itself is not part of the layer"
    );

    // Change one overlay file: only that layer reruns.
    fs_err::write(layer.join("etc/test/test.txt"), "changed\n").unwrap();
    let out = nosa(
        &w,
        &[
            "graph",
            "build",
            "overlay:05core",
            "overlay:15nestos",
            "--json",
        ],
    );
    let s = summary(&out);
    assert_eq!(s["overlay:15nestos"], "ran");
    assert_eq!(s["overlay:05core"], "cached");
    let why = nosa(&w, &["graph", "why", "overlay:15nestos", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    assert_eq!(v["root_causes"][0]["kind"], "input-changed");
    assert_eq!(
        v["root_causes"][0]["name"],
        "src/config/overlay.d/15nestos/etc/test/test.txt"
    );
}
