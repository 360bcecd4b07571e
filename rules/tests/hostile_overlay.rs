//! overlay.d symlinks that point outside the tree, through the real engine: a link is kept as
//! a link (its target's content on the build host is never read into the tree), and an earlier
//! layer's file under a later layer's linked directory is refused by the rootfs union, which
//! works on tree listings and never writes through a link.

use std::sync::Arc;

use nosa_cache::{EntryKind, Store};
use nosa_engine::{BuildOptions, Engine, GraphBuilder, Quiet, Status};
use nosa_rules::overlay::OverlayRule;
use nosa_rules::rootfs::RootfsRule;

#[test]
fn links_out_of_the_tree_stay_links_and_nothing_goes_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    // A host directory with a secret, outside the workdir's layers.
    let host = tempfile::tempdir().unwrap();
    fs_err::write(host.path().join("secret"), "host secret\n").unwrap();
    let a = w.join("overlay.d/05a");
    let b = w.join("overlay.d/10b");
    // The first layer has a file where the second has a link out of the tree.
    fs_err::create_dir_all(a.join("etc/evil")).unwrap();
    fs_err::write(a.join("etc/evil/passwd"), "planted\n").unwrap();
    fs_err::create_dir_all(b.join("etc")).unwrap();
    std::os::unix::fs::symlink(host.path(), b.join("etc/evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc/shadow", b.join("etc/up")).unwrap();

    let store = Store::open(w.join("cache/store")).unwrap();
    let engine = Engine::new(w, store);
    let mut g = GraphBuilder::new();
    g.add(
        "overlay:05a".to_string(),
        Arc::new(OverlayRule::new("05a", "overlay.d/05a")),
        vec![],
    );
    g.add(
        "overlay:10b".to_string(),
        Arc::new(OverlayRule::new("10b", "overlay.d/10b")),
        vec![],
    );
    g.add(
        "rootfs:x86_64".to_string(),
        Arc::new(RootfsRule::new("x86_64", vec![], vec![])),
        vec!["overlay:05a".into(), "overlay:10b".into()],
    );
    let graph = g.build().unwrap();
    let all: Vec<usize> = (0..graph.len()).collect();
    let opts = BuildOptions {
        jobs: 2,
        ..Default::default()
    };
    let report = engine.build(&graph, &all, &opts, &mut Quiet).unwrap();
    let node = |id: &str| report.nodes.iter().find(|n| n.id == id).unwrap();
    assert_eq!(node("overlay:10b").status, Status::Ran);

    // The second layer: two links with their targets as written, no host content.
    let good = engine.state().nodes["overlay:10b"].good.unwrap();
    let tree = engine.store().get_tree(&good.tree).unwrap();
    let links: Vec<(&str, &str)> = tree
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Symlink { target } => Some((e.path.as_str(), target.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        links,
        [
            ("etc/evil", host.path().to_str().unwrap()),
            ("etc/up", "../../../../../../../../etc/shadow")
        ]
    );
    assert!(
        tree.entries
            .iter()
            .all(|e| !e.path.starts_with("etc/evil/")),
        "nothing read through the link: {tree:?}"
    );

    // The union refuses the first layer's file under the second layer's link.
    let rootfs = node("rootfs:x86_64");
    assert_eq!(rootfs.status, Status::Failed);
    let e = rootfs.error.as_deref().unwrap_or_default();
    assert!(
        e.contains("/etc/evil/passwd (from overlay:05a) lies under the symlink /etc/evil (from overlay:10b)"),
        "{e}"
    );
    assert!(
        !host.path().join("passwd").exists(),
        "nothing written through it"
    );
}
