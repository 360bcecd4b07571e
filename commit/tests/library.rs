//! `commit_tree` against real libostree, checked with the `ostree` CLI: fsck, ls (modes,
//! owners, files), show (metadata), reproducibility and the content checksum.

use std::collections::BTreeMap;

use nosa_commit::{
    CommitRequest, Listing, MetaValue, ObjectMemo, RepoMode, caps_from_text, commit_listing,
    commit_tree,
};
use nosa_testkit::{ostree, ostree_ls as ls, sample_os_tree as make_tree};

fn request(repo: &std::path::Path, rootfs: &std::path::Path, mode: RepoMode) -> CommitRequest {
    let mut metadata = BTreeMap::new();
    metadata.insert("version".to_string(), MetaValue::Str("42.1".into()));
    metadata.insert(
        "rpmostree.rpmdb.pkglist".to_string(),
        MetaValue::StrList(vec!["a".into(), "b".into()]),
    );
    metadata.insert("ostree.bootable".to_string(), MetaValue::Bool(true));
    CommitRequest {
        repo: repo.to_path_buf(),
        mode,
        rootfs: rootfs.to_path_buf(),
        owners: [("/usr/lib/chrony/state".to_string(), (995, 993))].into(),
        xattrs: [(
            "/usr/sbin/ping".to_string(),
            vec![(
                "security.capability".to_string(),
                caps_from_text("cap_net_raw=ep").unwrap().unwrap(),
            )],
        )]
        .into(),
        ref_name: "nestos/x86_64/test".into(),
        metadata,
        timestamp: 1_700_000_000,
        ..Default::default()
    }
}

#[test]
fn commit_passes_fsck_and_keeps_modes_owners_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let repo = tmp.path().join("repo");
    let r = commit_tree(&request(&repo, &root, RepoMode::Archive)).unwrap();
    assert_eq!(r.checksum.len(), 64);
    assert!(r.unmatched.is_empty(), "{:?}", r.unmatched);

    ostree(&repo, &["fsck"]);
    assert_eq!(
        ostree(&repo, &["rev-parse", "nestos/x86_64/test"]).trim(),
        r.checksum
    );
    let entries = ls(&repo, "nestos/x86_64/test");
    let get = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} not in {entries:#?}"))
    };
    assert_eq!(get("/").mode, "d00755");
    assert_eq!(get("/usr/bin/tool").mode, "-00755");
    assert_eq!(get("/usr/bin/su").mode, "-04755", "setuid kept");
    assert_eq!(get("/usr/share/doc/readme").mode, "-00644");
    assert_eq!(get("/usr/share/a/b/c/d.txt").mode, "-00644");
    assert_eq!(get("/usr/etc/test/test.txt").mode, "-00644");
    assert_eq!(get("/usr/share/empty").mode, "d00755");
    let link = get("/usr/bin/tool-link");
    assert!(link.mode.starts_with('l'));
    assert_eq!(link.target.as_deref(), Some("tool"));
    let state = get("/usr/lib/chrony/state");
    assert_eq!(
        (state.uid, state.gid, state.mode.as_str()),
        (995, 993, "-00640")
    );
    for e in &entries {
        if e.path != "/usr/lib/chrony/state" {
            assert_eq!((e.uid, e.gid), (0, 0), "{} is root-owned", e.path);
        }
    }
    // The hardlink pair is one content object.
    let checksum_of = |p: &str| {
        ostree(&repo, &["ls", "-C", "nestos/x86_64/test", p])
            .split_whitespace()
            .nth(4)
            .unwrap()
            .to_string()
    };
    assert_eq!(checksum_of("/usr/lib/one"), checksum_of("/usr/lib/two"));
    assert_eq!(
        ostree(
            &repo,
            &["cat", "nestos/x86_64/test", "/usr/etc/test/test.txt"]
        ),
        "test\n"
    );
    // The capability, and no other xattr.
    let x = ostree(&repo, &["ls", "-X", "nestos/x86_64/test", "/usr/sbin/ping"]);
    assert!(x.contains("security.capability"), "{x}");
    let x = ostree(&repo, &["ls", "-X", "nestos/x86_64/test", "/usr/bin/tool"]);
    assert!(!x.contains("security."), "{x}");

    let show = ostree(&repo, &["show", "nestos/x86_64/test"]);
    assert!(show.contains("Version: 42.1"), "{show}");
    assert!(
        show.contains(&format!("ContentChecksum:  {}\n", r.content_checksum)),
        "{show}"
    );
    assert_eq!(
        ostree(
            &repo,
            &["show", "--print-metadata-key=version", "nestos/x86_64/test"]
        )
        .trim(),
        "'42.1'"
    );
    assert_eq!(
        ostree(
            &repo,
            &[
                "show",
                "--print-metadata-key=ostree.bootable",
                "nestos/x86_64/test"
            ]
        )
        .trim(),
        "true"
    );
    assert_eq!(
        nosa_commit::content_checksum(&repo, "nestos/x86_64/test").unwrap(),
        r.content_checksum
    );
}

