//! Shared helpers for the end-to-end tests: a temporary workdir, running the real `nosa`
//! binary, and reading its JSON summary as an execution log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary workdir with a `nestos.build.toml`.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

/// The outcome of one `nosa graph build --json`.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// node id -> status, from the summary line.
    pub status: BTreeMap<String, String>,
}

impl Run {
    /// The summary line (the last line of stdout), parsed.
    pub fn summary(&self) -> serde_json::Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("summary line {last:?}: {e}; stderr: {}", self.stderr))
    }

    /// Sorted ids with `status`.
    pub fn ids(&self, status: &str) -> Vec<String> {
        self.status
            .iter()
            .filter(|(_, s)| s.as_str() == status)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

pub fn nosa_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nosa"))
}

impl Workdir {
    /// A workdir whose build file is `toml`, with `files` (path, content) written.
    pub fn new(toml: &str, files: &[(&str, &str)]) -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Workdir { dir };
        w.write("nestos.build.toml", toml);
        for (p, c) in files {
            w.write(p, c);
        }
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs_err::read_to_string(self.path().join(rel)).unwrap()
    }

    /// `nosa ARGS` in the workdir, no colour, no stdin.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(nosa_bin());
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run nosa")
    }

    /// `nosa graph build --json ARGS`, parsed.
    pub fn build(&self, args: &[&str]) -> Run {
        let mut full = vec!["graph", "build", "--json"];
        full.extend_from_slice(args);
        let out = self.output(&full);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut status = BTreeMap::new();
        let last = stdout.lines().last().unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(last) {
            assert_eq!(v["event"], "summary", "last line is the summary: {last}");
            for n in v["nodes"].as_array().expect("nodes") {
                status.insert(
                    n["id"].as_str().unwrap().to_string(),
                    n["status"].as_str().unwrap().to_string(),
                );
            }
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            status,
        }
    }
}

/// Asserts an execution log: each listed node has the listed status; every node not listed
/// must have `rest` status.
#[track_caller]
pub fn expect_log(run: &Run, expect: &[(&str, &str)], rest: &str) {
    let mut want: BTreeMap<String, String> = run
        .status
        .keys()
        .map(|k| (k.clone(), rest.to_string()))
        .collect();
    for (id, s) in expect {
        want.insert(id.to_string(), s.to_string());
    }
    assert_eq!(
        run.status, want,
        "execution log differs\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

use nosa_testkit::{copy_dir, workspace_root};

/// A workdir made by `nosa init` from a copy of examples/ (returns the temp root and the
/// workdir; the config copy is `<root>/example-config`, linked as `src/config`).
pub fn example_workdir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("example-config");
    copy_dir(&workspace_root().join("examples"), &src);
    let w = tmp.path().join("work");
    fs_err::create_dir_all(&w).unwrap();
    let out = nosa(&w, &["init", src.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (tmp, w)
}

/// `out`, after asserting it succeeded (`what` and both streams in the failure).
pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// `nosa ARGS` in `dir`, no colour, no stdin.
pub fn nosa(dir: &Path, args: &[&str]) -> Output {
    Command::new(nosa_bin())
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The summary line of `nosa graph build --json` output, as node id -> status.
pub fn summary(out: &Output) -> BTreeMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "summary line; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// [`example_workdir`] with the fixture distro's repository linked where the example's `.repo`
/// file expects it (`$nosa_workdir/fixtures/out/repo`). Fails when the fixture distro is not
/// built, naming the command that builds it.
pub fn fixture_workdir() -> (tempfile::TempDir, PathBuf) {
    let repo = workspace_root().join("fixtures/out/repo");
    assert!(
        repo.join("x86_64/repodata/repomd.xml").is_file(),
        "{} is missing: run `cargo xtask fixture-distro` (make test does)",
        repo.display()
    );
    let (tmp, w) = example_workdir();
    fs_err::create_dir_all(w.join("fixtures/out")).unwrap();
    std::os::unix::fs::symlink(&repo, w.join("fixtures/out/repo")).unwrap();
    (tmp, w)
}

/// coreos-assembler's meta.json schema, when the reference tree beside the repository
/// (`../shared/reference/cosa/nestos-assembler/v1.json`) has it; it is not part of the project.
pub fn v1_schema() -> Option<serde_json::Value> {
    let p = workspace_root().join("../shared/reference/cosa/nestos-assembler/v1.json");
    let bytes = fs_err::read(p).ok()?;
    Some(serde_json::from_slice(&bytes).expect("v1.json is JSON"))
}

/// Whether `doc` is valid for `schema` (draft 7).
pub fn schema_valid(schema: &serde_json::Value, doc: &serde_json::Value) -> bool {
    jsonschema::draft7::new(schema)
        .expect("v1.json is a draft-07 schema")
        .is_valid(doc)
}

/// What is wrong with `meta` (a build's meta.json): always nosa's own check of v1's rules and
/// its stricter ones (`nosa_build::meta_check`, the check `nosa meta --set` runs, compared
/// with the real schema by `lifecycle_cli`'s reference test), and the schema's own errors
/// when the schema is there.
pub fn v1_meta_errors(meta: &serde_json::Value) -> Vec<String> {
    let mut errors: Vec<String> = nosa_build::meta_check::check(meta)
        .iter()
        .map(ToString::to_string)
        .collect();
    if let Some(schema) = v1_schema() {
        let v = jsonschema::draft7::new(&schema).expect("v1.json is a draft-07 schema");
        errors.extend(
            v.iter_errors(meta)
                .map(|e| format!("schema: {e} (at {})", e.instance_path())),
        );
    }
    errors
}

/// The build ids of `<workdir>/builds/builds.json`, newest first.
pub fn listed_builds(w: &Path) -> Vec<String> {
    let text = fs_err::read_to_string(w.join("builds/builds.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}
