//! Exact incremental builds through the binary: after an overlay edit, the scriptlets, the
//! postprocess scripts and the initramfs are reused by trace unless they read what changed,
//! and the commit's content equals that of a clean build of the same change and version.
//! A build killed during a traced run leaves nothing that a later build trusts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{fixture_workdir, nosa};

/// One node of a build's JSON summary.
#[derive(Debug, Clone)]
struct NodeRun {
    status: String,
    reused: bool,
}

/// `nosa build --json --version V` in `w`, which must succeed: its nodes and the commit's
/// content checksum.
fn build(w: &Path, version: &str) -> (BTreeMap<String, NodeRun>, String) {
    let out = nosa(w, &["build", "--json", "--version", version]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nosa build: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let nodes = last["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                NodeRun {
                    status: n["status"].as_str().unwrap().to_string(),
                    reused: n["reused"].as_bool().unwrap_or(false),
                },
            )
        })
        .collect();
    let meta: serde_json::Value = serde_json::from_slice(
        &fs_err::read(w.join("builds").join(version).join("x86_64/meta.json")).unwrap(),
    )
    .unwrap();
    let checksum = meta["ostree-content-checksum"]
        .as_str()
        .unwrap()
        .to_string();
    (nodes, checksum)
}

/// The traced compose nodes of the example: the scriptlets, each postprocess script, the
/// initramfs.
fn traced(nodes: &BTreeMap<String, NodeRun>) -> Vec<&str> {
    let v: Vec<&str> = nodes
        .keys()
        .map(String::as_str)
        .filter(|id| {
            id.starts_with("scriptlets:")
                || id.starts_with("postprocess:")
                || id.starts_with("initramfs:")
        })
        .collect();
    assert!(v.len() >= 6, "the example's traced nodes: {v:?}");
    v
}

/// Which traced nodes really ran (ran and not reused).
fn really_ran(nodes: &BTreeMap<String, NodeRun>) -> Vec<String> {
    traced(nodes)
        .into_iter()
        .filter(|id| nodes[*id].status == "ran" && !nodes[*id].reused)
        .map(str::to_string)
        .collect()
}

fn write(p: &Path, content: &str) {
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(p, content).unwrap();
}

/// A clean build (fresh workdir, empty cache) of the example with `edit` applied to its
/// config copy, at `version`: the commit's content checksum.
fn clean_build(edit: &dyn Fn(&Path), version: &str) -> String {
    let (tmp, w) = fixture_workdir();
    edit(&tmp.path().join("example-config"));
    let (nodes, sum) = build(&w, version);
    assert!(
        traced(&nodes)
            .iter()
            .all(|id| nodes[*id].status == "ran" && !nodes[*id].reused),
        "a clean build runs every traced node: {nodes:?}"
    );
    sum
}

/// `nosa graph why NODE` in `w`: its text.
fn why(w: &Path, node: &str) -> String {
    String::from_utf8_lossy(&nosa(w, &["graph", "why", node]).stdout).into_owned()
}

/// Applies `edit` to the config copy, builds `version` incrementally in `w` and checks that
/// the commit's content equals a clean build of the same edit: the incremental build's nodes
/// and checksum.
fn edit_and_build(
    w: &Path,
    config: &Path,
    edit: &dyn Fn(&Path),
    version: &str,
) -> (BTreeMap<String, NodeRun>, String) {
    edit(config);
    let (nodes, sum) = build(w, version);
    assert_eq!(
        sum,
        clean_build(edit, version),
        "build {version} equals a clean build of the same edit"
    );
    (nodes, sum)
}

