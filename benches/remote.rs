//! The remote cache on the example, each figure measured in the same round:
//! 1. a fresh workdir B building from a warm remote (filled by workdir A) vs a cold local build
//!    with no remote, as a ratio, for each server on 127.0.0.1: nginx (Bazel's HTTP layout)
//!    and BuildGrid (REAPI over gRPC);
//! 2. what filling the remote costs: A's cold build with uploads vs the same cold local build;
//! 3. the bytes A uploaded and B downloaded, from nosa's own closing report.
//!
//! Needs the fixture distro (`cargo xtask fixture-distro`), Debian's nginx and BuildGrid
//! (`scripts/install-deps.sh test`).
//! Run: `cargo bench --bench remote` (`NOSA_BENCH_ROUNDS`, default 3).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One `nosa build ARGS` in `w` at a fixed version and build time (so that every workdir makes
/// the same keys): wall time and nosa's stderr.
fn timed(w: &Path, args: &[&str]) -> (Duration, String) {
    let mut cmd = Command::new(common::nosa());
    cmd.args(["build", "--version", "42.0"])
        .args(args)
        .current_dir(w)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    let t = Instant::now();
    let out = cmd.output().expect("nosa");
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nosa build {args:?}: {stderr}");
    (took, stderr)
}

/// The `remote cache URL: ...` line of a build's stderr.
fn remote_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("remote cache "))
        .unwrap_or("no remote cache report")
        .to_string()
}

/// A server of one round, kept alive while its builds run.
enum Server {
    Nginx(nosa_testkit::Nginx),
    BuildGrid(nosa_testkit::BuildGrid),
}

impl Server {
    fn start(kind: &str) -> Server {
        match kind {
            "nginx" => Server::Nginx(nosa_testkit::Nginx::start()),
            _ => Server::BuildGrid(nosa_testkit::BuildGrid::start()),
        }
    }

    fn url(&self) -> &str {
        match self {
            Server::Nginx(n) => &n.url,
            Server::BuildGrid(b) => &b.url,
        }
    }
}

const SERVERS: [&str; 2] = ["nginx", "buildgrid"];

fn main() {
    common::require_tool("nginx", "nginx");
    nosa_testkit::bgd();
    let root = common::work_dir("remote");
    let rounds = common::env_num("NOSA_BENCH_ROUNDS", 3);
    let mut local = vec![];
    let (mut fill, mut warm) = ([vec![], vec![]], [vec![], vec![]]);
    let mut lines = vec![];
    for i in 0..rounds {
        let (w, _) = common::example_workdir(&root, &format!("local-{i}"));
        local.push(timed(&w, &["--no-remote"]).0);
        let _ = fs_err::remove_dir_all(w.parent().expect("the round's directory"));
        for (k, kind) in SERVERS.iter().enumerate() {
            let server = Server::start(kind);
            let remote = ["--remote-cache", server.url()];
            let (a, _) = common::example_workdir(&root, &format!("a-{kind}-{i}"));
            let (t, a_err) = timed(&a, &remote);
            fill[k].push(t);
            let (b, _) = common::example_workdir(&root, &format!("b-{kind}-{i}"));
            let (t, b_err) = timed(&b, &remote);
            warm[k].push(t);
            lines.push((i, kind, remote_line(&a_err), remote_line(&b_err)));
            // Stores of ~1.5 GB each, and the server's copy: not kept between rounds.
            for d in [&a, &b] {
                let _ = fs_err::remove_dir_all(d.parent().expect("the round's directory"));
            }
        }
    }
    let l = common::median(&mut local);
    println!("median of {rounds} rounds, each figure measured in the same round:");
    for (k, kind) in SERVERS.iter().enumerate() {
        let (f, w) = (common::median(&mut fill[k]), common::median(&mut warm[k]));
        println!(
            "  {kind}: fresh workdir from a warm remote / cold local build: {} / {} = {:.3}",
            common::ms(w),
            common::ms(l),
            w.as_secs_f64() / l.as_secs_f64()
        );
        println!(
            "  {kind}: cold build filling the remote / cold local build: {} / {} = {:.3}",
            common::ms(f),
            common::ms(l),
            f.as_secs_f64() / l.as_secs_f64()
        );
    }
    for (i, kind, a, b) in &lines {
        println!("  round {i} {kind}: filling: {a}\n           warm: {b}");
    }
}
