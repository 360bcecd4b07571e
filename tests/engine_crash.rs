//! Crash safety and locking through the real binary: a build killed with SIGKILL at several
//! points leaves nothing a later build trusts wrongly, and two builds in one workdir serialize.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Workdir, expect_log};

/// Steps that take a while and write a few MB each, in a diamond with a parallel side.
fn slow_graph() -> String {
    let mut t = String::new();
    for (name, deps, sleep) in [
        ("s1", "", "0.15"),
        ("s2", "\"s1\"", "0.1"),
        ("s3", "\"s1\"", "0.2"),
        ("s4", "\"s2\", \"s3\"", "0.1"),
        ("p1", "", "0.3"),
        ("p2", "\"p1\"", "0.1"),
    ] {
        let cat_deps: String = deps
            .split(", ")
            .filter(|d| !d.is_empty())
            .map(|d| format!("cat {}.out >> {name}.out; ", d.trim_matches('"')))
            .collect();
        t.push_str(&format!(
            "[[step]]\nname = \"{name}\"\ninputs = [\"in/seed\"]\ndeps = [{deps}]\n\
             outputs = [\"{name}.out\"]\n\
             run = \"sleep {sleep}; yes {name} | head -c 3000000 > {name}.out; cat in/seed >> {name}.out; {cat_deps}\"\n\n"
        ));
    }
    t
}

fn outputs(w: &Path) -> BTreeMap<String, Vec<u8>> {
    ["s1", "s2", "s3", "s4", "p1", "p2"]
        .iter()
        .map(|n| {
            let p = w.join(format!("{n}.out"));
            (n.to_string(), fs_err::read(&p).unwrap_or_default())
        })
        .collect()
}

/// Every blob matches its name, and every action record's tree and blobs are present.
fn fsck(store: &Path) {
    // A build killed before it created the store has published nothing.
    if !store.join("blobs").is_dir() || !store.join("ac").is_dir() {
        return;
    }
    for shard in fs_err::read_dir(store.join("blobs")).unwrap() {
        for e in fs_err::read_dir(shard.unwrap().path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let content = fs_err::read(e.path()).unwrap();
            assert_eq!(
                blake3::hash(&content).to_hex().as_str(),
                name,
                "blob content matches its name"
            );
        }
    }
    for shard in fs_err::read_dir(store.join("ac")).unwrap() {
        for e in fs_err::read_dir(shard.unwrap().path()).unwrap() {
            let rec: serde_json::Value =
                serde_json::from_slice(&fs_err::read(e.unwrap().path()).unwrap())
                    .expect("every published action record is complete JSON");
            let tree = rec["tree"].as_str().unwrap();
            let tp = store
                .join("trees")
                .join(&tree[..2])
                .join(format!("{tree}.json"));
            let t: serde_json::Value = serde_json::from_slice(&fs_err::read(&tp).unwrap())
                .expect("a record's tree is present and complete");
            for entry in t["entries"].as_array().unwrap() {
                if let Some(d) = entry["digest"].as_str() {
                    assert!(
                        store.join("blobs").join(&d[..2]).join(d).exists(),
                        "blob {d} of a published tree is present"
                    );
                }
            }
        }
    }
}

#[test]
fn killed_builds_never_leave_trusted_partial_entries() {
    let reference = Workdir::new(&slow_graph(), &[("in/seed", "seed\n")]);
    let r = reference.build(&["-j", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = outputs(reference.path());

    for delay_ms in [40u64, 120, 250, 400, 550, 700] {
        let w = Workdir::new(&slow_graph(), &[("in/seed", "seed\n")]);
        // A first build that is killed part-way, then a second killed elsewhere.
        for kill_at in [delay_ms, delay_ms / 2 + 100] {
            let mut child = w
                .cmd(&["graph", "build", "-j", "2"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(kill_at));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            fsck(&w.path().join("cache/store"));
        }
        let r = w.build(&["-j", "2"]);
        assert_eq!(r.code, 0, "build after kill at {delay_ms} ms: {}", r.stderr);
        assert_eq!(outputs(w.path()), want, "kill at {delay_ms} ms");
        fsck(&w.path().join("cache/store"));
        let again = w.build(&[]);
        expect_log(&again, &[], "cached");
    }
}

#[test]
fn second_build_waits_for_the_lock_or_fails_with_no_wait() {
    let w = Workdir::new(
        "[[step]]\nname = \"slow\"\nrun = \"sleep 3; echo > done.txt\"\noutputs = [\"done.txt\"]\n",
        &[],
    );
    let mut first = w
        .cmd(&["graph", "build"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first build has the lock and its step is running.
    let t0 = Instant::now();
    while !w.path().join("cache/store/logs/step_slow.log").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "first build never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = w.output(&["graph", "build", "--no-wait"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("locked by pid {} (nosa graph build)", first.id())),
        "{err}"
    );
    let waited = w.build(&[]);
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    assert!(
        waited.stderr.contains(&format!(
            "waiting for the workdir lock, held by pid {}",
            first.id()
        )),
        "{}",
        waited.stderr
    );
    assert!(first.wait().unwrap().success());
    // It ran after the first one finished, so it found the result cached.
    expect_log(&waited, &[], "cached");
}
