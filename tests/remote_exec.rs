//! Remote execution against a real build farm on 127.0.0.1: buildbox-casd running each job
//! with buildbox-run in bubblewrap (the host's /usr bound read-only as the tools). Steps run
//! through REAPI's Execute with the same outputs as a local build; a command that fails on
//! the farm fails its node with the farm's output in the log; a farm that is not there costs
//! one warning and a local run. The example's OS build sends the nodes whose rules run
//! anywhere (unpack, overlay, resolve) there as `nosa-core exec-node`, and commits what a
//! local build commits.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use common::{Run, Workdir, fixture_workdir, nosa_bin};
use nosa_testkit::Casd;

const STEPS: &str = r#"
[[step]]
name = "gen"
inputs = ["in.txt", "tool.sh"]
run = "mkdir -p out/sub && sh tool.sh < in.txt > out/up.txt && seq 1000000 > out/seq && ln -s up.txt out/link && cp tool.sh out/sub/tool && chmod 755 out/sub/tool && echo printed-on-the-farm"
outputs = ["out"]

[[step]]
name = "use"
deps = ["gen"]
run = "mkdir -p final && out/sub/tool < out/up.txt > final/again.txt && wc -c out/up.txt out/seq > final/wc.txt"
outputs = ["final"]
"#;

const TOOL: &str = "tr a-z A-Z\n";

