//! Corrupt input never enters the store: a flipped byte, a truncated file, a file that does not
//! decompress, a wrong open-checksum, and a corrupt package each fail the node with an error
//! naming the file, the URL and the expected and actual values, and leave no action record; a
//! baseurl at a local directory that is no repository is refused the same way.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use common::{Server, Work, error, flip_byte, metadata_file, status, tiny_repo};
use nosa_engine::{GraphBuilder, Status};
use nosa_repo::{Checksum, ChecksumKind, RepoSyncRule, RpmDownloadRule, parse_primary};
use nosa_testkit::{copy_dir, fixture_repo};

fn sync_graph(base: String) -> (nosa_engine::Graph, String) {
    let rule = RepoSyncRule::new(common::source("tiny", vec![base]), None);
    let id = rule.id();
    let mut b = GraphBuilder::new();
    b.add(id.clone(), Arc::new(rule), vec![]);
    (b.build().unwrap(), id)
}

/// Syncs `repo` over HTTP; the sync must fail with an error containing every `needle`, and
/// nothing of it may be in the store.
fn expect_failure(repo: &Path, needles: &[&str]) {
    let server = Server::start(repo);
    let w = Work::new();
    let (g, id) = sync_graph(server.base.clone());
    let r = w.build(&g, 1);
    assert_eq!(status(&r, &id), Status::Failed);
    let e = error(&r, &id);
    for n in needles {
        assert!(e.contains(n), "`{n}` not in:\n{e}");
    }
    assert!(e.contains(&server.base), "the URL is not named:\n{e}");
    assert!(e.contains("hint:"), "{e}");
    assert!(!w.has_record(&id), "a failed sync left an action record");
    assert!(w.good(&id).is_none(), "a failed sync has a good output");
    assert!(w.no_leftover_runs());
    // The next build does not trust anything of the failed one: it runs again.
    let r = w.build(&g, 1);
    assert_eq!(status(&r, &id), Status::Failed);
}

fn sha256(bytes: &[u8]) -> String {
    let mut h = ChecksumKind::Sha256.hasher();
    h.update(bytes);
    h.finish_hex()
}

/// Replaces the primary file with `bytes` and rewrites its `checksum` and `size` in repomd.xml
/// (leaving `open-checksum` and `open-size` as they were).
fn replace_primary(repo: &Path, bytes: &[u8]) {
    let f = metadata_file(repo, "primary");
    let old = fs_err::read(&f).unwrap();
    fs_err::write(&f, bytes).unwrap();
    let repomd = repo.join("repodata/repomd.xml");
    let text = fs_err::read_to_string(&repomd)
        .unwrap()
        .replace(
            &format!(">{}</checksum>", sha256(&old)),
            &format!(">{}</checksum>", sha256(bytes)),
        )
        .replace(
            &format!("<size>{}</size>", old.len()),
            &format!("<size>{}</size>", bytes.len()),
        );
    fs_err::write(&repomd, text).unwrap();
}

#[test]
fn flipped_byte_in_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(tmp.path(), "gz");
    let f = metadata_file(&repo, "primary");
    let href = f.strip_prefix(&repo).unwrap().to_str().unwrap().to_string();
    let expected = sha256(&fs_err::read(&f).unwrap());
    flip_byte(&f);
    let actual = sha256(&fs_err::read(&f).unwrap());
    expect_failure(
        &repo,
        &[
            "repo tiny",
            &href,
            "is corrupt",
            &format!("expected checksum sha256:{expected}"),
            &format!("got sha256:{actual}"),
        ],
    );
}

#[test]
fn truncated_filelists() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(tmp.path(), "xz");
    let f = metadata_file(&repo, "filelists");
    let b = fs_err::read(&f).unwrap();
    fs_err::write(&f, &b[..b.len() / 2]).unwrap();
    expect_failure(
        &repo,
        &["is truncated", &format!("expected size {} bytes", b.len())],
    );
}

#[test]
fn primary_that_does_not_decompress() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(tmp.path(), "zst");
    replace_primary(&repo, b"this is not zstd at all");
    expect_failure(&repo, &["does not decompress"]);
}

