//! The resolve rule in the engine: a stub repo-sync rule outputs the fixture repository tree;
//! changing a repo field that does not change that tree cuts the resolve node off; changing
//! the package list reruns it; outputs are byte-identical across runs and workdirs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use nosa_cache::{EntryKind, Store};
use nosa_engine::{
    BuildOptions, Engine, Graph, GraphBuilder, Params, Rule, RunContext, RunError, Status,
};
use nosa_solve::{Request, ResolveRule};
use nosa_testkit::fixture_repo;

/// Outputs a repo-sync tree (repomd.xml, repodata/*, repo.json) for the fixture repository.
/// `name` is a repo field that does not enter the tree (like the `.repo` `name=`).
struct StubRepoSync {
    repo: PathBuf,
    name: String,
}

impl Rule for StubRepoSync {
    fn kind(&self) -> &str {
        "repo-sync"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, p: &mut Params) {
        p.add("repo", &self.repo).add("name", &self.name);
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        stage_repo(&self.repo, &ctx.out, &config("fixture", &self.repo));
        Ok(())
    }
}

fn graph(repo: &Path, name: &str, req: Request) -> Graph {
    let mut b = GraphBuilder::new();
    b.add(
        "repo-sync:x86_64:fixture",
        Arc::new(StubRepoSync {
            repo: repo.to_path_buf(),
            name: name.into(),
        }),
        vec![],
    );
    b.add(
        ResolveRule::node_id("x86_64"),
        Arc::new(ResolveRule::new(req)),
        vec!["repo-sync:x86_64:fixture".into()],
    );
    b.build().unwrap()
}

fn build(engine: &Engine, g: &Graph) -> nosa_engine::BuildReport {
    let all: Vec<usize> = (0..g.len()).collect();
    let opts = BuildOptions {
        jobs: 2,
        ..Default::default()
    };
    engine
        .build(g, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap()
}

/// The resolve node's output files, by path.
fn outputs(engine: &Engine) -> Vec<(String, Vec<u8>)> {
    let state = engine.state();
    let good = state.nodes["resolve:x86_64"].good.unwrap();
    let tree = engine.store().get_tree(&good.tree).unwrap();
    tree.entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { digest, .. } => Some((
                e.path.clone(),
                fs_err::read(engine.store().blob_path(&digest)).unwrap(),
            )),
            _ => None,
        })
        .collect()
}

const PKGS: &[&str] = &["filesystem", "setup", "busybox", "fixture-app"];

#[test]
fn unrelated_repo_change_cuts_resolve_off() {
    let repo = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        tmp.path(),
        Store::open(tmp.path().join("cache/store")).unwrap(),
    );

    let first = build(&engine, &graph(&repo, "Fixture", request(PKGS)));
    assert_eq!(first.count(Status::Ran), 2);
    let out = outputs(&engine);
    let names: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["manifest-lock.generated.x86_64.json", "resolved.json"]
    );

    // Same graph: nothing runs.
    let again = build(&engine, &graph(&repo, "Fixture", request(PKGS)));
    assert_eq!(again.count(Status::Ran), 0);

    // A repo field that does not change the synced tree: repo-sync reruns, resolve is cut off.
    let renamed = build(&engine, &graph(&repo, "Fixture (renamed)", request(PKGS)));
    assert_eq!(renamed.ids(Status::Ran), ["repo-sync:x86_64:fixture"]);
    assert_eq!(renamed.ids(Status::Cutoff), ["resolve:x86_64"]);

    // A different package list reruns resolve.
    let mut more = PKGS.to_vec();
    more.push("fixture-post");
    let changed = build(&engine, &graph(&repo, "Fixture (renamed)", request(&more)));
    assert_eq!(changed.ids(Status::Ran), ["resolve:x86_64"]);
}

#[test]
fn outputs_are_deterministic_and_in_coreos_assembler_format() {
    let repo = fixture_repo();
    let run_once = || {
        let tmp = tempfile::tempdir().unwrap();
        let engine = Engine::new(
            tmp.path(),
            Store::open(tmp.path().join("cache/store")).unwrap(),
        );
        build(&engine, &graph(&repo, "Fixture", request(PKGS)));
        outputs(&engine)
    };
    let a = run_once();
    let b = run_once();
    assert_eq!(a, b, "two runs in two workdirs differ");

    let lock: serde_json::Value = serde_json::from_slice(&a[0].1).unwrap();
    assert_eq!(
        lock["packages"]["fixture-lib"]["evra"], "1.3-1.nosa1.x86_64",
        "{lock:#}"
    );
    assert_eq!(
        lock["packages"]["busybox"]["metadata"]["sourcerpm"],
        "busybox"
    );
    assert_eq!(lock["metadata"]["generated"], "2023-11-14T22:13:20Z");
    assert_eq!(
        lock["metadata"]["rpmmd_repos"]["fixture"]["generated"],
        "2023-11-14T22:13:20Z"
    );

    let resolved: serde_json::Value = serde_json::from_slice(&a[1].1).unwrap();
    assert_eq!(resolved["arch"], "x86_64");
    let pkgs = resolved["packages"].as_array().unwrap();
    let names: Vec<&str> = pkgs.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let app = pkgs.iter().find(|p| p["name"] == "fixture-app").unwrap();
    assert_eq!(app["nevra"], "fixture-app-1.0-1.nosa1.x86_64");
    assert_eq!(app["epoch"], 0);
    assert_eq!(app["repo"], "fixture");
    assert_eq!(
        app["location"],
        "Packages/fixture-app-1.0-1.nosa1.x86_64.rpm"
    );
    assert_eq!(app["checksum"]["type"], "sha256");
    // The checksum and size are the real file's.
    let file = fs_err::read(repo.join("Packages/fixture-app-1.0-1.nosa1.x86_64.rpm")).unwrap();
    assert_eq!(app["size"], file.len() as u64);
    assert_eq!(app["checksum"]["value"].as_str().unwrap().len(), 64);
}

#[test]
fn unsatisfiable_request_fails_the_node_with_the_message() {
    let repo = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        tmp.path(),
        Store::open(tmp.path().join("cache/store")).unwrap(),
    );
    let g = graph(
        &repo,
        "Fixture",
        request(&["fixture-conflict-a", "fixture-conflict-b"]),
    );
    let r = build(&engine, &g);
    assert_eq!(r.ids(Status::Failed), ["resolve:x86_64"]);
    let node = r.nodes.iter().find(|n| n.id == "resolve:x86_64").unwrap();
    let msg = node.error.clone().unwrap_or_default();
    assert!(msg.contains("conflicts with fixture-conflict-b"), "{msg}");
    assert!(msg.contains("(requested)"), "{msg}");
}
