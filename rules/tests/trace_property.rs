//! Property test of reuse by trace: random changes to an overlay layer (files added, edited,
//! deleted, made executable, new directories, symlinks) under traced postprocess scripts
//! that list, read, test for, stat and walk what the layer holds. After every change the
//! incremental build's tree equals a clean build's (a fresh workdir and store), and a change
//! that no script reads reruns none of them.
//!
//! The tree's programs are the host's (dash, coreutils, findutils and their libraries, found
//! with ldd): the scripts need a real shell, and the test compares two builds on this machine.

use std::path::Path;
use std::sync::Arc;

use nosa_cache::{Digest, Store};
use nosa_engine::{BuildOptions, Engine, GraphBuilder, Rule, Status};
use nosa_rules::compose::{OstreeTreeRule, PostprocessRule, Script};
use nosa_rules::overlay::OverlayRule;
use nosa_rules::rootfs::RootfsRule;
use proptest::prelude::*;

/// The host programs the scripts use.
const PROGRAMS: &[&str] = &[
    "/usr/bin/dash",
    "/usr/bin/cat",
    "/usr/bin/stat",
    "/usr/bin/readlink",
    "/usr/bin/find",
    "/usr/bin/sort",
    "/usr/bin/rm",
    "/usr/bin/mkdir",
];

/// The scripts: a listing plus reads, an existence test, a readlink, modes, a recursive walk,
/// and one that reads nothing of the layer.
const SCRIPTS: &[&str] = &[
    "for f in /etc/conf.d/*; do [ -f \"$f\" ] && cat \"$f\"; done > /etc/all.conf; true",
    "if [ -e /etc/flag ]; then echo on > /etc/flag.state; fi",
    "if [ -L /etc/link ]; then readlink /etc/link > /etc/link.target; fi",
    "stat -c '%n %a' /etc/modes/* > /etc/modes.list 2>/dev/null; true",
    "find /etc/tree | sort > /etc/tree.list",
    "mkdir -p /usr/share/untouched && echo fixed > /usr/share/untouched/stamp",
];

/// One change to the layer (`edit/` in the workdir).
#[derive(Debug, Clone)]
enum Change {
    WriteConf(u8, u8),
    DeleteConf(u8),
    Chmod(u8, bool),
    NewTreeDir(u8),
    Symlink(bool),
    ToggleFlag,
    Unrelated(u8),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0u8..3, any::<u8>()).prop_map(|(n, c)| Change::WriteConf(n, c)),
        (0u8..3).prop_map(Change::DeleteConf),
        (0u8..2, any::<bool>()).prop_map(|(n, x)| Change::Chmod(n, x)),
        (0u8..3).prop_map(Change::NewTreeDir),
        any::<bool>().prop_map(Change::Symlink),
        Just(Change::ToggleFlag),
        any::<u8>().prop_map(Change::Unrelated),
    ]
}

fn apply(edit: &Path, c: &Change) {
    let etc = edit.join("etc");
    let write = |rel: &str, text: &str| {
        let p = etc.join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, text).unwrap();
    };
    match c {
        Change::WriteConf(n, v) => write(&format!("conf.d/c{n}"), &format!("value {v}\n")),
        Change::DeleteConf(n) => {
            let _ = fs_err::remove_file(etc.join(format!("conf.d/c{n}")));
        }
        Change::Chmod(n, exec) => {
            let p = etc.join(format!("modes/m{n}"));
            if !p.exists() {
                write(&format!("modes/m{n}"), "m\n");
            }
            let mode = if *exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        Change::NewTreeDir(n) => write(&format!("tree/d{n}/f"), "f\n"),
        Change::Symlink(a) => {
            let p = etc.join("link");
            let _ = fs_err::remove_file(&p);
            std::os::unix::fs::symlink(if *a { "conf.d" } else { "tree" }, &p).unwrap();
        }
        Change::ToggleFlag => {
            let p = etc.join("flag");
            if p.exists() {
                fs_err::remove_file(p).unwrap();
            } else {
                write("flag", "");
            }
        }
        Change::Unrelated(v) => write("unrelated.txt", &format!("{v}\n")),
    }
}

/// The host programs and their libraries under `base/`.
fn base_layer(w: &Path) {
    let base = w.join("base");
    let mut files: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    for p in PROGRAMS {
        let out = std::process::Command::new("ldd").arg(p).output().unwrap();
        assert!(out.status.success(), "ldd {p} (Debian's libc-bin)");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = line
                .split_whitespace()
                .find(|t| t.starts_with('/'))
                .map(str::to_string);
            files.extend(lib);
        }
    }
    for f in files {
        let real = fs_err::canonicalize(&f).unwrap();
        let to = base.join(f.trim_start_matches('/'));
        fs_err::create_dir_all(to.parent().unwrap()).unwrap();
        fs_err::copy(&real, &to).unwrap();
    }
    // Debian's merged /usr: /bin, /lib and /lib64 are links into /usr.
    for (link, to) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        if !base.join(link).exists() {
            std::os::unix::fs::symlink(to, base.join(link)).unwrap();
        }
    }
    std::os::unix::fs::symlink("dash", base.join("usr/bin/sh")).unwrap();
    fs_err::create_dir_all(w.join("edit/etc/tree")).unwrap();
    fs_err::write(w.join("edit/etc/tree/.keep"), "").unwrap();
}