/// Node id, note and build farm of each node, from the summary line.
fn notes(r: &Run) -> Vec<(String, String, String)> {
    r.summary()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["note"].as_str().unwrap_or_default().to_string(),
                n["farm"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What two workdirs must agree on: every output file's bytes, the link and the modes.
fn outputs(w: &Workdir) -> Vec<(String, String)> {
    let mut v = vec![];
    for rel in [
        "out/up.txt",
        "out/seq",
        "out/sub/tool",
        "final/again.txt",
        "final/wc.txt",
    ] {
        v.push((rel.to_string(), w.read(rel)));
        let mode = fs_err::metadata(w.path().join(rel))
            .unwrap()
            .permissions()
            .mode();
        v.push((format!("{rel} mode"), format!("{:o}", mode & 0o777)));
    }
    let link = fs_err::read_link(w.path().join("out/link")).unwrap();
    v.push(("out/link".into(), link.display().to_string()));
    v
}

#[test]
fn steps_run_on_the_farm_with_a_local_builds_outputs() {
    let farm = Casd::start();
    let files = [("in.txt", "hello farm\n"), ("tool.sh", TOOL)];
    // The build file's [cache] asks for it here; the third workdir below, the flags.
    let toml = format!(
        "[cache]\nremote = \"{}\"\nexecute = true\n{STEPS}",
        farm.url
    );
    let remote = Workdir::new(&toml, &files);
    let r = remote.build(&[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, farm.log());
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
    for (id, note, on) in notes(&r) {
        assert_eq!(note, format!("ran on the build farm {}", farm.url), "{id}");
        assert_eq!(on, farm.url, "{id}: --json names the farm");
    }
    assert!(
        r.stderr
            .contains("2 nodes: 2 ran (2 of them on the build farm)"),
        "{}",
        r.stderr
    );
    let log = fs_err::read_to_string(remote.path().join("cache/store/logs/step_gen.log")).unwrap();
    assert!(log.contains("printed-on-the-farm"), "{log}");
    let farm_log = farm.log();
    assert_eq!(
        farm_log.matches("Execute request from").count(),
        2,
        "the farm was asked to execute both steps: {farm_log}"
    );
    assert_eq!(
        farm_log.matches("Runner exited with code 0").count(),
        2,
        "{farm_log}"
    );

    let local = Workdir::new(STEPS, &files);
    let r = local.build(&["--no-remote"]);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(outputs(&remote), outputs(&local));
    assert_eq!(remote.read("final/again.txt"), "HELLO FARM\n");

    // The farm's results were cached too: a third workdir gets them from its action cache.
    let third = Workdir::new(STEPS, &files);
    let r = third.build(&["--remote-cache", &farm.url, "--remote-execute"]);
    assert_eq!(r.ids("remote"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(outputs(&third), outputs(&local));
}

#[test]
fn a_command_failing_on_the_farm_fails_its_node_with_the_farms_output() {
    let farm = Casd::start();
    let toml =
        "[[step]]\nname = \"bad\"\nrun = \"echo about-to-fail; exit 3\"\noutputs = [\"o\"]\n";
    let w = Workdir::new(toml, &[]);
    let r = w.build(&["--remote-cache", &farm.url, "--remote-execute"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.ids("failed"), ["step:bad"], "{}", r.stderr);
    assert!(
        r.stderr
            .contains("exited with exit status: 3 on the build farm"),
        "{}",
        r.stderr
    );
    let log = fs_err::read_to_string(w.path().join("cache/store/logs/step_bad.log")).unwrap();
    assert!(log.contains("about-to-fail"), "{log}");
    assert!(
        !r.stderr.contains("running commands locally"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_farm_that_is_not_there_costs_one_warning_and_runs_here() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("grpc://127.0.0.1:{port}");
    let w = Workdir::new(STEPS, &[("in.txt", "hello\n"), ("tool.sh", TOOL)]);
    let r = w.build(&["--remote-cache", &url, "--remote-execute"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("running commands locally from here on")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(w.read("final/again.txt"), "HELLO\n");
}

/// `nosa build --json --version 42.0 ostree` in `w` with `extra`, at a fixed build time;
/// asserts success. The summary's nodes (id, status, farm) and stderr.
fn os_build(w: &std::path::Path, extra: &[&str]) -> (Vec<(String, String, String)>, String) {
    let out = std::process::Command::new(nosa_bin())
        .args(["build", "--json", "--version", "42.0", "ostree"])
        .args(extra)
        .current_dir(w)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "nosa build in {}: {stderr}",
        w.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .expect("a summary line");
    let nodes = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("status"), s("farm"))
        })
        .collect();
    (nodes, stderr)
}

/// The commit and its content checksum that a build in `w` recorded.
fn commit_of(w: &std::path::Path) -> (String, String) {
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(w.join("builds/42.0/x86_64/meta.json")).unwrap())
            .unwrap();
    let s = |k: &str| meta[k].as_str().unwrap().to_string();
    (s("ostree-commit"), s("ostree-content-checksum"))
}

/// The issue's acceptance: a cold build of the example with `--remote-execute` runs every
/// node whose rule can run on a worker through Execute (each package's unpack, the overlay
/// layers, the resolve: nosa's own code on the node's inputs, shipped with the program in the
/// input root) and the rest here, and its commit equals a local build's.
#[test]
fn the_example_built_on_the_farm_commits_what_a_local_build_commits() {
    let farm = Casd::start();
    let (_ta, a) = fixture_workdir();
    let (nodes, stderr) = os_build(&a, &["--remote-cache", &farm.url, "--remote-execute"]);
    assert!(!stderr.contains("warning"), "{stderr}");
    let portable = |id: &str| {
        ["unpack:", "overlay:", "resolve:"]
            .iter()
            .any(|k| id.starts_with(k))
    };
    let mut on_farm = 0;
    for (id, status, on) in &nodes {
        assert_eq!(status, "ran", "{id}: a cold build runs everything");
        if portable(id) {
            assert_eq!(on, &farm.url, "{id} ran on the farm");
            on_farm += 1;
        } else {
            assert_eq!(on, "", "{id} stays here");
        }
    }
    assert!(on_farm > 100, "{on_farm} nodes ran on the farm: {nodes:?}");
    assert!(
        stderr.contains(&format!("ran ({on_farm} of them on the build farm)")),
        "{stderr}"
    );
    let farm_log = farm.log();
    assert_eq!(
        farm_log.matches("Execute request from").count(),
        on_farm,
        "the farm executed each of them once"
    );
    let log = fs_err::read_to_string(a.join("cache/store/logs/resolve_x86_64.log")).unwrap();
    assert!(log.contains("running on the build farm"), "{log}");
    assert!(
        log.contains("from nestos-fixture"),
        "the worker's log comes back into the node's: {log}"
    );

    let (_tb, b) = fixture_workdir();
    let (nodes, _) = os_build(&b, &[]);
    assert!(nodes.iter().all(|(_, _, on)| on.is_empty()));
    assert_eq!(
        commit_of(&a),
        commit_of(&b),
        "the farm's commit equals a local build's"
    );
}
