//! `[[step]]`s with `trace = true`, through the real binary: a step whose declared inputs
//! changed is reused when nothing it read changed (work directory and host), runs when a file
//! it read, a file it only tested for, a directory it listed or an unread input under one of
//! its outputs changed, and never when it read host state; every result equals a clean build's.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Workdir;

/// A node's line of the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    status: String,
    reused: bool,
}

fn build(w: &Workdir) -> BTreeMap<String, Node> {
    let out = w.output(&["graph", "build", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).expect("summary line");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                Node {
                    status: n["status"].as_str().unwrap().to_string(),
                    reused: n["reused"].as_bool().unwrap_or(false),
                },
            )
        })
        .collect()
}

fn why(w: &Workdir, node: &str) -> String {
    let out = w.output(&["graph", "why", node]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The step's build file; `host` is a host file outside the workdir that `pick` reads.
fn graph(host: &Path) -> String {
    format!(
        r#"
[[step]]
name = "pick"
inputs = ["src"]
run = """
cat src/a > out.txt
if [ -e src/flag ]; then echo flagged >> out.txt; fi
ls src/d > list.txt
cat {host} >> out.txt
"""
outputs = ["out.txt", "list.txt"]
trace = true

[[step]]
name = "after"
run = "cat out.txt list.txt > final.txt"
outputs = ["final.txt"]
deps = ["pick"]

[[step]]
name = "gen"
inputs = ["seed"]
run = "mkdir -p g/sub && cp seed/* g/sub/"
outputs = ["g/sub"]

[[step]]
name = "keep"
run = "touch g/made"
outputs = ["g"]
deps = ["gen"]
trace = true

[[step]]
name = "random"
inputs = ["src/a"]
run = "head -c 4 /dev/urandom > /dev/null; cat src/a > r.txt"
outputs = ["r.txt"]
trace = true
"#,
        host = host.display()
    )
}

const FILES: &[(&str, &str)] = &[
    ("src/a", "a1\n"),
    ("src/b", "b1\n"),
    ("src/d/one", "1\n"),
    ("seed/x", "x1\n"),
];

/// The outputs of a build, for comparing with a clean build of the same state.
fn outputs(w: &Workdir) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ["out.txt", "list.txt", "final.txt", "r.txt"]
        .iter()
        .map(|p| (p.to_string(), w.read(p)))
        .collect();
    for e in walkdir::WalkDir::new(w.path().join("g")).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(w.path()).unwrap().to_string_lossy();
            v.push((rel.to_string(), w.read(&rel)));
        }
    }
    v
}

/// A clean build of `w`'s current inputs in a new workdir gives the same outputs.
fn equals_clean(w: &Workdir, host: &Path) {
    let mut files: Vec<(String, String)> = Vec::new();
    for e in walkdir::WalkDir::new(w.path().join("src"))
        .into_iter()
        .chain(walkdir::WalkDir::new(w.path().join("seed")))
    {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(w.path()).unwrap();
            files.push((
                rel.to_string_lossy().into_owned(),
                w.read(&rel.to_string_lossy()),
            ));
        }
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let clean = Workdir::new(&graph(host), &refs);
    build(&clean);
    assert_eq!(
        outputs(w),
        outputs(&clean),
        "incremental outputs equal a clean build's"
    );
}

