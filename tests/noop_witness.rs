//! The no-op witness through the real `nosa` binary: once a build found everything cached, the
//! next identical build is answered from the witness, and every change that matters (an input,
//! a new glob match, a materialized output, the build file, the store, the binary, a killed
//! build) makes the build fall back to the normal path and do what it would have done anyway.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use common::{Workdir, summary};

const GRAPH: &str = r#"
[[step]]
name = "a"
inputs = ["in/a.txt"]
run = "cat in/a.txt > a.out"
outputs = ["a.out"]

[[step]]
name = "b"
inputs = ["in/b.txt"]
run = "cat in/b.txt > b.out"
outputs = ["b.out"]

[[step]]
name = "d"
run = "cat a.out b.out > d.out"
outputs = ["d.out"]
deps = ["a", "b"]

[[step]]
name = "e"
inputs = ["in/e/*.txt", "in/dir"]
run = "cat in/e/*.txt > e.out; ls in/dir >> e.out"
outputs = ["e.out"]
"#;

const WITNESS: &str = "cache/store/state/noop.bin";

/// The timing line printed when a build is answered from the witness.
const HOLDS: &str = "witness holds";

/// The stat cache and the witness refuse files modified within 2 s of a build.
fn age() {
    std::thread::sleep(Duration::from_millis(2100));
}

struct Build {
    out: Output,
    status: BTreeMap<String, String>,
    /// Answered from the witness.
    witnessed: bool,
}

impl Build {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Node ids with `status`.
    fn with(&self, status: &str) -> Vec<&str> {
        self.status
            .iter()
            .filter(|(_, s)| s.as_str() == status)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    #[track_caller]
    fn all_cached(&self) {
        assert_eq!(
            self.status.len(),
            self.with("cached").len(),
            "not all cached: {:?}\n{}",
            self.status,
            String::from_utf8_lossy(&self.out.stderr)
        );
    }
}

fn build_with(w: &Workdir, bin: Option<&std::path::Path>, args: &[&str]) -> Build {
    let mut full = vec!["graph", "build", "--json"];
    full.extend_from_slice(args);
    let mut cmd = w.cmd(&full);
    if let Some(bin) = bin {
        cmd = {
            let mut c = std::process::Command::new(bin);
            c.args(&full)
                .current_dir(w.path())
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null());
            c
        };
    }
    finished(cmd.env("NOSA_TIMINGS", "1").output().expect("run nosa"))
}

/// A successful build's output, read.
fn finished(out: Output) -> Build {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = summary(&out);
    let witnessed = String::from_utf8_lossy(&out.stderr).contains(HOLDS);
    Build {
        out,
        status,
        witnessed,
    }
}

fn build(w: &Workdir) -> Build {
    build_with(w, None, &[])
}

/// A workdir built once, aged, then built again (a no-op that leaves a witness), and checked
/// to answer a third build from that witness.
fn witnessed() -> Workdir {
    let w = Workdir::new(
        GRAPH,
        &[
            ("in/a.txt", "a\n"),
            ("in/b.txt", "b\n"),
            ("in/e/1.txt", "one\n"),
            ("in/dir/sub/x", "x\n"),
        ],
    );
    let first = build(&w);
    assert_eq!(first.with("ran").len(), 4, "{:?}", first.status);
    age();
    let second = build(&w);
    second.all_cached();
    assert!(!second.witnessed, "no witness yet");
    assert!(w.path().join(WITNESS).is_file(), "a no-op leaves a witness");
    let third = build(&w);
    third.all_cached();
    assert!(third.witnessed, "the witness holds");
    w
}

