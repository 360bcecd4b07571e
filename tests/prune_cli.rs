//! `nosa prune` on real OS builds of the example: of 5 builds, one tagged, `--keep-last-n 2`
//! keeps 3; the store loses what only the pruned builds used and keeps what the kept builds
//! used; the next build is a no-op; `nosa build` prunes after itself unless `--skip-prune`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{fixture_workdir, listed_builds as listed, nosa, summary};

/// `nosa ARGS --json` must succeed; its summary (node id -> status).
fn build(w: &Path, args: &[&str]) -> BTreeMap<String, String> {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let out = nosa(w, &all);
    assert!(
        out.status.success(),
        "nosa {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

/// The action keys a build recorded (`builds/<id>/nosa-keys.json`).
fn node_keys(w: &Path, id: &str) -> BTreeMap<String, String> {
    let text = fs_err::read_to_string(w.join("builds").join(id).join("nosa-keys.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The action records in the store, by key.
fn actions(w: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(w.join("cache/store/ac"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split('.').next().unwrap().to_string()
        })
        .collect()
}

/// Bytes under the store.
fn store_bytes(w: &Path) -> u64 {
    walkdir::WalkDir::new(w.join("cache/store"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn prune_keeps_the_newest_and_tagged_builds_and_their_cached_outputs() {
    let (tmp, w) = fixture_workdir();
    let overlay = tmp
        .path()
        .join("example-config/overlay.d/15nestos/etc/test/test.txt");
    // The config in git: the first build is made from a clean commit, the others from
    // uncommitted overlay edits.
    let config = tmp.path().join("example-config");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    fs_err::write(&overlay, "build 0\n").unwrap();
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "config"]);
    let head = git(&["rev-parse", "HEAD"]);
    // Five builds, each with its own overlay content (so its own overlay, rootfs, commit...).
    for i in 0..5 {
        fs_err::write(&overlay, format!("build {i}\n")).unwrap();
        build(&w, &["--skip-prune"]);
    }
    let ids = listed(&w);
    assert_eq!(ids.len(), 5, "{ids:?}");
    let out = nosa(&w, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let builds = v["builds"].as_array().unwrap();
    assert_eq!(builds[4]["config_gitrev"], head.as_str(), "{v}");
    assert_eq!(builds[4]["config_dirty"], false, "{v}");
    assert_eq!(builds[0]["config_dirty"], true, "{v}");
    let out = nosa(&w, &["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("config {head} (dirty)")), "{text}");
    // ids[3] is the second build (newest first): tagged, it stays.
    let out = nosa(
        &w,
        &["tag", "update", "--build", &ids[3], "--tag", "stable"],
    );
    assert!(out.status.success(), "{out:?}");
    let keys: Vec<BTreeMap<String, String>> = ids.iter().map(|id| node_keys(&w, id)).collect();
    let before_actions = actions(&w);
    let before_bytes = store_bytes(&w);
    for k in &keys {
        assert!(k.values().all(|key| before_actions.contains(key)));
    }

    let out = nosa(&w, &["prune", "--keep-last-n", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "removed 2 builds ({}, {}), keeping the newest 2 and 1 tagged",
            ids[2], ids[4]
        )),
        "{text}"
    );
    assert_eq!(listed(&w), [ids[0].clone(), ids[1].clone(), ids[3].clone()]);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(w.join("builds").join(id).exists(), i != 2 && i != 4, "{id}");
    }
    assert_eq!(
        fs_err::read_link(w.join("builds/latest")).unwrap(),
        Path::new(&ids[0])
    );

    // The store: the kept builds' records stay, those only the pruned builds used go.
    let after = actions(&w);
    let kept: BTreeSet<&String> = [0, 1, 3].iter().flat_map(|&i| keys[i].values()).collect();
    for key in &kept {
        assert!(after.contains(*key), "a kept build's record {key} is gone");
    }
    let only_pruned: BTreeSet<&String> = [2, 4]
        .iter()
        .flat_map(|&i| keys[i].values())
        .filter(|k| !kept.contains(k))
        .collect();
    assert!(
        only_pruned.len() >= 3,
        "the overlay, rootfs and commit of each pruned build: {only_pruned:?}"
    );
    for key in &only_pruned {
        assert!(!after.contains(*key), "{key} only pruned builds used");
    }
    let after_bytes = store_bytes(&w);
    assert!(
        after_bytes < before_bytes,
        "the store shrinks: {before_bytes} -> {after_bytes}"
    );

    // The next build is a no-op: the same build, nothing ran.
    let s = build(&w, &[]);
    assert!(s.values().all(|st| st != "ran"), "{s:?}");
    assert_eq!(listed(&w), [ids[0].clone(), ids[1].clone(), ids[3].clone()]);

    // Going back to the tagged build's overlay finds its tree cached; to a pruned build's
    // reruns the overlay.
    let overlay_node = "overlay:15nestos";
    fs_err::write(&overlay, "build 1\n").unwrap();
    let s = build(&w, &["--skip-prune"]);
    assert_eq!(s[overlay_node], "cached", "{s:?}");
    assert_eq!(s["ostree-tree:x86_64"], "cached", "{s:?}");
    fs_err::write(&overlay, "build 0\n").unwrap();
    let s = build(&w, &["--skip-prune"]);
    assert_eq!(s[overlay_node], "ran", "{s:?}");
    assert_eq!(listed(&w).len(), 5);

    // `nosa build` prunes after itself: keep-last-n is 3 in the build file `nosa init`
    // wrote; the tagged build stays.
    fs_err::write(&overlay, "build 5\n").unwrap();
    let out = nosa(&w, &["build"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prune: removed 2 builds"), "{err}");
    let now = listed(&w);
    assert_eq!(now.len(), 4, "3 newest and the tagged: {now:?}");
    assert!(now.contains(&ids[3]), "{now:?}");

    // `prune --build`: a tagged build is refused, an unknown one too; the latest may go.
    let out = nosa(&w, &["prune", "--build", &ids[3]]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is tagged (stable)"), "{err}");
    let out = nosa(&w, &["prune", "--build", "no.such"]);
    assert_eq!(out.status.code(), Some(2));
    let out = nosa(&w, &["prune", "--build", &now[0]]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(listed(&w), now[1..]);
    assert_eq!(
        fs_err::read_link(w.join("builds/latest")).unwrap(),
        Path::new(&now[1]),
        "latest names the newest build left"
    );

    // A build of one arch (`--arch`) prunes builds but leaves the store to `nosa prune`: its
    // graph is not the whole workdir's, so its outputs are not all the roots.
    fs_err::write(&overlay, "build 6\n").unwrap();
    build(&w, &["--skip-prune"]);
    fs_err::write(&overlay, "build 7\n").unwrap();
    let before = actions(&w);
    let out = nosa(&w, &["build", "--arch", "x86_64"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prune: removed 1 build"), "{err}");
    assert!(!err.contains("freed"), "{err}");
    assert!(before.is_subset(&actions(&w)), "no action record went");
}
