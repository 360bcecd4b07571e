//! A node whose remote cache lookup panics (a bug in the remote cache's code; a rule's own
//! panic is caught around its run) fails that node and the build; it must not take its
//! worker thread down and leave the build waiting forever for the worker's answer.

use std::sync::Arc;

use nosa_cache::{Digest, Store};
use nosa_engine::{
    ActionRecord, BuildOptions, Engine, GraphBuilder, Params, RemoteCache, RemoteLookup, Rule,
    RunContext, RunError, Status,
};

/// Writes its name to `out/value`.
struct Node(&'static str);

impl Rule for Node {
    fn kind(&self) -> &str {
        "node"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, p: &mut Params) {
        p.add("name", self.0);
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        fs_err::write(ctx.out.join("value"), self.0)?;
        Ok(())
    }
}

/// A remote cache whose lookups panic.
#[derive(Debug)]
struct Broken;

impl RemoteCache for Broken {
    fn fetch(&self, _: &Store, key: &Digest) -> RemoteLookup {
        panic!("a remote cache bug at key {}", key.short())
    }
    fn upload(&self, _: &Store, _: &ActionRecord) {}
    fn describe(&self) -> String {
        "broken".into()
    }
}

#[test]
fn a_panicking_remote_lookup_fails_its_node_and_the_build_ends() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let mut b = GraphBuilder::new();
    b.add("a", Arc::new(Node("a")), vec![]);
    b.add("b", Arc::new(Node("b")), vec![]);
    b.add("c", Arc::new(Node("c")), vec![]);
    b.add("after", Arc::new(Node("after")), vec!["a".into()]);
    let graph = b.build().unwrap();
    let mut engine = Engine::new(w, Store::open(w.join("cache/store")).unwrap());
    engine.set_remote(Some(Arc::new(Broken)));
    let all: Vec<usize> = (0..graph.len()).collect();
    // More panics than workers: with a worker lost per panic, this build would never end.
    let opts = BuildOptions {
        jobs: 2,
        keep_going: true,
        ..BuildOptions::default()
    };
    let report = engine
        .build(&graph, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.ids(Status::Failed), ["a", "b", "c"]);
    assert_eq!(report.ids(Status::Skipped), ["after"]);
    let err = report
        .nodes
        .iter()
        .find(|n| n.id == "a")
        .and_then(|n| n.error.clone())
        .unwrap();
    assert!(
        err.contains("panicked") && err.contains("a remote cache bug at key"),
        "{err}"
    );
}
