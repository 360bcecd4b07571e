//! End-to-end tests of the engine through the real `nosa` binary on `[[step]]` workdirs: each
//! scenario asserts the execution log (which nodes ran, were cached or were cut off).

mod common;

use common::{Workdir, expect_log};

const GRAPH: &str = r#"
[[step]]
name = "a"
inputs = ["in/a.txt"]
run = "tr -d ' ' < in/a.txt > a.out"
outputs = ["a.out"]

[[step]]
name = "b"
inputs = ["in/b.txt"]
run = "cat in/b.txt > b.out"
outputs = ["b.out"]

[[step]]
name = "c"
run = "cat a.out > c.out; echo c >> c.out"
outputs = ["c.out"]
deps = ["a"]

[[step]]
name = "d"
run = "cat b.out c.out > d.out"
outputs = ["d.out"]
deps = ["b", "c"]

[[step]]
name = "e"
inputs = ["in/e/*.txt"]
run = "cat in/e/*.txt > e.out"
outputs = ["e.out"]
"#;

fn workdir() -> Workdir {
    Workdir::new(
        GRAPH,
        &[
            ("in/a.txt", "a b c\n"),
            ("in/b.txt", "bee\n"),
            ("in/e/1.txt", "one\n"),
        ],
    )
}

/// One step of a scenario: an edit, then the expected execution log of the next build.
enum Act<'a> {
    Write(&'a str, &'a str),
    Remove(&'a str),
    Touch(&'a str),
    Build(&'a [(&'a str, &'a str)], &'a str),
}

fn check(script: &[Act<'_>]) -> Workdir {
    let w = workdir();
    let first = w.build(&[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    expect_log(&first, &[], "ran");
    for act in script {
        match act {
            Act::Write(p, c) => w.write(p, c),
            Act::Remove(p) => fs_err::remove_file(w.path().join(p)).unwrap(),
            Act::Touch(p) => {
                let f = fs_err::File::options()
                    .append(true)
                    .open(w.path().join(p))
                    .unwrap();
                f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
                    .unwrap();
            }
            Act::Build(expect, rest) => {
                let r = w.build(&[]);
                assert_eq!(r.code, 0, "{}", r.stderr);
                expect_log(&r, expect, rest);
            }
        }
    }
    w
}

#[test]
fn second_build_runs_nothing() {
    let w = check(&[Act::Build(&[], "cached")]);
    assert_eq!(w.read("d.out"), "bee\nabc\nc\n");
}

#[test]
fn changed_input_reruns_exactly_its_downstream() {
    let w = check(&[
        Act::Write("in/b.txt", "bumble\n"),
        Act::Build(&[("step:b", "ran"), ("step:d", "ran")], "cached"),
    ]);
    assert_eq!(w.read("d.out"), "bumble\nabc\nc\n");
}

#[test]
fn identical_output_cuts_off_dependents() {
    // Spaces are stripped by a: it reruns, its output is the same, c is cut off, d untouched.
    check(&[
        Act::Write("in/a.txt", "a  b  c\n"),
        Act::Build(&[("step:a", "ran"), ("step:c", "cutoff")], "cached"),
    ]);
}

#[test]
fn mtime_only_change_runs_nothing() {
    check(&[Act::Touch("in/a.txt"), Act::Build(&[], "cached")]);
}

#[test]
fn glob_match_added_and_removed() {
    check(&[
        Act::Write("in/e/2.txt", "two\n"),
        Act::Build(&[("step:e", "ran")], "cached"),
        Act::Remove("in/e/2.txt"),
        // Back to the first state: found in the action cache, not rerun.
        Act::Build(&[], "cached"),
    ]);
}

#[test]
fn reverted_edit_is_restored_from_the_cache() {
    let w = check(&[
        Act::Write("in/b.txt", "other\n"),
        Act::Build(&[("step:b", "ran"), ("step:d", "ran")], "cached"),
        Act::Write("in/b.txt", "bee\n"),
        Act::Build(&[], "cached"),
    ]);
    assert_eq!(
        w.read("d.out"),
        "bee\nabc\nc\n",
        "materialized output restored"
    );
}

#[test]
fn changed_command_reruns_that_step() {
    let w = workdir();
    assert_eq!(w.build(&[]).code, 0);
    w.write(
        "nestos.build.toml",
        &GRAPH.replace("echo c >> c.out", "echo C >> c.out"),
    );
    let r = w.build(&[]);
    expect_log(&r, &[("step:c", "ran"), ("step:d", "ran")], "cached");
    let why = w.output(&["graph", "why", "step:c", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    assert_eq!(v["reasons"][0]["kind"], "param-changed");
    assert_eq!(v["reasons"][0]["name"], "run");
}

#[test]
fn deleted_output_in_workdir_is_restored_without_rerun() {
    let w = workdir();
    assert_eq!(w.build(&[]).code, 0);
    fs_err::remove_file(w.path().join("c.out")).unwrap();
    w.write("d.out", "tampered");
    let r = w.build(&[]);
    expect_log(&r, &[], "cached");
    assert_eq!(w.read("c.out"), "abc\nc\n");
    assert_eq!(w.read("d.out"), "bee\nabc\nc\n");
}

#[test]
fn why_names_the_root_cause_file() {
    let w = workdir();
    assert_eq!(w.build(&[]).code, 0);
    w.write("in/a.txt", "x y\n");
    // Before building: would run now.
    let now = w.output(&["graph", "why", "step:d", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&now.stdout).unwrap();
    assert_eq!(v["state"], "may-run");
    assert_eq!(v["root_causes"][0]["node"], "step:a");
    assert_eq!(v["root_causes"][0]["kind"], "input-changed");
    assert_eq!(v["root_causes"][0]["name"], "in/a.txt");
    assert_eq!(w.build(&[]).code, 0);
    let after = w.output(&["graph", "why", "step:d", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(v["node"], "step:d");
    assert_eq!(v["state"], "ran");
    assert_eq!(v["reasons"][0]["kind"], "dependency-changed");
    assert_eq!(v["reasons"][0]["name"], "step:c");
    let rc = &v["root_causes"][0];
    assert_eq!(rc["node"], "step:a");
    assert_eq!(rc["name"], "in/a.txt");
    assert_ne!(rc["old"], rc["new"]);
    let text = w.output(&["graph", "why", "step:d"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("step:a: file in/a.txt changed (blake3 "),
        "{text}"
    );
}

#[test]
fn plan_runs_nothing_and_says_what_would_run() {
    let w = workdir();
    let out = w.output(&["graph", "plan", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"], 3, "a, b, e have no deps and were never built");
    assert_eq!(v["may_run"], 2);
    assert!(!w.path().join("a.out").exists(), "plan ran nothing");
    assert_eq!(w.build(&[]).code, 0);
    let out = w.output(&["graph", "plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["up_to_date"], 5);
}

#[test]
fn undeclared_input_fails_instead_of_going_stale() {
    let w = Workdir::new(
        r#"
[[step]]
name = "sneaky"
inputs = ["in/declared.txt"]
run = "cat in/declared.txt in/secret.txt > out.txt"
outputs = ["out.txt"]
"#,
        &[("in/declared.txt", "ok\n"), ("in/secret.txt", "secret\n")],
    );
    let r = w.build(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    expect_log(&r, &[], "failed");
    assert!(r.stderr.contains("step:sneaky"), "{}", r.stderr);
    assert!(
        r.stderr.contains("log: cache/store/logs/step_sneaky.log"),
        "{}",
        r.stderr
    );
    let log = w.read("cache/store/logs/step_sneaky.log");
    assert!(log.contains("in/secret.txt"), "{log}");
}

#[test]
fn missing_declared_output_is_an_error() {
    let w = Workdir::new(
        r#"
[[step]]
name = "lazy"
run = "true"
outputs = ["never.txt"]
"#,
        &[],
    );
    let r = w.build(&[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("did not produce its declared output never.txt"),
        "{}",
        r.stderr
    );
}

#[test]
fn failure_stops_dependents_and_keep_going_finishes_the_rest() {
    let toml = r#"
[[step]]
name = "bad"
run = "exit 3"
outputs = []

[[step]]
name = "after-bad"
run = "echo > x"
outputs = ["x"]
deps = ["bad"]

[[step]]
name = "independent"
run = "sleep 0.2; echo > y"
outputs = ["y"]
"#;
    let w = Workdir::new(toml, &[]);
    let r = w.build(&["-j", "1", "--keep-going"]);
    assert_eq!(r.code, 1);
    expect_log(
        &r,
        &[("step:bad", "failed"), ("step:independent", "ran")],
        "none",
    );
    assert!(!r.status.contains_key("step:after-bad"), "skipped, not run");
    assert!(r.stdout.contains(r#""skipped":1"#), "{}", r.stdout);
    assert!(
        r.stderr.contains("exited with exit status: 3"),
        "{}",
        r.stderr
    );
}

#[test]
fn prune_drops_unreachable_outputs_and_keeps_current_ones() {
    let w = workdir();
    assert_eq!(w.build(&[]).code, 0);
    w.write("in/b.txt", "second\n");
    assert_eq!(w.build(&[]).code, 0);
    let out = w.output(&["prune", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["removed_actions"], 2, "old b and old d: {v}");
    assert!(v["freed_bytes"].as_u64().unwrap() > 0);
    let r = w.build(&[]);
    expect_log(&r, &[], "cached");
    // The pruned state is really gone: going back reruns.
    w.write("in/b.txt", "bee\n");
    let r = w.build(&[]);
    expect_log(&r, &[("step:b", "ran"), ("step:d", "ran")], "cached");
}

/// A builds/ directory in coreos-assembler's form with builds `ids` (newest first), each
/// with an x86_64 meta.json; `more` is appended to builds.json's top-level object.
fn write_builds(w: &Workdir, ids: &[&str], more: &str) {
    for id in ids {
        w.write(&format!("builds/{id}/x86_64/meta.json"), "{}\n");
    }
    let entries: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id":"{id}","arches":["x86_64"]}}"#))
        .collect();
    w.write(
        "builds/builds.json",
        &format!(
            r#"{{"schema-version":"1.0.0","builds":[{}],"timestamp":"t"{more}}}"#,
            entries.join(",")
        ),
    );
}

/// `prune --keep-last-n` on a builds/ directory in coreos-assembler's form: of 5 builds, one
/// tagged, `--keep-last-n 2` keeps 3 (the 2 newest and the tagged one); `--dry-run` removes
/// nothing; without the flag the newest 3 stay.
#[test]
fn prune_keeps_the_newest_builds_and_the_tagged_ones() {
    let w = workdir();
    let ids = ["v.4", "v.3", "v.2", "v.1", "v.0"];
    write_builds(
        &w,
        &ids,
        r#","tags":[{"name":"stable","created":"t","target":"v.1"}]"#,
    );
    let listed = |w: &Workdir| common::listed_builds(w.path());

    let out = w.output(&["prune", "--keep-last-n", "2", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would remove 2 builds (v.2, v.0), keeping the newest 2 and 1 tagged"),
        "{text}"
    );
    assert_eq!(listed(&w), ids, "a dry run removes nothing");

    // Without the flag (and no keep-last-n in the build file): the newest 3.
    let out = w.output(&["prune"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("removed 1 build (v.0), keeping the newest 3 and 1 tagged"),
        "{text}"
    );

    let out = w.output(&["prune", "--keep-last-n", "2", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["builds"]["remove"], serde_json::json!(["v.2"]), "{v}");
    assert_eq!(listed(&w), ["v.4", "v.3", "v.1"]);
    for (id, kept) in [
        ("v.4", true),
        ("v.3", true),
        ("v.2", false),
        ("v.1", true),
        ("v.0", false),
    ] {
        assert_eq!(w.path().join("builds").join(id).exists(), kept, "{id}");
    }
    let v: serde_json::Value = serde_json::from_str(&w.read("builds/builds.json")).unwrap();
    assert_eq!(v["tags"][0]["target"], "v.1", "tags are kept: {v}");
}

/// `nosa tag` edits builds.json's tags in coreos-assembler's form: update (the latest by
/// default, a named build, moving a tag), refusing an unknown build without `--force`,
/// list, delete; `prune` then keeps the tagged build and drops it once untagged.
#[test]
fn tags_are_updated_listed_deleted_and_protect_builds_from_prune() {
    let w = workdir();
    write_builds(&w, &["v.2", "v.1", "v.0"], "");
    std::os::unix::fs::symlink("v.2", w.path().join("builds/latest")).unwrap();
    let run = |args: &[&str]| {
        let out = w.output(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["tag", "update", "--tag", "newest"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("tagged v.2 newest"), "{err}");
    let (code, _, err) = run(&[
        "tag",
        "update",
        "--tag",
        "stable",
        "--build",
        "v.0",
        "--description",
        "for CI",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["tag", "update", "--tag", "newest", "--build", "v.1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("moved tag newest from v.2 to v.1"), "{err}");
    let (code, _, err) = run(&["tag", "update", "--tag", "x", "--build", "v.9"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("build v.9 is not in builds/builds.json"),
        "{err}"
    );

    let (_, out, _) = run(&["tag", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tags = v["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2, "{v}");
    assert_eq!(
        (tags[0]["name"].as_str(), tags[0]["target"].as_str()),
        (Some("newest"), Some("v.1"))
    );
    assert_eq!(tags[1]["description"], "for CI", "{v}");
    assert!(tags[1]["created"].as_str().unwrap().ends_with('Z'), "{v}");
    let raw: serde_json::Value = serde_json::from_str(&w.read("builds/builds.json")).unwrap();
    assert_eq!(raw["tags"], v["tags"], "builds.json holds them as listed");

    // Tagged builds stay; once untagged, prune takes them.
    let (code, _, err) = run(&["prune", "--keep-last-n", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(w.path().join("builds/v.0").exists() && w.path().join("builds/v.1").exists());
    let (code, _, err) = run(&["tag", "delete", "--tag", "stable"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("deleted tag stable (it named v.0)"), "{err}");
    let (code, _, err) = run(&["tag", "delete", "--tag", "stable"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no tag is named stable"), "{err}");
    run(&["prune", "--keep-last-n", "1"]);
    assert!(!w.path().join("builds/v.0").exists(), "untagged, it goes");
    assert!(w.path().join("builds/v.1").exists(), "still tagged newest");
}

/// `nosa list` reads builds/ as coreos-assembler writes it: id, arches, time and age, tags,
/// and each arch's artifacts with sizes.
#[test]
fn list_shows_builds_with_time_tags_and_artifacts() {
    let w = workdir();
    let meta = |id: &str, ts: &str| {
        format!(
            r#"{{"buildid":"{id}","coreos-assembler.build-timestamp":"{ts}","images":{{"qemu":{{"path":"x-qemu.qcow2","sha256":"00","size":3145728}},"ostree":{{"path":"x.ociarchive","sha256":"11","size":2048}}}}}}"#
        )
    };
    w.write(
        "builds/2.0/x86_64/meta.json",
        &meta("2.0", "2026-01-02T03:04:05Z"),
    );
    w.write(
        "builds/1.0/x86_64/meta.json",
        &meta("1.0", "2025-01-02T03:04:05Z"),
    );
    w.write(
        "builds/builds.json",
        r#"{"schema-version":"1.0.0","builds":[{"id":"2.0","arches":["x86_64"]},{"id":"1.0","arches":["x86_64"]}],"timestamp":"t","tags":[{"name":"stable","created":"t","target":"1.0"}]}"#,
    );
    let out = w.output(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("2.0 (x86_64) 2026-01-02T03:04:05Z, ")
            && lines[0].ends_with(" days ago"),
        "{text}"
    );
    assert_eq!(lines[1], "  x86_64: ostree 2.0 KiB, qemu 3.0 MiB", "{text}");
    assert!(
        lines[2].starts_with("1.0 (x86_64) 2025-01-02T03:04:05Z"),
        "{text}"
    );
    assert!(lines[2].ends_with("days ago [tags: stable]"), "{text}");

    let out = w.output(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["builds"];
    assert_eq!(b[0]["id"], "2.0", "{v}");
    assert_eq!(b[0]["artifacts"]["x86_64"]["qemu"]["size"], 3145728, "{v}");
    assert_eq!(b[1]["tags"], serde_json::json!(["stable"]), "{v}");
    let age = b[1]["age_seconds"].as_i64().unwrap();
    let newer = b[0]["age_seconds"].as_i64().unwrap();
    assert_eq!(age - newer, 365 * 86_400, "a year apart: {v}");
}

#[test]
fn show_lists_nodes_and_dot_is_graphviz() {
    let w = workdir();
    let out = w.output(&["graph", "show"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("step:d <- step:b, step:c"), "{text}");
    let dot = w.output(&["graph", "show", "--dot"]);
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph nosa {"));
    assert!(dot.contains(r#""step:a" -> "step:c";"#), "{dot}");
}

#[test]
fn workdir_is_found_from_a_subdirectory() {
    let w = workdir();
    fs_err::create_dir_all(w.path().join("in/e/deep")).unwrap();
    let out = w
        .cmd(&["graph", "build", "--json"])
        .current_dir(w.path().join("in/e/deep"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(w.path().join("d.out").exists());
}

#[test]
fn no_build_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::nosa_bin())
        .args(["graph", "build"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no nestos.build.toml"), "{err}");
    assert!(err.contains("nosa init"), "{err}");
}