#[test]
fn same_tree_gives_same_commit_in_any_repo_and_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    make_tree(&a);
    make_tree(&b); // a second copy: other inodes, other mtimes
    let r1 = commit_tree(&request(&tmp.path().join("r1"), &a, RepoMode::Archive)).unwrap();
    let r2 = commit_tree(&request(&tmp.path().join("r2"), &b, RepoMode::Archive)).unwrap();
    let r3 = commit_tree(&request(&tmp.path().join("r3"), &a, RepoMode::BareUser)).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(r1, r3);
    ostree(&tmp.path().join("r3"), &["fsck"]);
}

#[test]
fn timestamp_changes_the_commit_not_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let repo = tmp.path().join("repo");
    let mut req = request(&repo, &root, RepoMode::Archive);
    let r1 = commit_tree(&req).unwrap();
    req.timestamp += 1;
    req.metadata
        .insert("version".into(), MetaValue::Str("42.2".into()));
    let r2 = commit_tree(&req).unwrap();
    assert_ne!(r1.checksum, r2.checksum);
    assert_eq!(r1.content_checksum, r2.content_checksum);
    // A content change changes the content checksum.
    fs_err::write(root.join("usr/etc/test/test.txt"), "changed\n").unwrap();
    let r3 = commit_tree(&req).unwrap();
    assert_ne!(r3.content_checksum, r2.content_checksum);
    // So does an owner change.
    req.owners.clear();
    let r4 = commit_tree(&req).unwrap();
    assert_ne!(r4.content_checksum, r3.content_checksum);
    ostree(&repo, &["fsck"]);
}

#[test]
fn unknown_paths_are_reported_and_bad_input_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    let mut req = request(&tmp.path().join("repo"), &root, RepoMode::Archive);
    req.owners.insert("/no/such/file".into(), (1, 1));
    let r = commit_tree(&req).unwrap();
    assert_eq!(r.unmatched, vec!["/no/such/file".to_string()]);

    req.ref_name = "bad ref..".into();
    assert!(commit_tree(&req).is_err());
    let mut req = request(&tmp.path().join("repo"), &root, RepoMode::BareUser);
    let err = commit_tree(&req).unwrap_err().to_string();
    assert!(err.contains("mode"), "{err}");
    req.rootfs = tmp.path().join("missing");
    assert!(commit_tree(&req).is_err());
}

/// The store listing of the tree at `root`, paths relative to it, and the root's mode.
fn listed(store: &nosa_cache::Store, root: &std::path::Path) -> (nosa_cache::Tree, u32) {
    use std::os::unix::fs::PermissionsExt;
    let (_, tree) = store.ingest_dir(root, false).unwrap();
    let mode = fs_err::metadata(root).unwrap().permissions().mode() & 0o7777;
    (tree, mode)
}

#[test]
fn a_listing_commits_as_its_checkout_does_and_names_unchanged_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let store = nosa_cache::Store::open(tmp.path().join("store")).unwrap();
    let root = tmp.path().join("root");
    make_tree(&root);
    // A file with no owner entry but an odd mode, a dangling link, an empty file.
    fs_err::write(root.join("usr/share/empty-file"), "").unwrap();
    std::os::unix::fs::symlink("/nowhere", root.join("usr/share/dangling")).unwrap();
    for mode in [RepoMode::Archive, RepoMode::BareUser] {
        let dir = tmp.path().join(mode.name());
        let want = commit_tree(&request(&dir.join("from-dir"), &root, mode)).unwrap();
        let (tree, root_mode) = listed(&store, &root);
        let none = ObjectMemo::default();
        let listing = Listing {
            store: &store,
            root_mode,
            entries: &tree.entries,
            known: &none,
        };
        let repo = dir.join("from-listing");
        let first = commit_listing(&request(&repo, &root, mode), &listing).unwrap();
        assert_eq!(
            first.result, want,
            "{mode:?}: the listing's commit is the checkout's"
        );
        assert!(first.written > 0 && first.written == first.memo.len());
        ostree(&repo, &["fsck"]);

        // One file changed: only its object is written, the rest are named from the memo;
        // the commit equals the checkout's again.
        fs_err::write(root.join("usr/etc/test/test.txt"), format!("{mode:?}\n")).unwrap();
        let want = commit_tree(&request(&dir.join("from-dir"), &root, mode)).unwrap();
        let (tree, root_mode) = listed(&store, &root);
        let listing = Listing {
            store: &store,
            root_mode,
            entries: &tree.entries,
            known: &first.memo,
        };
        let second = commit_listing(&request(&repo, &root, mode), &listing).unwrap();
        assert_eq!(second.result, want, "{mode:?}: incremental listing commit");
        assert_eq!(
            second.written, 1,
            "{mode:?}: only the changed file is written"
        );
        ostree(&repo, &["fsck"]);
        assert_eq!(
            ostree(
                &repo,
                &["cat", "nestos/x86_64/test", "/usr/etc/test/test.txt"]
            ),
            format!("{mode:?}\n")
        );

        // The memo survives its text form; a damaged one reads as nothing.
        let bytes = second.memo.encode();
        assert_eq!(ObjectMemo::decode(&bytes).as_ref(), Some(&second.memo));
        assert_eq!(ObjectMemo::decode(&bytes[..bytes.len() - 3]), None);
        assert_eq!(ObjectMemo::decode(b"something else\n"), None);
    }
}
