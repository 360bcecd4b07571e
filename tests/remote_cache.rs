//! The remote cache against real servers on 127.0.0.1: Debian's nginx with WebDAV PUT serving
//! Bazel's HTTP cache layout, and BuildGrid serving REAPI over gRPC. A fresh workdir elsewhere
//! gets the example's nodes from either with byte-identical artifacts; a damaged blob is
//! detected and not used; a server that dies mid-build or was never there costs one warning,
//! never the build.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Workdir, fixture_workdir, nosa_bin};
use nosa_testkit::{BuildGrid, Nginx};

/// A remote cache server the tests start.
trait Server {
    fn url(&self) -> &str;
    /// Where its CAS blobs are on disk.
    fn cas(&self) -> PathBuf;
    /// How nosa names the blob stored at `path` when it does not match its digest.
    fn blob_name(&self, path: &Path) -> String;
    fn kill(&mut self);
}

impl Server for Nginx {
    fn url(&self) -> &str {
        &self.url
    }
    fn cas(&self) -> PathBuf {
        Nginx::cas(self)
    }
    fn blob_name(&self, path: &Path) -> String {
        format!("cas/{}", path.file_name().unwrap().to_string_lossy())
    }
    fn kill(&mut self) {
        Nginx::kill(self);
    }
}

impl Server for BuildGrid {
    fn url(&self) -> &str {
        &self.url
    }
    fn cas(&self) -> PathBuf {
        BuildGrid::cas(self)
    }
    fn blob_name(&self, path: &Path) -> String {
        // objects/<aa>/<the rest of the SHA-256>
        let dir = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        let rest = path.file_name().unwrap().to_string_lossy();
        let size = fs_err::metadata(path).unwrap().len();
        format!("blobs/{dir}{rest}/{size}")
    }
    fn kill(&mut self) {
        BuildGrid::kill(self);
    }
}

/// Node id -> (status, reasons) from a `--json` run's summary and node lines.
fn statuses(stdout: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for l in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v["event"] == "node" {
            let r = v["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            reasons.insert(v["id"].as_str().unwrap().to_string(), r);
        }
        if v["event"] == "summary" {
            for n in v["nodes"].as_array().unwrap() {
                let id = n["id"].as_str().unwrap().to_string();
                let r = reasons.remove(&id).unwrap_or_default();
                out.insert(id, (n["status"].as_str().unwrap().to_string(), r));
            }
        }
    }
    out
}

/// `nosa build --json --version 42.0` in `w` with `extra` flags, at a fixed build time (so
/// that two workdirs make the same keys); asserts success.
fn build(w: &Path, extra: &[&str]) -> (BTreeMap<String, (String, Vec<String>)>, String) {
    let out = Command::new(nosa_bin())
        .args(["build", "--json", "--version", "42.0"])
        .args(extra)
        .current_dir(w)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "nosa build in {}: {stderr}",
        w.display()
    );
    (statuses(&stdout), stderr)
}

/// What must be byte-identical between two builds: the commit, its content, and the SHA-256
/// of every artifact meta.json records.
fn artifacts(w: &Path) -> BTreeMap<String, String> {
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(w.join("builds/42.0/x86_64/meta.json")).unwrap())
            .unwrap();
    let mut out = BTreeMap::new();
    for k in ["ostree-commit", "ostree-content-checksum"] {
        out.insert(k.to_string(), meta[k].as_str().unwrap().to_string());
    }
    for (name, img) in meta["images"].as_object().unwrap() {
        out.insert(
            format!("images.{name}"),
            img["sha256"].as_str().unwrap().to_string(),
        );
    }
    assert!(out.len() >= 3, "meta.json records an artifact: {meta:#}");
    out
}

fn count(s: &BTreeMap<String, (String, Vec<String>)>, status: &str) -> usize {
    s.values().filter(|(st, _)| st == status).count()
}

/// The issue's acceptance on the example, against nginx (HTTP) and BuildGrid (REAPI over
/// gRPC): workdir A builds cold and fills the cache; a fresh workdir B in another directory
/// gets at least 95 % of its nodes from it and its artifacts are byte-identical; a damaged
/// blob on the server is reported and not used (C); killing the server mid-build leaves one
/// warning and a build that finishes locally (D).
#[test]
fn a_fresh_workdir_gets_the_example_from_nginx_and_survives_damage_and_outage() {
    the_example_through(Nginx::start());
}

/// The same against BuildGrid, over gRPC.
#[test]
fn a_fresh_workdir_gets_the_example_from_buildgrid_and_survives_damage_and_outage() {
    the_example_through(BuildGrid::start());
}

