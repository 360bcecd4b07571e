//! The rule in a real engine: a stub tree node, `ostree-commit:x86_64`, and a dependent that
//! reads `commit.json`. A timestamp-only change reruns the commit and cuts the dependent off; a
//! version change reaches it; two clean workdirs give bit-identical commit outputs. The
//! rpm-ostree finishing: mutate-os-release, `rpmostree.inputhash`, `rpmostree.rpmdb.pkglist`
//! and the parent commit, read back with Debian's `ostree` CLI. A rerun seeded with the previous
//! output's objects gives exactly a cold commit's output.

use std::path::Path;
use std::sync::Arc;

use nosa_cache::{EntryKind, Materialize, Store};
use nosa_commit::{CommitRecord, OstreeCommitRule};
use nosa_engine::{
    BuildOptions, BuildReport, Engine, Graph, GraphBuilder, Params, Rule, RunContext, RunError,
    Status,
};
use nosa_testkit::{ostree, ostree_ls as ls, sample_os_tree as make_tree};

/// Outputs `root/` (the test tree) and a `meta.json` with a named owner and a capability.
struct TreeStub;

impl Rule for TreeStub {
    fn kind(&self) -> &str {
        "tree-stub"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        make_tree(&ctx.out.join("root"));
        fs_err::write(
            ctx.out.join("meta.json"),
            r#"{"nevra":"x","owners":{"/usr/lib/chrony/state":"chrony:chrony"},
                "caps":{"/usr/sbin/ping":"cap_net_raw=ep"},"ghosts":[]}"#,
        )?;
        Ok(())
    }
}

/// Copies the dependency's `commit.json` version and content checksum.
struct Consumer;

impl Rule for Consumer {
    fn kind(&self) -> &str {
        "consumer"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let rec = record_of(ctx.store(), &ctx.dep_tree(&ctx.deps[0])?);
        fs_err::write(
            ctx.out.join("seen"),
            format!("{} {}", rec.version, rec.content_checksum),
        )?;
        Ok(())
    }
}

fn record_of(store: &Store, tree: &nosa_cache::Tree) -> CommitRecord {
    let e = tree
        .entries
        .iter()
        .find(|e| e.path == "commit.json")
        .expect("commit.json in the output");
    let EntryKind::File { digest, .. } = &e.kind else {
        panic!("commit.json is a file")
    };
    serde_json::from_slice(&fs_err::read(store.blob_path(digest)).unwrap()).unwrap()
}

fn graph(timestamp: u64, version: &str) -> Graph {
    let mut b = GraphBuilder::new();
    b.add("tree:x86_64", Arc::new(TreeStub), vec![]);
    let commit = OstreeCommitRule::new("x86_64", "nestos/x86_64/test", version)
        .metadata_json(r#"{"ostree.bootable":true}"#)
        .timestamp(timestamp);
    assert_eq!(commit.node_id(), "ostree-commit:x86_64");
    b.add(
        commit.node_id(),
        Arc::new(commit),
        vec!["tree:x86_64".into()],
    );
    b.add(
        "consumer",
        Arc::new(Consumer),
        vec!["ostree-commit:x86_64".into()],
    );
    b.build().unwrap()
}

fn build(engine: &Engine, g: &Graph) -> BuildReport {
    let all: Vec<usize> = (0..g.len()).collect();
    let opts = BuildOptions {
        jobs: 2,
        ..Default::default()
    };
    let r = engine
        .build(g, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    assert!(r.ok(), "{:#?}", r.nodes);
    r
}

fn status(r: &BuildReport, id: &str) -> Status {
    r.nodes.iter().find(|n| n.id == id).unwrap().status
}

fn commit_tree_digest(engine: &Engine) -> nosa_cache::Digest {
    engine.state().nodes["ostree-commit:x86_64"]
        .good
        .unwrap()
        .tree
}

fn engine_at(w: &Path) -> Engine {
    Engine::new(w, Store::open(w.join("cache/store")).unwrap())
}

#[test]
fn timestamp_change_is_cut_off_and_version_change_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_at(tmp.path());

    let first = build(&engine, &graph(100, "1.0"));
    assert_eq!(first.count(Status::Ran), 3);

    // The output is an archive repository that the CLI accepts.
    let tree = engine
        .store()
        .get_tree(&commit_tree_digest(&engine))
        .unwrap();
    let rec = record_of(engine.store(), &tree);
    let out = tmp.path().join("materialized");
    engine
        .store()
        .materialize(&tree, &out, Materialize::Copy)
        .unwrap();
    let repo = out.join("repo");
    ostree(&repo, &["fsck"]);
    assert_eq!(
        ostree(&repo, &["rev-parse", "nestos/x86_64/test"]).trim(),
        rec.checksum
    );
    let show = ostree(&repo, &["show", "nestos/x86_64/test"]);
    assert!(show.contains("Version: 1.0"), "{show}");
    assert!(show.contains(&rec.content_checksum), "{show}");
    // Owner by name through the tree's passwd; capability from meta.json; setuid kept.
    let entries = ls(&repo, "nestos/x86_64/test");
    let state = entries
        .iter()
        .find(|e| e.path == "/usr/lib/chrony/state")
        .unwrap();
    assert_eq!((state.uid, state.gid), (995, 993));
    let su = entries.iter().find(|e| e.path == "/usr/bin/su").unwrap();
    assert_eq!(su.mode, "-04755");
    let x = ostree(&repo, &["ls", "-X", "nestos/x86_64/test", "/usr/sbin/ping"]);
    assert!(x.contains("security.capability"), "{x}");
    assert_eq!(
        ostree(
            &repo,
            &[
                "show",
                "--print-metadata-key=ostree.ref-binding",
                "nestos/x86_64/test"
            ]
        )
        .trim(),
        "['nestos/x86_64/test']"
    );

    let again = build(&engine, &graph(100, "1.0"));
    assert_eq!(again.count(Status::Ran), 0);

    // Only the timestamp changes: the commit reruns (new checksum), the consumer is cut off.
    let third = build(&engine, &graph(200, "1.0"));
    assert_eq!(status(&third, "tree:x86_64"), Status::Cached);
    assert_eq!(status(&third, "ostree-commit:x86_64"), Status::Ran);
    assert_eq!(status(&third, "consumer"), Status::Cutoff);
    let rec3 = record_of(
        engine.store(),
        &engine
            .store()
            .get_tree(&commit_tree_digest(&engine))
            .unwrap(),
    );
    assert_ne!(rec3.checksum, rec.checksum);
    assert_eq!(rec3.content_checksum, rec.content_checksum);

    // The version is in the commit metadata that dependents observe: not cut off.
    let fourth = build(&engine, &graph(200, "1.1"));
    assert_eq!(status(&fourth, "ostree-commit:x86_64"), Status::Ran);
    assert_eq!(status(&fourth, "consumer"), Status::Ran);
}

#[test]
fn two_clean_builds_give_bit_identical_commits() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ea = engine_at(a.path());
    let eb = engine_at(b.path());
    build(&ea, &graph(1_700_000_000, "1.0"));
    build(&eb, &graph(1_700_000_000, "1.0"));
    assert_eq!(commit_tree_digest(&ea), commit_tree_digest(&eb));
    assert_eq!(
        ea.state().nodes["ostree-commit:x86_64"]
            .good
            .unwrap()
            .output,
        eb.state().nodes["ostree-commit:x86_64"]
            .good
            .unwrap()
            .output
    );
}

