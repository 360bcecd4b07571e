//! The `repo-sync` rule through the real engine: sync over http:// (a server started here) and
//! file://, every compression, caching and early cutoff, pins, mirror fallback, and corrupt
//! metadata that must never enter the store.

mod common;

use std::sync::Arc;

use common::{
    Server, Work, blake3_of, error, fixture_rpm_count, flip_byte, metadata_file, source, status,
    tiny_repo,
};
use nosa_cache::{Digest, EntryKind};
use nosa_engine::{GraphBuilder, Params, Rule, RunContext, RunError, Status};
use nosa_repo::{
    ChecksumKind, RepoJson, RepoSource, RepoSyncRule, SyncedRepo, parse_primary, probe_repomd,
};
use nosa_testkit::{copy_dir, fixture_repo};

/// A dependent that counts the files of its dependency's output.
struct Count;

impl Rule for Count {
    fn kind(&self) -> &str {
        "count"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let n: usize = ctx
            .deps
            .iter()
            .map(|d| ctx.dep_tree(d).map(|t| t.entries.len()))
            .sum::<Result<_, _>>()?;
        fs_err::write(ctx.out.join("count"), n.to_string())?;
        Ok(())
    }
}

/// A graph of one sync and a dependent `count` node.
fn graph(src: RepoSource, pin: Option<Digest>) -> (nosa_engine::Graph, String) {
    let rule = RepoSyncRule::new(src, pin);
    let id = rule.id();
    let mut b = GraphBuilder::new();
    b.add(id.clone(), Arc::new(rule), vec![]);
    b.add("count", Arc::new(Count), vec![id.clone()]);
    (b.build().unwrap(), id)
}

fn check_output_matches(w: &Work, id: &str, repo: &std::path::Path) -> SyncedRepo {
    let tree = w.tree(id);
    assert_eq!(
        w.file(&tree, "repomd.xml"),
        fs_err::read(repo.join("repodata/repomd.xml")).unwrap()
    );
    for kind in ["primary", "filelists", "other"] {
        let f = metadata_file(repo, kind);
        let rel = f.strip_prefix(repo).unwrap().to_str().unwrap();
        assert_eq!(w.file(&tree, rel), fs_err::read(&f).unwrap(), "{rel}");
    }
    let files: Vec<&str> = tree
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(files.len(), 5, "{files:?}");
    SyncedRepo::from_tree(w.engine.store(), &tree).unwrap()
}

#[test]
fn sync_over_http_then_cached() {
    let repo = fixture_repo();
    let server = Server::start(&repo);
    let w = Work::new();
    let (g, id) = graph(source("fixture", vec![server.base.clone()]), None);
    let r = w.build(&g, 2);
    assert!(r.ok(), "{:?}", r.nodes);
    assert_eq!(status(&r, &id), Status::Ran);
    let synced = check_output_matches(&w, &id, &repo);
    let json: RepoJson = synced.repo.clone();
    assert_eq!(json.id, "fixture");
    assert_eq!(json.baseurl, [server.base.as_str()]);
    assert_eq!((json.priority, json.cost), (99, 1000));
    let pkgs = synced.packages().unwrap();
    assert_eq!(pkgs.len(), fixture_rpm_count());
    let busybox = pkgs.iter().find(|p| p.name == "busybox").unwrap();
    assert_eq!(busybox.nevra(), "busybox-1.35.0-4.deb12u1.b1.x86_64");
    assert_eq!(
        busybox.size,
        fs_err::metadata(repo.join(&busybox.href)).unwrap().len(),
        "primary's size is the file's"
    );
    assert_eq!(busybox.checksum.kind, ChecksumKind::Sha256);

    let before = server.count("repomd.xml");
    let r = w.build(&g, 2);
    assert_eq!(status(&r, &id), Status::Cached);
    assert_eq!(status(&r, "count"), Status::Cached);
    assert_eq!(server.count("repomd.xml"), before, "a cached sync fetched");
}

#[test]
fn sync_over_file_url_and_plain_path() {
    let repo = fixture_repo();
    for base in [
        format!("file://{}", repo.display()),
        repo.display().to_string(),
    ] {
        let w = Work::new();
        let (g, id) = graph(source("fixture", vec![base.clone()]), None);
        let r = w.build(&g, 1);
        assert!(r.ok(), "{base}: {:?}", r.nodes);
        check_output_matches(&w, &id, &repo);
        // parse_primary on the materialized output.
        let out = w.dir.path().join("out");
        w.engine
            .store()
            .materialize(&w.tree(&id), &out, nosa_cache::Materialize::Copy)
            .unwrap();
        assert_eq!(parse_primary(&out).unwrap().len(), fixture_rpm_count());
    }
}

#[test]
fn every_compression_createrepo_c_writes() {
    let tmp = tempfile::tempdir().unwrap();
    for c in ["gz", "xz", "zst"] {
        let repo = tiny_repo(tmp.path(), c);
        let w = Work::new();
        let (g, id) = graph(source("tiny", vec![repo.display().to_string()]), None);
        let r = w.build(&g, 1);
        assert!(r.ok(), "{c}: {:?}", r.nodes);
        let synced = check_output_matches(&w, &id, &repo);
        let mut names: Vec<String> = synced
            .packages()
            .unwrap()
            .iter()
            .map(|p| p.nevra())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "fixture-foo-1.0-1.nosa1.x86_64",
                "fixture-lib-1.1-1.nosa1.x86_64"
            ]
        );
    }
}

