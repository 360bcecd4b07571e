//! The package half through the real binary on the example config and the fixture distro:
//! `nosa fetch` pins, syncs, resolves and downloads; a repo parameter change that keeps the
//! repo's content reruns the sync and cuts off at resolve; one more package in the manifest
//! reruns resolve and exactly one download and one unpack.

mod common;

use std::path::Path;

use common::{fixture_workdir, nosa, summary};

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn count(s: &std::collections::BTreeMap<String, String>, prefix: &str, status: &str) -> usize {
    s.iter()
        .filter(|(id, st)| id.starts_with(prefix) && st.as_str() == status)
        .count()
}

fn edit(p: &Path, from: &str, to: &str) {
    let text = fs_err::read_to_string(p).unwrap();
    assert!(text.contains(from), "{} contains {from:?}", p.display());
    fs_err::write(p, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn fetch_then_incremental_package_changes() {
    let (tmp, w) = fixture_workdir();
    if std::env::consts::ARCH != "x86_64" {
        panic!("the fixture distro is built for x86_64 only");
    }
    let out = nosa(&w, &["fetch", "--json"]);
    ok(&out);
    let s = summary(&out);
    assert_eq!(s["repo-sync:x86_64:nestos-fixture"], "ran");
    assert_eq!(s["resolve:x86_64"], "ran");
    let downloads = count(&s, "rpm:x86_64:", "ran");
    assert!(downloads >= 15, "every resolved package downloaded: {s:?}");
    assert!(w.join("cache/pins/x86_64/nestos-fixture.json").is_file());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pinned nestos-fixture"), "{stderr}");

    // Unpack everything once: the unpack nodes, named by the plan.
    let plan = nosa(&w, &["graph", "plan", "ostree", "--json"]);
    ok(&plan);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let names: Vec<String> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .filter(|id| id.starts_with("unpack:"))
        .collect();
    assert_eq!(names.len(), downloads, "one unpack node per package");
    let mut args = vec!["graph", "build", "--json"];
    args.extend(names.iter().map(String::as_str));
    let out = nosa(&w, &args);
    ok(&out);
    assert_eq!(count(&summary(&out), "unpack:", "ran"), downloads);

    // A second fetch does nothing.
    let out = nosa(&w, &["fetch", "--json"]);
    ok(&out);
    let s = summary(&out);
    assert!(s.values().all(|st| st == "cached"), "{s:?}");

    // A repo parameter that changes the sync's key but not the repo's content: the sync
    // reruns, resolve is cut off, no download runs.
    let repo_file = tmp.path().join("example-config/nestos-fixture.repo");
    let text = fs_err::read_to_string(&repo_file).unwrap();
    let baseurl = text
        .lines()
        .find_map(|l| l.strip_prefix("baseurl="))
        .unwrap()
        .to_string();
    let mirrorlist = w.join("mirrors.txt");
    fs_err::write(&mirrorlist, format!("{baseurl}\n")).unwrap();
    fs_err::write(
        &repo_file,
        format!("{text}mirrorlist=file://{}\n", mirrorlist.display()),
    )
    .unwrap();
    let out = nosa(&w, &["graph", "build", "--json", "fetch"]);
    ok(&out);
    let s = summary(&out);
    assert_eq!(s["repo-sync:x86_64:nestos-fixture"], "ran", "{s:?}");
    assert_eq!(s["resolve:x86_64"], "cutoff", "{s:?}");
    assert_eq!(count(&s, "rpm:", "ran"), 0, "{s:?}");

    // One more package: resolve reruns, exactly one new download and one new unpack.
    edit(
        &tmp.path().join("example-config/manifests/packages.yaml"),
        "  - fixture-app\n",
        "  - fixture-app\n  - fixture-conflict-a\n",
    );
    let plan = nosa(&w, &["graph", "build", "--json", "fetch"]);
    ok(&plan);
    let s = summary(&plan);
    assert_eq!(s["resolve:x86_64"], "ran", "{s:?}");
    let new: Vec<&String> = s
        .iter()
        .filter(|(id, st)| id.starts_with("rpm:") && st.as_str() == "ran")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(new.len(), 1, "{s:?}");
    assert!(new[0].contains("fixture-conflict-a"), "{new:?}");
    // `why` names the manifest change.
    let why = nosa(&w, &["graph", "why", "resolve:x86_64", "--json"]);
    ok(&why);
    let v: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    assert_eq!(v["state"], "ran", "{v}");
    assert_eq!(v["reasons"][0]["kind"], "param-changed", "{v}");
    assert_eq!(v["reasons"][0]["name"], "packages", "{v}");
    let unpack = new[0].replacen("rpm:", "unpack:", 1);
    let mut args = vec!["graph", "build", "--json"];
    args.extend(names.iter().map(String::as_str));
    args.push(&unpack);
    let out = nosa(&w, &args);
    ok(&out);
    let s = summary(&out);
    assert_eq!(count(&s, "unpack:", "ran"), 1, "{s:?}");
    assert_eq!(s[&unpack], "ran");
}