#[test]
fn primary_whose_content_is_not_the_open_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tiny_repo(tmp.path(), "gz");
    // A valid gzip of content of the same length with one letter changed; the compressed
    // checksum and size in repomd.xml match it, the open-checksum does not.
    let mut xml = Vec::new();
    flate2::read::GzDecoder::new(fs_err::File::open(metadata_file(&repo, "primary")).unwrap())
        .read_to_end(&mut xml)
        .unwrap();
    let expected = sha256(&xml);
    let i = xml.windows(11).position(|w| w == b"fixture-foo").unwrap();
    xml[i] = b'F';
    let actual = sha256(&xml);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&xml).unwrap();
    replace_primary(&repo, &gz.finish().unwrap());
    expect_failure(
        &repo,
        &[
            "is corrupt",
            &format!("expected open-checksum sha256:{expected}"),
            &format!("got sha256:{actual}"),
        ],
    );
}

#[test]
fn corrupt_package_never_enters_the_store() {
    let fixture = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    copy_dir(&fixture, &mirror);
    let pkgs = parse_primary_of(&fixture);
    let pkg = pkgs.iter().find(|p| p.name == "fixture-foo").unwrap();
    flip_byte(&mirror.join(&pkg.href));
    let server = Server::start(&mirror);

    let w = Work::new();
    let rule = RpmDownloadRule::for_package(pkg, std::slice::from_ref(&server.base));
    let id = RpmDownloadRule::node_id("x86_64", &pkg.nevra());
    let mut b = GraphBuilder::new();
    b.add(id.clone(), Arc::new(rule), vec![]);
    let g = b.build().unwrap();
    let r = w.build(&g, 1);
    assert_eq!(status(&r, &id), Status::Failed);
    let e = error(&r, &id);
    let actual = sha256(&fs_err::read(mirror.join(&pkg.href)).unwrap());
    for n in [
        format!("package {}", pkg.nevra()),
        server.url(&pkg.href),
        format!("expected checksum {}", pkg.checksum),
        format!("got sha256:{actual}"),
        "hint:".to_string(),
    ] {
        assert!(e.contains(&n), "`{n}` not in:\n{e}");
    }
    assert!(!w.has_record(&id));
    assert!(w.no_leftover_runs());

    // A wrong size (the repository says more than the file has) is caught too.
    let wrong = RpmDownloadRule::new(
        pkg.nevra(),
        Checksum::parse("sha256", &pkg.checksum.hex).unwrap(),
        pkg.size + 1,
        vec![fixture.join(&pkg.href).display().to_string()],
    );
    let mut b = GraphBuilder::new();
    b.add(id.clone(), Arc::new(wrong), vec![]);
    let r = w.build(&b.build().unwrap(), 1);
    let e = error(&r, &id);
    assert!(
        e.contains(&format!("expected size {}", pkg.size + 1)),
        "{e}"
    );
    assert!(!w.has_record(&id));
}

fn parse_primary_of(repo: &Path) -> Vec<nosa_repo::Package> {
    // parse_primary reads a synced output; build one from the repository's own files.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    fs_err::copy(repo.join("repodata/repomd.xml"), out.join("repomd.xml")).unwrap();
    copy_dir(&repo.join("repodata"), &out.join("repodata"));
    fs_err::write(
        out.join("repo.json"),
        r#"{"id":"x","arch":"x86_64","baseurl":[],"priority":99,"cost":1000,"exclude":[],"includepkgs":[]}"#,
    )
    .unwrap();
    parse_primary(out).unwrap()
}

/// A `.repo` whose baseurl is a local directory that is no repository (`file:///etc`): the
/// sync finds no repomd.xml there and fails naming the URL; nothing of the host's directory
/// enters the store.
#[test]
fn a_baseurl_at_a_local_path_outside_any_repository_is_refused() {
    let (g, id) = sync_graph("file:///etc".into());
    let w = Work::new();
    let r = w.build(&g, 1);
    assert_eq!(status(&r, &id), Status::Failed);
    let e = error(&r, &id);
    assert!(e.contains("file:///etc/repodata/repomd.xml"), "{e}");
    assert!(!w.has_record(&id));
}