struct Build {
    engine: Engine,
    graph: nosa_engine::Graph,
}

impl Build {
    fn new(w: &Path) -> Build {
        Build::with_scripts(w, SCRIPTS)
    }

    fn with_scripts(w: &Path, scripts: &[&str]) -> Build {
        let mut b = GraphBuilder::new();
        b.add(
            "overlay:base",
            Arc::new(OverlayRule::new("base", "base")),
            vec![],
        );
        b.add(
            "overlay:edit",
            Arc::new(OverlayRule::new("edit", "edit")),
            vec![],
        );
        let rootfs: Arc<dyn Rule> = Arc::new(RootfsRule::new("x86_64", vec![], vec![]));
        b.add(
            "rootfs:x86_64",
            rootfs,
            vec!["overlay:base".into(), "overlay:edit".into()],
        );
        let mut prev = "rootfs:x86_64".to_string();
        for (i, s) in scripts.iter().enumerate() {
            let id = format!("postprocess:x86_64:{i}");
            b.add(
                id.clone(),
                Arc::new(PostprocessRule::new(
                    "x86_64",
                    i,
                    Script::Inline(s.to_string()),
                )),
                vec![prev],
            );
            prev = id;
        }
        b.add(
            "ostree-tree:x86_64",
            Arc::new(OstreeTreeRule::new("x86_64", None)),
            vec![prev],
        );
        Build {
            engine: Engine::new(w, Store::open(w.join("cache/store")).unwrap()),
            graph: b.build().unwrap(),
        }
    }

    /// Builds everything; the final tree and the postprocess nodes that really ran.
    fn run(&self) -> (Digest, Vec<String>) {
        let r = self.report();
        let ran = r
            .nodes
            .iter()
            .filter(|n| n.id.starts_with("postprocess:") && n.status == Status::Ran && !n.reused)
            .map(|n| n.id.clone())
            .collect();
        let tree = self.engine.state().nodes["ostree-tree:x86_64"]
            .good
            .unwrap()
            .tree;
        (tree, ran)
    }

    /// Builds everything, which must succeed.
    fn report(&self) -> nosa_engine::BuildReport {
        let all: Vec<usize> = (0..self.graph.len()).collect();
        let opts = BuildOptions {
            jobs: 2,
            ..Default::default()
        };
        let r = self
            .engine
            .build(&self.graph, &all, &opts, &mut nosa_engine::Quiet)
            .unwrap();
        assert!(r.ok(), "{:?}", r.nodes);
        r
    }
}

/// A clean build of the same layers in a new workdir.
fn clean(w: &Path) -> Digest {
    let tmp = tempfile::tempdir().unwrap();
    nosa_testkit::cp_a(&w.join("base"), &tmp.path().join("base"));
    nosa_testkit::cp_a(&w.join("edit"), &tmp.path().join("edit"));
    let (tree, ran) = Build::new(tmp.path()).run();
    assert_eq!(ran.len(), SCRIPTS.len(), "a clean build runs every script");
    tree
}

/// A tree symlink into the sandbox's /dev is judged where it leads: testing
/// /etc/rand -> /dev/urandom makes the run not reusable, so a later change reruns it.
#[test]
fn a_symlink_to_host_randomness_is_not_reusable() {
    nosa_testkit::need("strace", "strace");
    nosa_testkit::need("bwrap", "bubblewrap");
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    base_layer(w);
    std::os::unix::fs::symlink("/dev/urandom", w.join("edit/etc/rand")).unwrap();
    let build = Build::with_scripts(
        w,
        &["if [ -c /etc/rand ]; then echo char > /etc/rand.kind; fi"],
    );
    let first = build.report();
    let note = first
        .nodes
        .iter()
        .find(|n| n.id == "postprocess:x86_64:0")
        .and_then(|n| n.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("not reusable by trace: it read the host's /dev/urandom"),
        "{note}"
    );
    apply(&w.join("edit"), &Change::Unrelated(1));
    let (_, ran) = build.run();
    assert_eq!(ran, ["postprocess:x86_64:0"], "never replayed");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn incremental_trees_equal_clean_trees(
        steps in proptest::collection::vec(proptest::collection::vec(change(), 1..3), 1..4)
    ) {
        nosa_testkit::need("strace", "strace");
        nosa_testkit::need("bwrap", "bubblewrap");
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path();
        base_layer(w);
        let build = Build::new(w);
        build.run();
        for batch in &steps {
            for c in batch {
                apply(&w.join("edit"), c);
            }
            let (tree, ran) = build.run();
            prop_assert_eq!(tree, clean(w), "after {:?}", batch);
            if batch.iter().all(|c| matches!(c, Change::Unrelated(_))) {
                prop_assert!(ran.is_empty(), "nothing reads unrelated.txt: {:?}", ran);
            }
            prop_assert!(
                !ran.contains(&"postprocess:x86_64:5".to_string()),
                "script 5 reads nothing of the layer: {:?}", ran
            );
        }
    }
}