/// The test tree plus an os-release reached through `/usr/etc/os-release -> ../usr/lib/...`
/// (relative to `/etc`, as packages ship it) and a `meta.json` listing two packages.
struct ReleaseTreeStub;

impl Rule for ReleaseTreeStub {
    fn kind(&self) -> &str {
        "release-tree-stub"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, _: &mut Params) {}
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let root = ctx.out.join("root");
        make_tree(&root);
        fs_err::write(
            root.join("usr/lib/os-release"),
            "NAME=\"NestOS\"\nVERSION=\"40 (Test)\"\nVERSION_ID=40\nPRETTY_NAME=\"NestOS 40 (Test)\"\n",
        )?;
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("usr/etc/os-release"))?;
        fs_err::write(
            ctx.out.join("meta.json"),
            r#"{"packages":["zlib-1.3-1.x86_64","shim-15:1.0-2.noarch","nestos-release-1-1.noarch"]}"#,
        )?;
        Ok(())
    }
}

fn release_rule(version: &str, parent: Option<&str>) -> OstreeCommitRule {
    OstreeCommitRule::new("x86_64", "nestos/x86_64/test", version)
        .mutate_os_release(Some("40"))
        .parent(parent)
        .timestamp(1_700_000_000)
}

fn release_graph(version: &str, parent: Option<&str>) -> Graph {
    let mut b = GraphBuilder::new();
    b.add("tree:x86_64", Arc::new(ReleaseTreeStub), vec![]);
    let commit = release_rule(version, parent);
    b.add(
        commit.node_id(),
        Arc::new(commit),
        vec!["tree:x86_64".into()],
    );
    b.build().unwrap()
}

/// The commit output materialized under `dir`: its repo and record.
fn materialized(engine: &Engine, dir: &Path) -> (std::path::PathBuf, CommitRecord) {
    let tree = engine
        .store()
        .get_tree(&commit_tree_digest(engine))
        .unwrap();
    let rec = record_of(engine.store(), &tree);
    engine
        .store()
        .materialize(&tree, dir, Materialize::Copy)
        .unwrap();
    (dir.join("repo"), rec)
}

