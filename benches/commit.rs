//! Committing the example's composed tree with nosa (libostree through `nosa_commit`) vs
//! Debian's `ostree commit` CLI on the same tree, same repo mode (archive), fresh repos, in the
//! same run. (Cold vs incremental builds: `benches/incremental.rs`.)
//!
//! Needs the fixture distro (`cargo xtask fixture-distro`) and a built nosa (cargo builds it).
//! Run: `cargo bench --bench commit`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nosa_commit::{CommitRequest, RepoMode, commit_tree};

fn run(dir: &Path, args: &[&str]) {
    common::nosa_ok(dir, args);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let root = common::work_dir("commit");
    let rounds = common::env_num("NOSA_BENCH_ROUNDS", 3);

    // The composed tree, from a real build.
    let (w, _) = common::example_workdir(&root, "tree");
    run(&w, &["build"]);
    let tree = root.join("tree-checkout");
    let _ = fs_err::remove_dir_all(&tree);
    let repo = w.join("builds/latest/x86_64/ostree-commit/repo");
    let st = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["checkout", "-U", "nestos/x86_64/devel"])
        .arg(&tree)
        .status()
        .expect("ostree (Debian package ostree)");
    assert!(st.success());

    let (mut n, mut c) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let r1 = root.join(format!("repo-nosa-{i}"));
        let _ = fs_err::remove_dir_all(&r1);
        let t = Instant::now();
        commit_tree(&CommitRequest {
            repo: r1.clone(),
            mode: RepoMode::Archive,
            rootfs: tree.clone(),
            ref_name: "bench".into(),
            timestamp: 1,
            ..Default::default()
        })
        .expect("commit");
        n.push(t.elapsed());
        let r2 = root.join(format!("repo-cli-{i}"));
        let _ = fs_err::remove_dir_all(&r2);
        let t = Instant::now();
        let ok = Command::new("ostree")
            .arg(format!("--repo={}", r2.display()))
            .args(["init", "--mode=archive"])
            .status()
            .unwrap()
            .success()
            && Command::new("ostree")
                .arg(format!("--repo={}", r2.display()))
                .args(["commit", "--branch=bench", "--owner-uid=0", "--owner-gid=0"])
                .args(["--no-xattrs", "--timestamp=1970-01-01T00:00:01Z"])
                .arg(format!("--tree=dir={}", tree.display()))
                .status()
                .unwrap()
                .success();
        c.push(t.elapsed());
        assert!(ok, "ostree commit");
    }
    let (n, c) = (median(n), median(c));
    println!(
        "commit of the example tree: nosa {:.0} ms, ostree CLI {:.0} ms, nosa/ostree = {:.2}x (median of {rounds})",
        n.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        n.as_secs_f64() / c.as_secs_f64()
    );
}