/// The example's postprocess scripts in order (`nosa config show` lists them): 0 enables the
/// presets, 1 reads /etc/nestos/variant, 2 tests for /etc/nestos/debug, 3 writes the issue
/// file.
#[test]
fn overlay_edits_reuse_traces_and_match_clean_builds() {
    let (tmp, w) = fixture_workdir();
    let config = tmp.path().join("example-config");
    let (first, _) = build(&w, "90.0");
    assert!(really_ran(&first).len() == traced(&first).len());

    // 1. A file no script reads: every traced node is reused by trace.
    let edit1 = |c: &Path| {
        write(
            &c.join("overlay.d/15nestos/etc/test/test.txt"),
            "edited by the incremental test\n",
        )
    };
    let (nodes, _) = edit_and_build(&w, &config, &edit1, "90.1");
    for id in traced(&nodes) {
        assert!(
            nodes[id].status == "ran" && nodes[id].reused,
            "{id} is reused by trace after an edit no script reads: {:?}",
            nodes[id]
        );
    }
    let why1 = why(&w, "initramfs:x86_64");
    assert!(
        why1.contains("reused by trace (") && why1.contains("paths read, unchanged)"),
        "{why1}"
    );

    // 2. A file one postprocess script reads: exactly that script runs again.
    let edit2 = |c: &Path| {
        edit1(c);
        write(&c.join("overlay.d/15nestos/etc/nestos/variant"), "edge\n");
    };
    let (nodes, sum2) = edit_and_build(&w, &config, &edit2, "90.2");
    assert_eq!(really_ran(&nodes), ["postprocess:x86_64:1"], "{nodes:?}");

    // 3. A file a script only tests for: exactly that script runs again.
    let edit3 = |c: &Path| {
        edit2(c);
        write(&c.join("overlay.d/15nestos/etc/nestos/debug"), "");
    };
    let (nodes, sum3) = edit_and_build(&w, &config, &edit3, "90.3");
    // Script 2 tests for the marker; script 3 runs `mkdir -p /etc/issue.d`, which script 2
    // has now created: it saw that, and runs again too. Nothing before them runs.
    assert_eq!(
        really_ran(&nodes),
        ["postprocess:x86_64:2", "postprocess:x86_64:3"],
        "{nodes:?}"
    );
    assert_ne!(sum3, sum2, "the debug marker changes the tree");
    let why2 = why(&w, "postprocess:x86_64:2");
    assert!(
        why2.contains("/etc/nestos/debug changed since the last trace"),
        "{why2}"
    );
    let why3 = why(&w, "postprocess:x86_64:3");
    assert!(why3.contains("/etc/issue.d"), "{why3}");
}

/// A postprocess script that reads the variant file and takes its time, so that the build can
/// be killed while it runs under the tracer. It comes after the other scripts of its file:
/// `postprocess:x86_64:3`.
fn add_slow_script(config: &Path) {
    let f = config.join("manifests/system-configuration.yaml");
    let mut text = fs_err::read_to_string(&f).unwrap();
    text.push_str(
        "  - |\n    #!/bin/sh\n    set -eu\n    read -r v < /etc/nestos/variant\n    \
         sleep 3\n    echo \"$v\" > /etc/nestos/slow\n",
    );
    fs_err::write(&f, text).unwrap();
}

#[test]
fn a_build_killed_during_a_traced_run_is_never_trusted() {
    let (tmp, w) = fixture_workdir();
    let config = tmp.path().join("example-config");
    add_slow_script(&config);
    build(&w, "91.0");
    let edit = |c: &Path| write(&c.join("overlay.d/15nestos/etc/nestos/variant"), "killed\n");
    edit(&config);
    let mut child = std::process::Command::new(common::nosa_bin())
        .args(["build", "--json", "--version", "91.1"])
        .current_dir(&w)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = w.join("cache/store/logs/postprocess_x86_64_3.log");
    // The last build's log names the old key; the new run rewrites it.
    let old_head = fs_err::read_to_string(&log)
        .unwrap()
        .lines()
        .next()
        .map(str::to_string);
    let t0 = Instant::now();
    loop {
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        let head = text.lines().next().map(str::to_string);
        if head.is_some()
            && head != old_head
            && text
                .lines()
                .any(|l| l.starts_with("# postprocess script 3"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before the slow script ran"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the slow script never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();

    let (nodes, sum) = build(&w, "91.1");
    let slow = &nodes["postprocess:x86_64:3"];
    assert!(
        slow.status == "ran" && !slow.reused,
        "the killed script runs again, no half-recorded trace is used: {slow:?}"
    );
    let clean = clean_build(
        &|c: &Path| {
            add_slow_script(c);
            edit(c);
        },
        "91.1",
    );
    assert_eq!(sum, clean, "the build after the kill equals a clean build");
}
