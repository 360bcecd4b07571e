//! Signatures through the real engine, with keys made by gpg, packages signed by rpmsign and
//! repomd.xml signed by `gpg --detach-sign`: a package signed by the repository's key (its
//! keys as files or over HTTP) is stored; one signed by another key, or not signed, fails its node naming the package, the
//! key id and the repository, and nothing is stored; a key that is not a key, or is not there,
//! fails the keys node; `repomd.xml.asc` is checked when `repo_gpgcheck` asks for it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{Work, error};
use nosa_engine::{Graph, GraphBuilder, Status};
use nosa_repo::{RepoKeysRule, RepoSource, RepoSyncRule, RpmDownloadRule, SyncedRepo};
use nosa_testkit::fixture_repo;

/// Runs `cmd`, which must succeed; its stdout.
fn ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A gpg home with two signing keys, `a@nosa.invalid` and `b@nosa.invalid`.
struct Gpg {
    dir: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        nosa_testkit::need("gpg", "gpg");
        nosa_testkit::need("rpmsign", "rpm");
        nosa_testkit::need("sqv", "sqv");
        let dir = tempfile::tempdir().unwrap();
        let g = Gpg { dir };
        fs_err::create_dir_all(g.home()).unwrap();
        for who in ["a", "b"] {
            g.run(&[
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                &format!("Signer {who} <{who}@nosa.invalid>"),
                "ed25519",
                "sign",
                "never",
            ]);
            let key = g.run(&["--armor", "--export", &format!("{who}@nosa.invalid")]);
            fs_err::write(g.dir.path().join(format!("{who}.asc")), key).unwrap();
        }
        g
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        ok(Command::new("gpg")
            .arg("--homedir")
            .arg(self.home())
            .args(args))
    }

    /// The public key file of `who`.
    fn key(&self, who: &str) -> PathBuf {
        self.dir.path().join(format!("{who}.asc"))
    }

    /// The short key id rpm prints for `who` (the last 8 hex digits of the long id).
    fn short_id(&self, who: &str) -> String {
        let listing = self.run(&[
            "--with-colons",
            "--list-keys",
            &format!("{who}@nosa.invalid"),
        ]);
        let listing = String::from_utf8(listing).unwrap();
        let long = listing
            .lines()
            .find(|l| l.starts_with("pub:"))
            .and_then(|l| l.split(':').nth(4))
            .unwrap();
        long[8..].to_lowercase()
    }

    fn sign_rpm(&self, who: &str, rpm: &Path) {
        // --resign: the fixture's own signature goes.
        ok(Command::new("rpmsign")
            .arg("--resign")
            .args(["--define", "__gpg /usr/bin/gpg"])
            .args(["--define", &format!("_gpg_name {who}@nosa.invalid")])
            .arg("--define")
            .arg(format!("_gpg_path {}", self.home().display()))
            .arg(rpm));
    }

    /// `repomd.xml.asc` of `repo`, by `who`.
    fn sign_repomd(&self, who: &str, repo: &Path) {
        let md = repo.join("repodata/repomd.xml");
        let asc = repo.join("repodata/repomd.xml.asc");
        self.run(&[
            "--batch",
            "--armor",
            "--detach-sign",
            "-u",
            &format!("{who}@nosa.invalid"),
            "-o",
            asc.to_str().unwrap(),
            md.to_str().unwrap(),
        ]);
    }
}

/// Removes the fixture's signature from `rpm`.
fn unsign(rpm: &Path) {
    ok(Command::new("rpmsign").arg("--delsign").arg(rpm));
}

/// Two fixture packages in a repository under `dir/name`, signed by `signer` (or not), with
/// createrepo_c's metadata made after the signing.
fn repo(gpg: &Gpg, dir: &Path, name: &str, signer: Option<&str>) -> PathBuf {
    let fixture = fixture_repo();
    let repo = dir.join(name);
    fs_err::create_dir_all(repo.join("Packages")).unwrap();
    for p in [
        "fixture-foo-1.0-1.nosa1.x86_64.rpm",
        "fixture-lib-1.1-1.nosa1.x86_64.rpm",
    ] {
        let to = repo.join("Packages").join(p);
        fs_err::copy(fixture.join("Packages").join(p), &to).unwrap();
        match signer {
            Some(who) => gpg.sign_rpm(who, &to),
            None => unsign(&to),
        }
    }
    ok(Command::new("createrepo_c")
        .args(["-q", "--revision", "1"])
        .arg(&repo));
    repo
}

fn source(repo: &Path) -> RepoSource {
    common::source("signed", vec![format!("file://{}", repo.display())])
}

fn keys_rule(keys: &[PathBuf]) -> RepoKeysRule {
    let urls: Vec<String> = keys
        .iter()
        .map(|k| format!("file://{}", k.display()))
        .collect();
    RepoKeysRule::new("signed", "x86_64", urls.clone(), urls, None)
}

const KEYS: &str = "repo-keys:x86_64:signed";

/// The sync, the keys and one checked download per package of `repo`.
fn graph(w: &Work, repo: &Path, keys: RepoKeysRule) -> (Graph, Vec<String>) {
    let sync = RepoSyncRule::new(source(repo), None);
    let sync_id = sync.id();
    let mut b = GraphBuilder::new();
    b.add(sync_id.clone(), Arc::new(sync.clone()), vec![]);
    assert!(w.build(&b.build().unwrap(), 2).ok());
    let synced = SyncedRepo::from_tree(w.engine.store(), &w.tree(&sync_id)).unwrap();
    let mut b = GraphBuilder::new();
    b.add(sync_id, Arc::new(sync), vec![]);
    b.add(KEYS.to_string(), Arc::new(keys), vec![]);
    let mut ids = vec![];
    for p in synced.packages().unwrap() {
        let id = RpmDownloadRule::node_id("x86_64", &p.nevra());
        let rule = RpmDownloadRule::for_package(&p, &synced.repo.baseurl).with_gpgcheck("signed");
        b.add(id.clone(), Arc::new(rule), vec![KEYS.to_string()]);
        ids.push(id);
    }
    (b.build().unwrap(), ids)
}

