//! The edit-rebuild loop on the example, each ratio measured in the same run:
//! 1. one overlay file changed vs a cold build of the same (changed) config, through the OCI
//!    archive (`nosa build`) and through the qcow2 (`nosa build qemu`);
//! 2. the tracer's overhead: a cold `nosa build` traced vs with `NOSA_TRACE=off` (the same
//!    sandboxed programs without strace);
//! 3. per-node times of the cold and the incremental build (the median round's).
//!
//! Needs the fixture distro (`cargo xtask fixture-distro`) and a built nosa (cargo builds it).
//! Run: `cargo bench --bench incremental` (`NOSA_BENCH_ROUNDS`, default 3).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Milliseconds by node id of the nodes that ran (` (reused)` appended when reused by trace).
type NodeTimes = BTreeMap<String, u64>;

const EDITED: &str = "overlay.d/15nestos/etc/test/test.txt";

/// One timed `nosa ARGS --json` in `w` (with `env`): wall time and the summary's node times.
fn timed(w: &Path, args: &[&str], env: &[(&str, &str)]) -> (Duration, NodeTimes) {
    let mut cmd = Command::new(common::nosa());
    cmd.args(args).arg("--json").current_dir(w);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let out = cmd.output().expect("nosa");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "nosa {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("nodes").is_some_and(|n| n.is_array()))
        .expect("a summary line with nodes");
    let nodes = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "ran")
        .map(|n| {
            let id = n["id"].as_str().unwrap().to_string();
            let reused = n.get("reused").and_then(|r| r.as_bool()).unwrap_or(false);
            let id = if reused { format!("{id} (reused)") } else { id };
            (id, n["ms"].as_u64().unwrap_or(0))
        })
        .collect();
    (took, nodes)
}

/// A fresh example workdir with its packages fetched, the overlay file holding `text`.
fn workdir(root: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let (w, cfg) = common::example_workdir(root, name);
    fs_err::write(cfg.join(EDITED), text).unwrap();
    common::nosa_ok(&w, &["fetch"]);
    w
}

struct Pair {
    what: &'static str,
    a: Vec<Duration>,
    b: Vec<Duration>,
}

fn main() {
    let root = common::work_dir("incremental");
    let rounds = common::env_num("NOSA_BENCH_ROUNDS", 3);
    let mut pairs = vec![
        Pair {
            what: "through the OCI archive (nosa build): one overlay file changed / cold",
            a: vec![],
            b: vec![],
        },
        Pair {
            what: "through the qcow2 (nosa build qemu): one overlay file changed / cold",
            a: vec![],
            b: vec![],
        },
        Pair {
            what: "tracer overhead, cold nosa build: traced / NOSA_TRACE=off",
            a: vec![],
            b: vec![],
        },
    ];
    let mut per_node: Vec<(Duration, NodeTimes, NodeTimes)> = vec![];
    for i in 0..rounds {
        let changed = format!("changed in round {i}\n");
        for (p, target) in [(0, None), (1, Some("qemu"))] {
            let args: Vec<&str> = std::iter::once("build").chain(target).collect();
            // Incremental: built once, then the file changed.
            let w = workdir(&root, &format!("inc-{p}-{i}"), "before\n");
            timed(&w, &args, &[]);
            fs_err::write(w.join("src/config").join(EDITED), &changed).unwrap();
            let (inc, inc_nodes) = timed(&w, &args, &[]);
            // Cold: the changed config in a fresh workdir.
            let w = workdir(&root, &format!("cold-{p}-{i}"), &changed);
            let (cold, cold_nodes) = timed(&w, &args, &[]);
            pairs[p].a.push(inc);
            pairs[p].b.push(cold);
            if p == 1 {
                per_node.push((inc, cold_nodes, inc_nodes));
            }
        }
        let w = workdir(&root, &format!("traced-{i}"), &changed);
        let (traced, _) = timed(&w, &["build"], &[]);
        let w = workdir(&root, &format!("untraced-{i}"), &changed);
        let (untraced, _) = timed(&w, &["build"], &[("NOSA_TRACE", "off")]);
        pairs[2].a.push(traced);
        pairs[2].b.push(untraced);
    }
    println!("median of {rounds} rounds, each pair measured in the same round:");
    for p in &mut pairs {
        let (a, b) = (common::median(&mut p.a), common::median(&mut p.b));
        println!(
            "  {}: {} / {} = {:.3}",
            p.what,
            common::ms(a),
            common::ms(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    per_node.sort_by_key(|(inc, _, _)| *inc);
    let (_, cold, inc) = &per_node[per_node.len() / 2];
    println!("per-node times through the qcow2 (ms; nodes that ran), median round:");
    println!("  {:<48} {:>8} {:>12}", "node", "cold", "incremental");
    let ids: std::collections::BTreeSet<&String> = cold.keys().collect();
    for id in ids {
        let reused = format!("{id} (reused)");
        let incr = inc
            .get(id)
            .map(|ms| ms.to_string())
            .or_else(|| inc.get(&reused).map(|ms| format!("{ms} reused")))
            .unwrap_or_else(|| "cached".into());
        if cold[id] >= 5 || incr != "cached" {
            println!("  {id:<48} {:>8} {incr:>12}", cold[id]);
        }
    }
}