#[test]
fn os_release_inputhash_pkglist_and_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_at(tmp.path());
    let r = "nestos/x86_64/test";
    build(&engine, &release_graph("40.20250101.0", None));
    let (repo, first) = materialized(&engine, &tmp.path().join("first"));
    ostree(&repo, &["fsck"]);

    let os = ostree(&repo, &["cat", r, "/usr/lib/os-release"]);
    assert_eq!(
        os,
        "NAME=\"NestOS\"\nVERSION=\"40.20250101.0 (Test)\"\nVERSION_ID=40\n\
         PRETTY_NAME=\"NestOS 40.20250101.0 (Test)\"\nOSTREE_VERSION='40.20250101.0'\n"
    );
    let key = |repo: &Path, k: &str| {
        ostree(repo, &["show", &format!("--print-metadata-key={k}"), r])
            .trim()
            .to_string()
    };
    // The input hash covers the tree, not the version, timestamp or parent.
    let tree_output = engine.state().nodes["tree:x86_64"].good.unwrap().output;
    let input_hash = release_rule("40.20250101.0", None).input_hash(&tree_output);
    assert_eq!(
        input_hash,
        release_rule("40.20250101.1", Some("ab")).input_hash(&tree_output)
    );
    assert_ne!(
        input_hash,
        release_rule("x", None)
            .mutate_os_release(None)
            .input_hash(&tree_output)
    );
    assert_eq!(
        key(&repo, "rpmostree.inputhash"),
        format!("'{}'", input_hash.to_hex())
    );
    assert_eq!(
        key(&repo, "rpmostree.rpmdb.pkglist"),
        "[('nestos-release', '0', '1', '1', 'noarch'), ('shim', '15', '1.0', '2', 'noarch'), \
         ('zlib', '0', '1.3', '1', 'x86_64')]"
    );
    assert_eq!(first.parent, None);

    // The next build names the first as its parent: same content apart from the version,
    // the parent is in the commit (ostree resolves `REF^` to it) and not in the content.
    build(
        &engine,
        &release_graph("40.20250101.1", Some(&first.checksum)),
    );
    let (repo2, second) = materialized(&engine, &tmp.path().join("second"));
    ostree(&repo2, &["fsck"]);
    assert_eq!(second.parent.as_deref(), Some(first.checksum.as_str()));
    assert_eq!(
        ostree(&repo2, &["rev-parse", &format!("{r}^")]).trim(),
        first.checksum
    );
    let log = ostree(&repo2, &["log", r]);
    assert!(
        log.contains("History beyond this commit not fetched"),
        "{log}"
    );
    assert!(
        ostree(&repo2, &["cat", r, "/usr/lib/os-release"])
            .contains("OSTREE_VERSION='40.20250101.1'")
    );
    // Same version and tree, another parent: the content checksum does not see the parent.
    build(&engine, &release_graph("40.20250101.1", None));
    let (_, orphan) = materialized(&engine, &tmp.path().join("orphan"));
    assert_eq!(orphan.content_checksum, second.content_checksum);
    assert_ne!(orphan.checksum, second.checksum);
}

/// The test tree plus `usr/share/stub-version` holding `v`.
struct VersionedTree(u32);

impl Rule for VersionedTree {
    fn kind(&self) -> &str {
        "versioned-tree-stub"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, p: &mut Params) {
        p.add("v", &self.0);
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        TreeStub.run(ctx)?;
        fs_err::write(
            ctx.out.join("root/usr/share/stub-version"),
            format!("{}\n", self.0),
        )?;
        Ok(())
    }
}

fn versioned_graph(v: u32) -> Graph {
    let mut b = GraphBuilder::new();
    b.add("tree:x86_64", Arc::new(VersionedTree(v)), vec![]);
    let commit = OstreeCommitRule::new("x86_64", "nestos/x86_64/test", "1.0").timestamp(100);
    b.add(
        commit.node_id(),
        Arc::new(commit),
        vec!["tree:x86_64".into()],
    );
    b.build().unwrap()
}

#[test]
fn incremental_commit_reuses_objects_and_equals_a_cold_one() {
    let tmp = tempfile::tempdir().unwrap();
    let warm = engine_at(&tmp.path().join("warm"));
    build(&warm, &versioned_graph(1));
    let second = build(&warm, &versioned_graph(2));
    let node = second
        .nodes
        .iter()
        .find(|n| n.id == "ostree-commit:x86_64")
        .unwrap();
    assert_eq!(node.status, Status::Ran);
    let log = fs_err::read_to_string(node.log.as_ref().unwrap()).unwrap();
    assert!(
        log.contains("content objects: 1 written,"),
        "the rerun wrote only the changed file's object: {log}"
    );
    assert!(
        log.contains("1 not reached and deleted"),
        "the old version of the changed file was deleted: {log}"
    );

    let cold = engine_at(&tmp.path().join("cold"));
    build(&cold, &versioned_graph(2));
    let entries = |e: &Engine| -> std::collections::BTreeSet<String> {
        let t = e.store().get_tree(&commit_tree_digest(e)).unwrap();
        t.entries
            .iter()
            .map(|x| format!("{} {:o} {:?}", x.path, x.mode, x.kind))
            .collect()
    };
    let (w, c) = (entries(&warm), entries(&cold));
    assert!(
        w == c,
        "a commit seeded with the previous objects has exactly a cold commit's output; \
         only in the seeded one: {:#?}; only in the cold one: {:#?}",
        w.difference(&c).collect::<Vec<_>>(),
        c.difference(&w).collect::<Vec<_>>()
    );
    assert_eq!(commit_tree_digest(&warm), commit_tree_digest(&cold));
}