fn the_example_through(mut server: impl Server) {
    let url = server.url().to_string();
    let remote = ["--remote-cache", url.as_str()];

    let (_ta, a) = fixture_workdir();
    let (s, _) = build(&a, &remote);
    assert_eq!(count(&s, "remote"), 0, "{s:?}");
    assert!(count(&s, "ran") >= 20, "a cold build runs the graph: {s:?}");
    let want = artifacts(&a);

    // B: no local store, another directory.
    let (_tb, b) = fixture_workdir();
    let (s, stderr) = build(&b, &remote);
    let ran: Vec<&String> = s
        .iter()
        .filter(|(_, (st, _))| st == "ran")
        .map(|(id, _)| id)
        .collect();
    let from_remote = count(&s, "remote");
    assert!(
        from_remote * 100 >= s.len() * 95,
        "{from_remote} of {} nodes came from the remote; these ran: {ran:?}\n{stderr}",
        s.len()
    );
    assert!(
        stderr.contains(&format!("remote cache {url}")),
        "the build reports what the remote moved: {stderr}"
    );
    assert_eq!(artifacts(&b), want, "B's artifacts equal A's");
    // A node of the build's first stage, found again in later stages, is still explained.
    let why = Command::new(nosa_bin())
        .args(["graph", "why", "resolve:x86_64"])
        .current_dir(&b)
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.starts_with("resolve:x86_64 came from the remote cache in the last build"),
        "{why}"
    );
    // What came from the remote is in B's store now: the next build is all cached.
    let (s, _) = build(&b, &remote);
    assert_eq!(count(&s, "cached"), s.len(), "{s:?}");
    drop(_tb); // each workdir's store is ~1.5 GB

    // C: one byte of the largest blob flipped on the server.
    let largest = walkdir::WalkDir::new(server.cas())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .into_path();
    let mut bytes = fs_err::read(&largest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs_err::write(&largest, &bytes).unwrap();
    let name = server.blob_name(&largest);
    let (_tc, c) = fixture_workdir();
    let (s, stderr) = build(&c, &remote);
    let damaged: Vec<&String> = s
        .iter()
        .filter(|(_, (st, r))| st == "ran" && r.iter().any(|r| r.contains("unusable entry")))
        .map(|(id, _)| id)
        .collect();
    assert!(
        !damaged.is_empty() && stderr.contains(&format!("{name} does not match its digest")),
        "the damaged blob is reported and its nodes ran: {s:?}\n{stderr}"
    );
    assert_eq!(artifacts(&c), want, "C's artifacts equal A's");
    drop(_tc);

    // D: the server killed once the first node came from it.
    let (_td, d) = fixture_workdir();
    let mut child = Command::new(nosa_bin())
        .args(["build", "--json", "--version", "42.0"])
        .args(remote)
        .current_dir(&d)
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if !killed && line.contains("\"status\":\"remote\"") {
            server.kill();
            killed = true;
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        killed,
        "no node came from the remote before the kill: {stdout}"
    );
    assert!(out.status.success(), "{stderr}");
    let s = statuses(&stdout);
    assert!(count(&s, "remote") >= 1 && count(&s, "ran") >= 1, "{s:?}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("building locally from here on"))
        .count();
    assert_eq!(warnings, 1, "one warning for the outage: {stderr}");
    assert_eq!(artifacts(&d), want, "D's artifacts equal A's");
}

const STEPS: &str = r#"
[[step]]
name = "gen"
inputs = ["in.txt"]
run = "mkdir -p out && tr a-z A-Z < in.txt > out/up.txt && head -c 300000 /dev/zero > out/zeros && seq 1000000 > out/seq"
outputs = ["out"]

[[step]]
name = "use"
deps = ["gen"]
run = "mkdir -p final && wc -c out/up.txt out/zeros > final/wc.txt"
outputs = ["final"]
"#;

/// Steps through the remote: `[cache]` in the build file (read-write), then a second workdir
/// with the same file gets both steps from it with the same outputs (`out/seq`, 6.9 MB, goes
/// through ByteStream over gRPC); `--no-remote` leaves it alone; a `read-only` remote is not
/// written to.
#[test]
fn steps_come_from_the_build_files_remote_and_read_only_writes_nothing() {
    steps_through(&Nginx::start());
}

/// The same against BuildGrid, over gRPC.
#[test]
fn steps_come_from_buildgrid_and_read_only_writes_nothing() {
    steps_through(&BuildGrid::start());
}

fn steps_through(server: &impl Server) {
    let url = server.url();
    let toml = format!("[cache]\nremote = \"{url}\"\n{STEPS}");
    let a = Workdir::new(&toml, &[("in.txt", "hello\n")]);
    let r = a.build(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stdout);

    let b = Workdir::new(&toml, &[("in.txt", "hello\n")]);
    let r = b.build(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.ids("remote"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(b.read("final/wc.txt"), a.read("final/wc.txt"));
    assert_eq!(b.read("out/up.txt"), "HELLO\n");
    assert_eq!(b.read("out/seq"), a.read("out/seq"));
    let why = b.output(&["graph", "why", "step:use"]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.starts_with("step:use came from the remote cache in the last build"),
        "{why}"
    );

    // Early cutoff across machines: an input never built anywhere that gives gen the output
    // A's gen gave; gen runs here, and use, whose key holds gen's output digest, is A's entry.
    let e = Workdir::new(&toml, &[("in.txt", "HELLO\n")]);
    let r = e.build(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.ids("ran"), ["step:gen"], "{}", r.stderr);
    assert_eq!(r.ids("remote"), ["step:use"], "{}", r.stderr);
    assert_eq!(e.read("final/wc.txt"), a.read("final/wc.txt"));

    // --no-remote: a third workdir runs everything.
    let c = Workdir::new(&toml, &[("in.txt", "hello\n")]);
    let r = c.build(&["--no-remote"]);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);

    // read-only: a changed input runs, `why` names the remote miss, and nothing is written.
    let ro = format!("[cache]\nremote = \"{url}\"\nread-only = true\n{STEPS}");
    let before = walkdir::WalkDir::new(server.cas()).into_iter().count();
    let d = Workdir::new(&ro, &[("in.txt", "other\n")]);
    let r = d.build(&[]);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(
        walkdir::WalkDir::new(server.cas()).into_iter().count(),
        before,
        "a read-only remote got uploads"
    );
    let why = d.output(&["graph", "why", "step:gen"]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.contains(&format!("not in the remote cache {url}")),
        "{why}"
    );
}

/// A remote that is not there, over either protocol: one warning, a local build.
#[test]
fn an_unreachable_remote_costs_one_warning() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("grpc://127.0.0.1:{port}"),
    ] {
        let toml = format!("[cache]\nremote = \"{url}\"\n{STEPS}");
        let w = Workdir::new(&toml, &[("in.txt", "hello\n")]);
        let r = w.build(&[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.ids("ran"), ["step:gen", "step:use"]);
        assert_eq!(
            r.stderr.matches("building locally from here on").count(),
            1,
            "{url}: {}",
            r.stderr
        );
    }
}

/// `[cache]` mistakes are refused where they are written, with the fix: a scheme nosa does
/// not speak, and gRPC settings on an HTTP cache.
#[test]
fn cache_table_mistakes_are_refused_at_their_line() {
    for (table, line, want) in [
        (
            "remote = \"ftp://127.0.0.1:1\"",
            2,
            "a remote cache URL starts with",
        ),
        (
            "remote = \"http://127.0.0.1:1/x\"\ninstance = \"main\"",
            3,
            "instance and tls-roots are for grpc:// and grpcs:// remotes",
        ),
        (
            "remote = \"http://127.0.0.1:1/x\"\nexecute = true",
            3,
            "remote execution needs an REAPI server",
        ),
        (
            "remote = \"grpc://127.0.0.1:1\"\ntls-roots = \"ca.pem\"",
            3,
            "tls-roots is for grpcs:// remotes",
        ),
    ] {
        let toml = format!("[cache]\n{table}\n{STEPS}");
        let w = Workdir::new(&toml, &[("in.txt", "hello\n")]);
        let out = w.output(&["graph", "plan"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(want) && stderr.contains(&format!("nestos.build.toml:{line}")),
            "{table}: {stderr}"
        );
    }
}

/// REAPI over TLS with an instance name: `grpcs://`, `tls-roots` naming the server's CA and
/// `instance` in the build file carry a step from one workdir to another; the system's roots
/// (which do not have that CA) and an instance the server lacks each cost one warning and a
/// local build.
#[test]
fn a_grpcs_remote_with_its_ca_and_instance_carries_steps_and_mistakes_warn_once() {
    let server = BuildGrid::start_with("main", true);
    let ca = server.ca_pem();
    let toml = |extra: &str| format!("[cache]\nremote = \"{}\"\n{extra}\n{STEPS}", server.url);
    let good = toml(&format!(
        "instance = \"main\"\ntls-roots = \"{}\"",
        ca.display()
    ));
    let a = Workdir::new(&good, &[("in.txt", "hello\n")]);
    let r = a.build(&[]);
    assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let b = Workdir::new(&good, &[("in.txt", "hello\n")]);
    let r = b.build(&[]);
    assert_eq!(r.ids("remote"), ["step:gen", "step:use"], "{}", r.stderr);
    assert_eq!(b.read("out/seq"), a.read("out/seq"));

    for (w, flags, want) in [
        (
            toml("instance = \"main\""),
            vec![],
            "invalid peer certificate",
        ),
        (good.clone(), vec!["--remote-instance", "other"], "other"),
    ] {
        let c = Workdir::new(&w, &[("in.txt", "hello\n")]);
        let r = c.build(&flags);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.ids("ran"), ["step:gen", "step:use"], "{}", r.stderr);
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("building locally from here on"))
            .collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains(want),
            "{flags:?}: {}",
            r.stderr
        );
    }
}