#[test]
fn witness_answers_like_the_normal_build() {
    let w = witnessed();
    // The same JSON lines as a normal no-op build, up to the summary's wall time.
    fs_err::remove_file(w.path().join(WITNESS)).unwrap();
    let normal = build(&w);
    assert!(!normal.witnessed);
    let fast = build(&w);
    assert!(fast.witnessed);
    assert!(
        String::from_utf8_lossy(&fast.out.stderr).contains("witness holds (front)"),
        "the front program answered, without loading nosa-core"
    );
    let strip_ms = |s: String| -> Vec<String> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if v["event"] == "summary" {
                    v["ms"] = 0.into();
                }
                v.to_string()
            })
            .collect()
    };
    let (a, b) = (strip_ms(normal.stdout()), strip_ms(fast.stdout()));
    assert_eq!(a.len(), 5, "four node lines and the summary: {a:?}");
    assert_eq!(a, b);
    // Without --json: the same closing line, nothing on stdout.
    let out = w.output(&["graph", "build"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 nodes: 0 ran, 4 cached, 0 cut off"));
    // A different selection is not answered from this witness.
    let one = build_with(&w, None, &["a"]);
    assert!(!one.witnessed);
    assert_eq!(one.with("cached"), ["step:a"]);
}

#[test]
fn edited_input_is_detected() {
    let w = witnessed();
    w.write("in/b.txt", "bee\n");
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran"), ["step:b", "step:d"]);
    assert_eq!(w.read("d.out"), "a\nbee\n");
}

#[test]
fn same_size_edit_is_detected() {
    let w = witnessed();
    w.write("in/a.txt", "z\n");
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran"), ["step:a", "step:d"]);
}

#[test]
fn new_glob_match_is_detected() {
    let w = witnessed();
    w.write("in/e/2.txt", "two\n");
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran"), ["step:e"]);
    assert_eq!(w.read("e.out"), "one\ntwo\nsub\n");
}

#[test]
fn new_file_in_an_input_directory_is_detected() {
    let w = witnessed();
    w.write("in/dir/sub/y", "y\n");
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran"), ["step:e"]);
}

#[test]
fn deleted_or_edited_output_is_restored() {
    let w = witnessed();
    fs_err::remove_file(w.path().join("d.out")).unwrap();
    let r = build(&w);
    assert!(!r.witnessed);
    r.all_cached();
    assert_eq!(w.read("d.out"), "a\nb\n");
    w.write("a.out", "tampered\n");
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(w.read("a.out"), "a\n");
}

#[test]
fn touch_with_same_content_falls_back_and_runs_nothing() {
    let w = witnessed();
    let f = fs_err::File::options()
        .append(true)
        .open(w.path().join("in/a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let r = build(&w);
    assert!(!r.witnessed, "a new stamp is not trusted");
    r.all_cached();
}

#[test]
fn edited_build_file_is_detected() {
    let w = witnessed();
    w.write(
        "nestos.build.toml",
        &GRAPH.replace("cat in/b.txt > b.out", "tr b B < in/b.txt > b.out"),
    );
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran"), ["step:b", "step:d"]);
    assert_eq!(w.read("d.out"), "a\nB\n");
}

#[test]
fn prune_and_deleted_action_records_are_detected() {
    let w = witnessed();
    let out = w.output(&["prune"]);
    assert!(out.status.success());
    assert!(!w.path().join(WITNESS).exists(), "prune drops the witness");
    let r = build(&w);
    assert!(!r.witnessed);
    r.all_cached();
    // The witness is back; now remove an action record behind nosa's back.
    age();
    build(&w);
    assert!(build(&w).witnessed);
    let ac = w.path().join("cache/store/ac");
    let record = walkdir::WalkDir::new(&ac)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_file())
        .unwrap();
    fs_err::remove_file(record.path()).unwrap();
    let r = build(&w);
    assert!(!r.witnessed);
    assert_eq!(r.with("ran").len(), 1, "{:?}", r.status);
}

/// Copies the front program and `nosa-core` (its neighbour) into `dir`; returns the front.
fn copy_programs(dir: &std::path::Path) -> std::path::PathBuf {
    let front = common::nosa_bin();
    let core = front.with_file_name("nosa-core");
    fs_err::copy(&core, dir.join("nosa-core")).unwrap();
    fs_err::copy(&front, dir.join("nosa")).unwrap();
    dir.join("nosa")
}

#[test]
fn another_nosa_binary_does_not_trust_the_witness() {
    let w = witnessed();
    let tmp = tempfile::tempdir().unwrap();
    let copy = copy_programs(tmp.path());
    let r = build_with(&w, Some(&copy), &[]);
    assert!(!r.witnessed);
    r.all_cached();
    // That all-cached build left the copied pair's own witness, which it trusts; a replaced
    // nosa-core behind the same front does not.
    age();
    let r = build_with(&w, Some(&copy), &[]);
    assert!(r.witnessed, "the copied pair trusts its own witness");
    let core = tmp.path().join("nosa-core");
    let bytes = fs_err::read(&core).unwrap();
    fs_err::remove_file(&core).unwrap();
    fs_err::write(&core, bytes).unwrap();
    fs_err::set_permissions(&core, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = build_with(&w, Some(&copy), &[]);
    assert!(!r.witnessed, "a new nosa-core");
    r.all_cached();
}

#[test]
fn a_killed_build_leaves_no_witness() {
    let w = witnessed();
    w.write(
        "nestos.build.toml",
        &GRAPH.replace("cat in/a.txt > a.out", "sleep 30; cat in/a.txt > a.out"),
    );
    let mut child = w
        .cmd(&["graph", "build"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The build is under way (it drops the witness first thing) when it is killed.
    let started = std::time::Instant::now();
    while w.path().join(WITNESS).exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!w.path().join(WITNESS).exists());
    w.write("nestos.build.toml", GRAPH);
    let r = build(&w);
    assert!(!r.witnessed);
    r.all_cached();
}

/// `nosa ARGS` in the example workdir `w` with timings on and `path` as `PATH`.
fn example_build(w: &std::path::Path, path: &std::ffi::OsStr, args: &[&str]) -> Build {
    let out = std::process::Command::new(common::nosa_bin())
        .args(args)
        .arg("--json")
        .current_dir(w)
        .env("NO_COLOR", "1")
        .env("NOSA_TIMINGS", "1")
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run nosa");
    finished(out)
}

/// A `[nestos]` workdir (the example on the fixture distro): `nosa build` and `nosa graph
/// build` no-ops are answered from the witness, with the same output as the normal no-op,
/// and what the graph and the record rest on outside the engine (the config tree, builds/,
/// a local gpgkey file, a host tool whose version enters a key, PATH) breaks it.
#[test]
fn an_example_workdir_no_op_is_answered_from_its_witness() {
    let (tmp, w) = common::fixture_workdir();
    // `rpm` through a wrapper, to change its version later.
    let tools = tmp.path().join("tools");
    fs_err::create_dir_all(&tools).unwrap();
    let rpm = tools.join("rpm");
    let wrapper = |version: &str| {
        let body = if version.is_empty() {
            "#!/bin/sh\nexec /usr/bin/rpm \"$@\"\n".to_string()
        } else {
            format!(
                "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'RPM version {version}'; exit 0; }}\nexec /usr/bin/rpm \"$@\"\n"
            )
        };
        fs_err::write(&rpm, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&rpm, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    wrapper("");
    let mut dirs = vec![tools.clone()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(&dirs).unwrap();
    let b = |args: &[&str]| example_build(&w, &path, args);
    let stderr = |b: &Build| String::from_utf8_lossy(&b.out.stderr).into_owned();
    const UNCHANGED: &str = "unchanged: the input hash";
    // Built, aged, a no-op that leaves a witness, then one answered from it.
    let first = b(&["build"]);
    assert!(stderr(&first).contains("new build "), "{}", stderr(&first));
    age();
    let again = || {
        let normal = b(&["build"]);
        normal.all_cached();
        assert!(!normal.witnessed, "{}", stderr(&normal));
        assert!(stderr(&normal).contains(UNCHANGED));
        let fast = b(&["build"]);
        fast.all_cached();
        assert!(
            stderr(&fast).contains("witness holds (front)"),
            "the front answered: {}",
            stderr(&fast)
        );
        assert!(stderr(&fast).contains(UNCHANGED), "{}", stderr(&fast));
        assert_eq!(fast.status, normal.status, "the same nodes, all cached");
        normal
    };
    let normal = again();
    assert!(normal.status.len() > 40, "{:?}", normal.status);

    let broken = |r: &Build, what: &str| {
        assert!(!r.witnessed, "{what}: {}", stderr(r));
        assert!(
            stderr(r).contains("witness broken by"),
            "{what}: the witness was found and broken: {}",
            stderr(r)
        );
    };
    // A file in the config tree that no node reads: the graph might have changed.
    let config = tmp.path().join("example-config");
    fs_err::write(config.join("NOTES"), "not read by anything\n").unwrap();
    let r = b(&["build"]);
    broken(&r, "a new config file");
    r.all_cached();
    age();
    again();
    // The config link re-pointed at a copy of the same tree.
    let copy = tmp.path().join("config-copy");
    nosa_testkit::copy_dir(&config, &copy);
    let link = w.join("src/config");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    fs_err::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    let r = b(&["build"]);
    broken(&r, "a re-pointed config link");
    r.all_cached();
    age();
    again();
    // An object of the recorded commit's repository, deleted: put back by the record.
    let objects = w.join("builds/latest/x86_64/ostree-commit/repo/objects");
    let object = walkdir_first_file(&objects);
    fs_err::remove_file(&object).unwrap();
    let r = b(&["build"]);
    broken(&r, "a deleted builds/ file");
    r.all_cached();
    assert!(object.is_file(), "the record put it back");
    age();
    again();
    // The repository's local gpgkey file touched (its content is in repo-keys' key): the
    // witness breaks, and the same bytes leave everything cached.
    let key = w.join("fixtures/out/repo/RPM-GPG-KEY-nosa-fixture");
    fs_err::File::options()
        .append(true)
        .open(&key)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let r = b(&["build"]);
    broken(&r, "a touched gpgkey file");
    r.all_cached();
    age();
    again();
    // Another `rpm` version: the rpm database node's key changed.
    wrapper("9.9.9");
    let r = b(&["build"]);
    broken(&r, "another rpm");
    assert_eq!(r.with("ran"), ["rpmdb:x86_64"], "{:?}", r.status);
    age();
    again();
    // `nosa graph build` has a witness of its own (a workdir keeps one: the last).
    let g = b(&["graph", "build"]);
    assert!(!g.witnessed);
    age();
    assert!(!b(&["graph", "build"]).witnessed);
    assert!(b(&["graph", "build"]).witnessed);
    assert!(!b(&["build"]).witnessed);
    // Another PATH: another witness key.
    let mut shorter = dirs.clone();
    shorter.insert(1, tmp.path().join("empty"));
    let other = std::env::join_paths(&shorter).unwrap();
    let r = example_build(&w, &other, &["build"]);
    assert!(!r.witnessed && !stderr(&r).contains("witness broken by"));
    r.all_cached();
}

/// Some file under `dir`.
fn walkdir_first_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                return p;
            }
        }
    }
    panic!("no file under {}", dir.display());
}