#[test]
fn param_change_reruns_and_unchanged_output_cuts_off() {
    let repo = fixture_repo();
    let server = Server::start(&repo);
    let w = Work::new();
    let base = source("fixture", vec![server.base.clone()]);
    let (g, id) = graph(base.clone(), None);
    assert!(w.build(&g, 2).ok());
    let first = w.good(&id).unwrap();

    // Pinning the same repository: the key changes, the output does not.
    let pin = probe_repomd(&base).unwrap();
    assert_eq!(pin, blake3_of(&repo.join("repodata/repomd.xml")));
    let (g, _) = graph(base.clone(), Some(pin));
    let r = w.build(&g, 2);
    assert_eq!(status(&r, &id), Status::Ran);
    assert_eq!(status(&r, "count"), Status::Cutoff);
    let pinned = w.good(&id).unwrap();
    assert_ne!(pinned.key, first.key);
    assert_eq!(pinned.output, first.output);

    // A mirrorlist behind a working baseurl is not used: same output, cut off.
    let mut with_mirrorlist = base.clone();
    with_mirrorlist.mirrorlist = Some(server.url("no-such-mirrorlist"));
    let (g, _) = graph(with_mirrorlist, Some(pin));
    let r = w.build(&g, 2);
    assert_eq!(status(&r, &id), Status::Ran);
    assert_eq!(status(&r, "count"), Status::Cutoff);

    // `cost` is recorded in repo.json (the resolver uses it between identical packages of two
    // repos), so it is output, not noise: the dependent reruns.
    let mut cheaper = base.clone();
    cheaper.cost = 10;
    let (g, _) = graph(cheaper, Some(pin));
    let r = w.build(&g, 2);
    assert_eq!(status(&r, &id), Status::Ran);
    assert_eq!(status(&r, "count"), Status::Ran);
    assert_ne!(w.good(&id).unwrap().output, first.output);
}

#[test]
fn pin_mismatch_fails_with_a_hint() {
    let repo = fixture_repo();
    let w = Work::new();
    let (g, id) = graph(
        source("fixture", vec![repo.display().to_string()]),
        Some(Digest::of(b"an older repomd.xml")),
    );
    let r = w.build(&g, 1);
    assert_eq!(status(&r, &id), Status::Failed);
    let e = error(&r, &id);
    assert!(
        e.contains("repo fixture changed since it was pinned by `nosa fetch`")
            && e.contains("run `nosa fetch`"),
        "{e}"
    );
    assert!(!w.has_record(&id));
}

#[test]
fn falls_back_to_the_next_mirror() {
    let repo = fixture_repo();
    let server = Server::start(&repo);
    let tmp = tempfile::tempdir().unwrap();
    // Mirror 1 is down; mirror 2 has a corrupt primary; mirror 3 is good.
    let corrupt = tmp.path().join("corrupt");
    copy_dir(&repo.join("repodata"), &corrupt.join("repodata"));
    flip_byte(&metadata_file(&corrupt, "primary"));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let bases = vec![dead, corrupt.display().to_string(), server.base.clone()];
    let w = Work::new();
    let (g, id) = graph(source("fixture", bases.clone()), None);
    let r = w.build(&g, 1);
    assert!(r.ok(), "{:?}", r.nodes);
    let synced = check_output_matches(&w, &id, &repo);
    // repomd.xml came from the corrupt copy (it is intact there), so it is listed first.
    assert_eq!(
        synced.repo.baseurl,
        [bases[1].as_str(), &bases[0], &bases[2]]
    );
}

#[test]
fn no_working_mirror_names_every_attempt() {
    let w = Work::new();
    let (g, id) = graph(source("gone", vec!["/nonexistent/repo".into()]), None);
    let r = w.build(&g, 1);
    let e = error(&r, &id);
    assert!(
        e.contains("repo gone: no base URL served a usable repodata/repomd.xml")
            && e.contains("/nonexistent/repo/repodata/repomd.xml")
            && e.contains("hint:"),
        "{e}"
    );
}

#[test]
fn mirrorlist_and_metalink_give_base_urls() {
    let repo = fixture_repo();
    let server = Server::start(&repo);
    let lists = tempfile::tempdir().unwrap();
    fs_err::write(
        lists.path().join("mirrorlist"),
        format!("# mirrors\n/nonexistent/mirror\n{}/\n", server.base),
    )
    .unwrap();
    fs_err::write(
        lists.path().join("metalink.xml"),
        format!(
            r#"<?xml version="1.0"?><metalink xmlns="http://www.metalinker.org/"><files><file name="repomd.xml"><resources maxconnections="1"><url protocol="http" type="http" location="XX" preference="100">{}/repodata/repomd.xml</url></resources></file></files></metalink>"#,
            server.base
        ),
    )
    .unwrap();
    let lists_server = Server::start(lists.path());
    for (mirrorlist, metalink) in [
        (Some(lists_server.url("mirrorlist")), None),
        (None, Some(lists_server.url("metalink.xml"))),
    ] {
        let mut src = source("fixture", vec![]);
        src.mirrorlist = mirrorlist;
        src.metalink = metalink;
        let w = Work::new();
        let (g, id) = graph(src, None);
        let r = w.build(&g, 1);
        assert!(r.ok(), "{:?}", r.nodes);
        let synced = check_output_matches(&w, &id, &repo);
        assert!(
            synced.repo.baseurl[0].starts_with(&server.base),
            "{:?}",
            synced.repo.baseurl
        );
    }
}