#[test]
fn traced_steps_are_reused_exactly_when_what_they_read_is_unchanged() {
    let hostdir = tempfile::Builder::new()
        .prefix("step-trace-host")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let host = hostdir.path().join("host.txt");
    fs_err::write(&host, "host1\n").unwrap();
    // A host file changed within the stamps' racy window (2 s) before a run proves nothing
    // afterwards: the run's memo would never match. Let it age.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let w = Workdir::new(&graph(&host), FILES);
    let first = build(&w);
    assert!(
        first.values().all(|n| n.status == "ran" && !n.reused),
        "{first:?}"
    );
    assert_eq!(w.read("out.txt"), "a1\nhost1\n");
    let why0 = why(&w, "step:pick");
    assert!(why0.contains("paths read"), "{why0}");

    let ran = |r: &BTreeMap<String, Node>, id: &str| r[id].status == "ran" && !r[id].reused;
    let reused = |r: &BTreeMap<String, Node>, id: &str| r[id].status == "ran" && r[id].reused;

    // 1. A declared input no step reads: pick is reused, after is cut off (same output).
    w.write("src/b", "b2\n");
    let r = build(&w);
    assert!(reused(&r, "step:pick"), "{r:?}\n{}", why(&w, "step:pick"));
    assert_eq!(r["step:after"].status, "cutoff", "{r:?}");
    let y = why(&w, "step:pick");
    assert!(
        y.contains("reused by trace (") && y.contains("paths read, unchanged)"),
        "{y}"
    );
    // random read /dev/urandom: it runs whenever its key changes, and says why.
    assert_eq!(
        r["step:random"].status, "cached",
        "its inputs did not change"
    );
    equals_clean(&w, &host);

    // 2. A file it reads.
    w.write("src/a", "a2\n");
    let r = build(&w);
    assert!(ran(&r, "step:pick"), "{r:?}");
    assert!(ran(&r, "step:after"), "{r:?}");
    assert!(ran(&r, "step:random"), "{r:?}");
    let y = why(&w, "step:pick");
    assert!(y.contains("src/a changed since the last trace"), "{y}");
    let y = why(&w, "step:random");
    assert!(
        y.contains("not reusable by trace") && y.contains("/dev/urandom"),
        "{y}"
    );
    equals_clean(&w, &host);

    // 3. A file it only tests for.
    w.write("src/flag", "");
    let r = build(&w);
    assert!(ran(&r, "step:pick"), "{r:?}");
    assert!(why(&w, "step:pick").contains("src/flag changed"));
    assert_eq!(w.read("out.txt"), "a2\nflagged\nhost1\n");
    equals_clean(&w, &host);

    // 4. A directory it lists.
    w.write("src/d/two", "2\n");
    let r = build(&w);
    assert!(ran(&r, "step:pick"), "{r:?}");
    assert!(
        why(&w, "step:pick").contains("the listing of src/d changed"),
        "{}",
        why(&w, "step:pick")
    );
    equals_clean(&w, &host);

    // 5. A host file it reads.
    fs_err::write(&host, "host2\n").unwrap();
    w.write("src/b", "b3\n");
    let r = build(&w);
    assert!(ran(&r, "step:pick"), "{r:?}");
    let y = why(&w, "step:pick");
    assert!(
        y.contains(&format!("host file {} changed", host.display())),
        "{y}"
    );
    equals_clean(&w, &host);

    // 6. A file staged under a declared output that the step never read: part of the output.
    w.write("seed/x", "x2\n");
    let r = build(&w);
    assert!(ran(&r, "step:keep"), "{r:?}");
    assert_eq!(w.read("g/sub/x"), "x2\n");
    w.write("seed/y", "y\n");
    let r = build(&w);
    assert!(ran(&r, "step:keep"), "a new file under the output: {r:?}");
    assert_eq!(w.read("g/sub/y"), "y\n");
    equals_clean(&w, &host);

    // 7. Nothing changed at all: everything cached, nothing reused.
    let r = build(&w);
    assert!(r.values().all(|n| n.status == "cached"), "{r:?}");
}

#[test]
fn nosa_trace_off_runs_a_traced_step_untraced_every_time() {
    let w = Workdir::new(
        r#"
[[step]]
name = "s"
inputs = ["src"]
run = "cat src/a > o.txt"
outputs = ["o.txt"]
trace = true
"#,
        &[("src/a", "1\n"), ("src/b", "1\n")],
    );
    let run = |w: &Workdir| {
        let out = w
            .cmd(&["graph", "build", "--json"])
            .env("NOSA_TRACE", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&w);
    w.write("src/b", "2\n");
    run(&w);
    let y = w
        .cmd(&["graph", "why", "step:s"])
        .env("NOSA_TRACE", "off")
        .output()
        .unwrap();
    let y = String::from_utf8_lossy(&y.stdout);
    assert!(y.contains("ran untraced"), "{y}");
    assert_eq!(w.read("o.txt"), "1\n");
}
