//! The `rpm` rule through the real engine: every package of the fixture repository downloaded
//! over HTTP with two workers, byte-identical to the repository's; a second build is all cached
//! and fetches nothing; URLs are not part of the key.

mod common;

use std::sync::Arc;

use common::{Server, Work, fixture_rpm_count, status};
use nosa_engine::{GraphBuilder, Status};
use nosa_repo::{RepoSyncRule, RpmDownloadRule, SyncedRepo};
use nosa_testkit::fixture_repo;

#[test]
fn every_package_in_parallel_then_all_cached() {
    let repo = fixture_repo();
    let server = Server::start(&repo);
    let w = Work::new();

    // Sync first, then map the packages to download nodes as the lead's rules layer will.
    let sync = RepoSyncRule::new(common::source("fixture", vec![server.base.clone()]), None);
    let sync_id = sync.id();
    let mut b = GraphBuilder::new();
    b.add(sync_id.clone(), Arc::new(sync.clone()), vec![]);
    assert!(w.build(&b.build().unwrap(), 2).ok());
    let synced = SyncedRepo::from_tree(w.engine.store(), &w.tree(&sync_id)).unwrap();
    let pkgs = synced.packages().unwrap();
    assert_eq!(pkgs.len(), fixture_rpm_count());

    let graph = |baseurls: &[String]| {
        let mut b = GraphBuilder::new();
        b.add(sync_id.clone(), Arc::new(sync.clone()), vec![]);
        for p in &pkgs {
            b.add(
                RpmDownloadRule::node_id("x86_64", &p.nevra()),
                Arc::new(RpmDownloadRule::for_package(p, baseurls)),
                vec![],
            );
        }
        b.build().unwrap()
    };
    let g = graph(&synced.repo.baseurl);
    let r = w.build(&g, 2);
    assert!(r.ok(), "{:?}", r.nodes);
    assert_eq!(r.count(Status::Ran), fixture_rpm_count());
    assert_eq!(server.count("/Packages/"), fixture_rpm_count());
    for p in &pkgs {
        let id = RpmDownloadRule::node_id("x86_64", &p.nevra());
        let tree = w.tree(&id);
        assert_eq!(tree.entries.len(), 1);
        assert_eq!(tree.entries[0].path, format!("{}.rpm", p.nevra()));
        assert_eq!(
            w.file(&tree, &format!("{}.rpm", p.nevra())),
            fs_err::read(repo.join(&p.href)).unwrap(),
            "{}",
            p.nevra()
        );
    }

    let r = w.build(&g, 2);
    assert_eq!(
        r.count(Status::Cached),
        fixture_rpm_count() + 1,
        "{:?}",
        r.nodes
    );
    assert_eq!(
        server.count("/Packages/"),
        fixture_rpm_count(),
        "a cached package was fetched again"
    );

    // Another mirror (file://) for the same packages: same keys, nothing runs or downloads.
    let g = graph(&[format!("file://{}", repo.display())]);
    let r = w.build(&g, 2);
    let id = RpmDownloadRule::node_id("x86_64", &pkgs[0].nevra());
    assert_eq!(status(&r, &id), Status::Cached);
    assert_eq!(r.count(Status::Ran), 0);
}