#[test]
fn packages_signed_by_the_repos_key_pass_and_others_fail_naming_package_key_and_repo() {
    let gpg = Gpg::new();
    let t = tempfile::tempdir().unwrap();

    let good = repo(&gpg, t.path(), "good", Some("a"));
    let w = Work::new();
    let (g, ids) = graph(&w, &good, keys_rule(&[gpg.key("a")]));
    let r = w.build(&g, 2);
    assert!(r.ok(), "{:?}", r.nodes);
    assert_eq!(r.count(Status::Ran), ids.len() + 1);
    // Two keys, the signer's second: any of the repository's keys will do.
    let w = Work::new();
    let (g, _) = graph(&w, &good, keys_rule(&[gpg.key("b"), gpg.key("a")]));
    assert!(w.build(&g, 2).ok());
    // The keys over HTTP.
    let server = common::Server::start(gpg.dir.path());
    let urls = vec![server.url("b.asc"), server.url("a.asc")];
    let w = Work::new();
    let keys = RepoKeysRule::new("signed", "x86_64", urls.clone(), urls, None);
    let (g, _) = graph(&w, &good, keys);
    let r = w.build(&g, 2);
    assert!(r.ok(), "{:?}", r.nodes);
    assert_eq!(server.count("a.asc"), 1, "fetched once, by the keys node");

    let other = repo(&gpg, t.path(), "other", Some("b"));
    let w = Work::new();
    let (g, ids) = graph(&w, &other, keys_rule(&[gpg.key("a")]));
    let r = w.build(&g, 2);
    assert!(!r.ok());
    for id in &ids {
        let e = error(&r, id);
        let nevra = id.trim_start_matches("rpm:x86_64:");
        assert!(
            e.contains(&format!(
                "package {nevra} from repo signed: signature check failed"
            )) && e.contains(&format!(
                "signed with key ID {}, which is not among the repository's keys ({})",
                gpg.short_id("b"),
                gpg.short_id("a")
            )),
            "{e}"
        );
        assert!(!w.has_record(id), "{id}: nothing is stored");
    }

    let unsigned = repo(&gpg, t.path(), "unsigned", None);
    let w = Work::new();
    let (g, ids) = graph(&w, &unsigned, keys_rule(&[gpg.key("a")]));
    let r = w.build(&g, 2);
    for id in &ids {
        let e = error(&r, id);
        assert!(
            e.contains("signature check failed: it is not signed"),
            "{e}"
        );
        assert!(!w.has_record(id));
    }
}

#[test]
fn a_key_that_is_not_a_key_or_not_there_or_not_named_fails_the_keys_node() {
    let gpg = Gpg::new();
    let t = tempfile::tempdir().unwrap();
    let good = repo(&gpg, t.path(), "good", Some("a"));
    let garbage = t.path().join("garbage.asc");
    fs_err::write(
        &garbage,
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot a key\n",
    )
    .unwrap();
    let missing = t.path().join("missing.asc");
    for (keys, want) in [
        (
            vec![garbage.clone()],
            format!("gpgkey file://{}: unreadable key", garbage.display()),
        ),
        (
            vec![missing.clone()],
            format!("gpgkey file://{}: unreadable key", missing.display()),
        ),
        (vec![], "names no key: add gpgkey=".to_string()),
    ] {
        let w = Work::new();
        let (g, ids) = graph(&w, &good, keys_rule(&keys));
        let r = w.build(&g, 2);
        let e = error(&r, KEYS);
        assert!(e.contains(&want), "{e}");
        for id in &ids {
            assert_eq!(common::status(&r, id), Status::Skipped, "{id}");
        }
    }
}

#[test]
fn repomd_xml_asc_is_checked_when_repo_gpgcheck_asks() {
    let gpg = Gpg::new();
    let t = tempfile::tempdir().unwrap();
    let signed = repo(&gpg, t.path(), "signed", Some("a"));
    gpg.sign_repomd("a", &signed);
    let sync_with = |repo: &Path, key: &str| {
        let w = Work::new();
        let mut b = GraphBuilder::new();
        b.add(
            KEYS.to_string(),
            Arc::new(keys_rule(&[gpg.key(key)])),
            vec![],
        );
        let sync = RepoSyncRule::new(source(repo), None).with_repo_gpgcheck();
        b.add(sync.id(), Arc::new(sync.clone()), vec![KEYS.to_string()]);
        let r = w.build(&b.build().unwrap(), 2);
        (r, sync.id())
    };
    let (r, _) = sync_with(&signed, "a");
    assert!(r.ok(), "{:?}", r.nodes);

    let (r, id) = sync_with(&signed, "b");
    let e = error(&r, &id);
    assert!(
        e.contains("repo signed: repomd.xml's signature (repomd.xml.asc) does not verify"),
        "{e}"
    );

    let bare = repo(&gpg, t.path(), "bare", Some("a"));
    let (r, id) = sync_with(&bare, "a");
    let e = error(&r, &id);
    assert!(
        e.contains("repo signed sets repo_gpgcheck=1, but its repomd.xml.asc is missing"),
        "{e}"
    );
}
