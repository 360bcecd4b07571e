//! `nosa build` end to end on the example config and the fixture distro: packages, overlays,
//! scriptlets, postprocess, the tree's own dracut, the ostree layout and a libostree commit,
//! recorded in coreos-assembler's builds/ layout. Checked with Debian's `ostree` CLI.
//! Also: an unchanged tree keeps its build id; one changed overlay file reruns exactly the
//! nodes after it (no package node) and `graph why` names it; two workdirs give the same
//! content checksum. The rpm-ostree finishing: mutate-os-release, `rpmostree.inputhash`,
//! `rpmostree.rpmdb.pkglist`, add-commit-metadata, the previous build as parent.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{fixture_workdir, nosa, summary, v1_meta_errors, v1_schema};
use nosa_testkit::{cp_a, ostree, workspace_root};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

/// Asserts that `meta` validates (see [`v1_meta_errors`]), and that a copy with an unknown key and
/// a short checksum does not, so the check is live.
fn assert_meta_v1(meta: &serde_json::Value) {
    let errors = v1_meta_errors(meta);
    assert!(
        meta["images"]["ostree"]["path"].is_string(),
        "every build records its OCI archive: {meta:#}"
    );
    assert!(
        errors.is_empty(),
        "meta.json against v1: {errors:#?}\n{meta:#}"
    );
    let mut bad = meta.clone();
    bad["nosa-unknown"] = "x".into();
    bad["ostree-commit"] = "abc".into();
    let errors = v1_meta_errors(&bad);
    let schema_too = v1_schema().is_some();
    assert!(
        errors.iter().any(|e| e.starts_with("nosa-unknown"))
            && errors.iter().any(|e| e.starts_with("ostree-commit"))
            && (!schema_too || errors.iter().filter(|e| e.starts_with("schema: ")).count() >= 2),
        "{errors:#?}"
    );
}

fn build(w: &Path) -> std::collections::BTreeMap<String, String> {
    let out = nosa(w, &["build", "--json"]);
    assert!(
        out.status.success(),
        "nosa build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

#[test]
fn build_commits_and_records_the_build() {
    let (tmp, w) = fixture_workdir();
    let s = build(&w);
    assert_eq!(s["ostree-commit:x86_64"], "ran");
    let index = json(&w.join("builds/builds.json"));
    let id = index["builds"][0]["id"].as_str().unwrap().to_string();
    assert!(id.ends_with(".dev.0"), "{id}");
    assert_eq!(
        fs_err::read_link(w.join("builds/latest")).unwrap(),
        Path::new(&id)
    );
    let dir = w.join("builds").join(&id).join("x86_64");
    let meta = json(&dir.join("meta.json"));
    for key in [
        "buildid",
        "name",
        "ostree-commit",
        "ostree-content-checksum",
        "ostree-timestamp",
        "ostree-version",
        "rpm-ostree-inputhash",
    ] {
        assert!(meta[key].is_string(), "meta.json has {key}: {meta}");
    }
    assert_eq!(meta["ostree-version"], id.as_str());
    assert_meta_v1(&meta);
    let list = nosa(&w, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["builds"][0]["id"], id.as_str(), "{list}");
    assert_eq!(
        list["builds"][0]["artifacts"]["x86_64"], meta["images"],
        "nosa list shows meta.json's artifacts: {list}"
    );
    assert!(dir.join("commitmeta.json").is_file());
    assert!(dir.join("manifest-lock.generated.x86_64.json").is_file());

    let repo = dir.join("ostree-commit/repo");
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    let r = "nestos/x86_64/devel";
    assert_eq!(
        ostree(&repo, &["rev-parse", r]).trim(),
        meta["ostree-commit"]
    );
    let show = ostree(&repo, &["show", r]);
    assert!(show.contains(&format!("Version: {id}")), "{show}");
    let test_txt = ostree(&repo, &["cat", r, "/usr/etc/test/test.txt"]);
    let want = fs_err::read_to_string(
        tmp.path()
            .join("example-config/overlay.d/15nestos/etc/test/test.txt"),
    )
    .unwrap();
    assert_eq!(
        test_txt, want,
        "the overlay file is in the commit at /usr/etc"
    );
    let ls = ostree(&repo, &["ls", "-R", r, "/usr/lib/modules"]);
    assert!(
        ls.contains("/vmlinuz") && ls.contains("/initramfs.img"),
        "{ls}"
    );
    let post = ostree(&repo, &["cat", r, "/usr/etc/fixture-post.conf"]);
    assert_eq!(post, "post-ran=1 arg=1\n", "%post ran during the compose");
    let issue = ostree(&repo, &["cat", r, "/usr/etc/issue.d/10-nestos.issue"]);
    assert!(issue.contains("NestOS"), "postprocess ran: {issue}");
    assert!(
        ostree(&repo, &["ls", r, "/"])
            .lines()
            .all(|l| !l.ends_with(" /etc")),
        "no /etc in the commit: it lives at /usr/etc"
    );

    // mutate-os-release "24.03-LTS": the fixture's VERSION ("24.03-LTS (nosa fixture)") holds
    // it, so as with rpm-ostree it becomes the version there and in PRETTY_NAME, and
    // OSTREE_VERSION is added (a base that does not occur is checked below).
    let os = ostree(&repo, &["cat", r, "/usr/lib/os-release"]);
    assert!(
        os.contains(&format!("\nVERSION=\"{id} (nosa fixture)\"\n"))
            && os.contains(&format!("\nPRETTY_NAME=\"NestOS {id} (nosa fixture)\"\n")),
        "{os}"
    );
    assert!(
        os.ends_with(&format!("\nOSTREE_VERSION='{id}'\n")),
        "os-release carries the version: {os}"
    );
    // Commit metadata, as rpm-ostree writes it.
    let key = |repo: &Path, k: &str| {
        ostree(repo, &["show", &format!("--print-metadata-key={k}"), r])
            .trim()
            .to_string()
    };
    assert_eq!(
        key(&repo, "rpmostree.inputhash"),
        format!("'{}'", meta["rpm-ostree-inputhash"].as_str().unwrap())
    );
    assert_eq!(
        key(&repo, "nestos.stream"),
        "'devel'",
        "add-commit-metadata"
    );
    let pkglist = key(&repo, "rpmostree.rpmdb.pkglist");
    assert!(
        pkglist.starts_with("[('") && pkglist.contains("('systemd', '0', '"),
        "{pkglist}"
    );
    let commitmeta = json(&dir.join("commitmeta.json"));
    assert_eq!(commitmeta["version"], id.as_str());
    let listed = commitmeta["rpmostree.rpmdb.pkglist"].as_array().unwrap();
    assert_eq!(pkglist.matches("('").count(), listed.len());
    for p in listed {
        assert_eq!(
            p.as_array().unwrap().len(),
            5,
            "name, epoch, version, release, arch"
        );
    }
    assert!(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["rev-parse", &format!("{r}^")])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0),
        "the first build has no parent"
    );

    // `rpm -qa` against the tree's own database lists exactly the resolved packages, which
    // are the commit's pkglist.
    let co = tmp.path().join("checkout");
    ostree(&repo, &["checkout", "-U", r, co.to_str().unwrap()]);
    let qa = Command::new("rpm")
        .args(["--root", co.to_str().unwrap(), "--dbpath", "/usr/share/rpm"])
        .args(["-qa", "--qf", "%{NAME}\\n"])
        .output()
        .expect("run rpm (Debian package rpm)");
    assert!(
        qa.status.success(),
        "{}",
        String::from_utf8_lossy(&qa.stderr)
    );
    let mut installed: Vec<String> = String::from_utf8_lossy(&qa.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    installed.sort();
    let lock = json(&dir.join("manifest-lock.generated.x86_64.json"));
    let mut locked: Vec<String> = lock["packages"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    locked.sort();
    assert_eq!(installed, locked, "rpm -qa equals the resolved set");
    let mut names: Vec<String> = listed
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, locked, "the pkglist names the resolved set");
    assert!(installed.contains(&"systemd".to_string()));
    assert!(
        installed.len() >= 100,
        "the example OS is the Debian closure: {} packages",
        installed.len()
    );

    // The initramfs is Debian's dracut's, with its ostree and Ignition modules and NestOS's
    // glue between them: dracut lists the modules it included in the image itself.
    let kver = fs_err::read_dir(co.join("usr/lib/modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .next()
        .expect("a kernel");
    let img = co.join(format!("usr/lib/modules/{kver}/initramfs.img"));
    let listing = Command::new("sh")
        .arg("-c")
        .arg("zcat \"$1\" | cpio -it --quiet")
        .arg("sh")
        .arg(&img)
        .output()
        .expect("sh, zcat (gzip) and cpio");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "usr/lib/dracut/modules.txt",
        "usr/lib/ostree/ostree-prepare-root",
        "usr/lib/systemd/system/ostree-prepare-root.service",
        "usr/bin/ignition",
        "usr/lib/systemd/system/ignition-fetch-offline.service",
        "usr/lib/systemd/system/nestos-ignition-ostree-var.service",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} in the initramfs: {} entries",
            listing.lines().count()
        );
    }
    let modules = Command::new("sh")
        .arg("-c")
        .arg("zcat \"$1\" | cpio -i --quiet --to-stdout usr/lib/dracut/modules.txt")
        .arg("sh")
        .arg(&img)
        .output()
        .expect("cpio");
    let modules = String::from_utf8_lossy(&modules.stdout);
    for m in ["ostree", "ignition", "nestos-ignition", "systemd"] {
        assert!(
            modules.lines().any(|l| l == m),
            "dracut module {m}: {modules}"
        );
    }

    // Unchanged: no new build id, nothing runs.
    let s = build(&w);
    assert!(s.values().all(|st| st == "cached"), "{s:?}");
    let index = json(&w.join("builds/builds.json"));
    assert_eq!(index["builds"].as_array().unwrap().len(), 1);

    // One overlay file changes: the nodes after it rerun, no package node; a new build id.
    fs_err::write(
        tmp.path()
            .join("example-config/overlay.d/15nestos/etc/test/test.txt"),
        "changed\n",
    )
    .unwrap();
    let s = build(&w);
    let ran: Vec<&str> = s
        .iter()
        .filter(|(_, st)| *st == "ran")
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(
        ran.iter().all(|id| !id.starts_with("repo-sync:")
            && !id.starts_with("resolve:")
            && !id.starts_with("rpm:")
            && !id.starts_with("unpack:")),
        "no package node reruns: {ran:?}"
    );
    for want in ["overlay:15nestos", "rootfs:x86_64", "ostree-commit:x86_64"] {
        assert!(ran.contains(&want), "{want} reran: {ran:?}");
    }
    let index = json(&w.join("builds/builds.json"));
    let new_id = index["builds"][0]["id"].as_str().unwrap();
    assert!(new_id.ends_with(".dev.1"), "{new_id}");
    // Its parent is the first build's commit.
    let repo1 = w
        .join("builds")
        .join(new_id)
        .join("x86_64/ostree-commit/repo");
    assert_eq!(
        ostree(&repo1, &["rev-parse", &format!("{r}^")]).trim(),
        meta["ostree-commit"].as_str().unwrap()
    );
    let why = nosa(&w, &["graph", "why", "ostree-commit:x86_64", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&why.stdout).unwrap();
    let causes = v["root_causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["kind"] == "input-changed"
            && c["name"] == "src/config/overlay.d/15nestos/etc/test/test.txt"),
        "{v}"
    );

    // A second workdir, built from scratch with the same version (which os-release holds),
    // gives the same content checksum.
    let (_tmp2, w2) = fixture_workdir();
    fs_err::write(
        _tmp2
            .path()
            .join("example-config/overlay.d/15nestos/etc/test/test.txt"),
        "changed\n",
    )
    .unwrap();
    let out = nosa(&w2, &["build", "--version", new_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m1 = json(&w.join("builds/latest/x86_64/meta.json"));
    let m2 = json(&w2.join("builds/latest/x86_64/meta.json"));
    assert_eq!(m1["ostree-content-checksum"], m2["ostree-content-checksum"]);

    // mutate-os-release changes: the tree is the same (nothing before the commit reruns), but
    // the input hash is not, so this is a new build; "1" occurs in VERSION and PRETTY_NAME.
    let nestos_yaml = tmp.path().join("example-config/manifests/nestos.yaml");
    let text = fs_err::read_to_string(&nestos_yaml).unwrap();
    let changed = text.replace(
        "mutate-os-release: \"${releasever}\"",
        "mutate-os-release: \"9.9\"",
    );
    assert_ne!(text, changed);
    fs_err::write(&nestos_yaml, changed).unwrap();
    let s = build(&w);
    assert_eq!(s["ostree-tree:x86_64"], "cached", "{s:?}");
    assert_eq!(s["ostree-commit:x86_64"], "ran", "{s:?}");
    let index = json(&w.join("builds/builds.json"));
    let third = index["builds"][0]["id"].as_str().unwrap();
    assert!(third.ends_with(".dev.2"), "{third}");
    let dir3 = w.join("builds").join(third).join("x86_64");
    assert_meta_v1(&json(&dir3.join("meta.json")));
    let repo3 = dir3.join("ostree-commit/repo");
    let os = ostree(&repo3, &["cat", r, "/usr/lib/os-release"]);
    assert!(
        os.contains("\nVERSION=\"24.03-LTS (nosa fixture)\"\n")
            && os.contains("\nPRETTY_NAME=\"NestOS 24.03-LTS (nosa fixture)\"\n")
            && os.ends_with(&format!("\nOSTREE_VERSION='{third}'\n")),
        "a base that does not occur changes only OSTREE_VERSION: {os}"
    );
    assert_eq!(
        ostree(&repo3, &["rev-parse", &format!("{r}^")]).trim(),
        m1["ostree-commit"].as_str().unwrap(),
        "the parent is the previous build's commit"
    );
}

#[test]
fn build_fast_applies_overrides_and_refuses_package_changes() {
    let (tmp, w) = fixture_workdir();
    build(&w);
    // overrides/rootfs is one more overlay, applied last.
    fs_err::create_dir_all(w.join("overrides/rootfs/etc")).unwrap();
    fs_err::write(w.join("overrides/rootfs/etc/override.txt"), "local\n").unwrap();
    let out = nosa(&w, &["build-fast", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["overlay:overrides-rootfs"], "ran");
    assert!(
        s.iter()
            .filter(|(_, st)| *st == "ran")
            .all(|(id, _)| !id.starts_with("rpm:") && !id.starts_with("resolve:")),
        "{s:?}"
    );
    let repo = w.join("builds/latest/x86_64/ostree-commit/repo");
    let got = ostree(
        &repo,
        &["cat", "nestos/x86_64/devel", "/usr/etc/override.txt"],
    );
    assert_eq!(got, "local\n");
    // A package change is not for build-fast.
    let pkgs = tmp.path().join("example-config/manifests/packages.yaml");
    let text = fs_err::read_to_string(&pkgs).unwrap();
    fs_err::write(
        &pkgs,
        text.replace(
            "  - fixture-app\n",
            "  - fixture-app\n  - fixture-conflict-a\n",
        ),
    )
    .unwrap();
    let out = nosa(&w, &["build-fast"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("build-fast would rerun package nodes: resolve:x86_64"),
        "{err}"
    );
}

/// A copy of the demo workdir (the repository root's `nestos.build.toml` and `examples/`, the
/// fixture repository linked where the example's `.repo` file expects it).
fn demo_copy(root: &Path) -> std::path::PathBuf {
    let w = root.join("demo");
    fs_err::create_dir_all(w.join("fixtures/out")).unwrap();
    fs_err::copy(
        workspace_root().join("nestos.build.toml"),
        w.join("nestos.build.toml"),
    )
    .unwrap();
    nosa_testkit::copy_dir(&workspace_root().join("examples"), &w.join("examples"));
    let repo = workspace_root().join("fixtures/out/repo");
    assert!(
        repo.join("x86_64/repodata/repomd.xml").is_file(),
        "{} is missing: run `cargo xtask fixture-distro` (make test does)",
        repo.display()
    );
    std::os::unix::fs::symlink(&repo, w.join("fixtures/out/repo")).unwrap();
    w
}

/// `nosa graph build --json` in `dir`, which must succeed; its summary.
fn graph_build(dir: &Path) -> BTreeMap<String, String> {
    let out = nosa(dir, &["graph", "build", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out)
}

/// `nosa graph build` without targets builds the OS of the demo workdir (versioned and
/// recorded as `nosa build` records it); a copy of the workdir in another directory finds
/// every node cached (no key depends on where the workdir is); an overlay edit there makes a
/// new build that `graph why` explains by the file.
#[test]
fn graph_build_builds_the_os_and_keys_do_not_depend_on_the_workdir_path() {
    let tmp = tempfile::tempdir().unwrap();
    let a = demo_copy(tmp.path());
    let s = graph_build(&a);
    for id in [
        "ostree-commit:x86_64",
        "oci:x86_64",
        "image:x86_64:qemu",
        "step:overlay-summary",
    ] {
        assert_eq!(s.get(id).map(String::as_str), Some("ran"), "{id}: {s:?}");
    }
    let index = json(&a.join("builds/builds.json"));
    let first = index["builds"][0]["id"].as_str().unwrap().to_string();
    let meta = json(&a.join("builds").join(&first).join("x86_64/meta.json"));
    assert_meta_v1(&meta);
    assert!(meta["images"]["qemu"]["path"].is_string(), "{meta:#}");

    // The same workdir elsewhere: nothing reruns, not even repo-sync and resolve.
    let moved = tmp.path().join("elsewhere");
    fs_err::create_dir_all(&moved).unwrap();
    cp_a(&a, &moved);
    let b = moved.join("demo");
    let s = graph_build(&b);
    let ran: Vec<&String> = s
        .iter()
        .filter(|(_, st)| *st != "cached")
        .map(|(id, _)| id)
        .collect();
    assert!(
        ran.is_empty(),
        "in a copy of the workdir these did not come from the cache: {ran:?}"
    );
    assert!(s.contains_key("resolve:x86_64"), "{s:?}");

    // An overlay edit in the copy: a new build, explained by the file.
    let file = b.join("examples/overlay.d/15nestos/etc/test/test.txt");
    let mut text = fs_err::read_to_string(&file).unwrap();
    text.push_str("edited by the graph build test\n");
    fs_err::write(&file, text).unwrap();
    let s = graph_build(&b);
    assert_eq!(s["ostree-commit:x86_64"], "ran", "{s:?}");
    assert_eq!(s["resolve:x86_64"], "cached", "{s:?}");
    let index = json(&b.join("builds/builds.json"));
    let builds = index["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{index:#}");
    let second = builds[0]["id"].as_str().unwrap();
    assert_ne!(second, first);
    assert_eq!(
        fs_err::read_link(b.join("builds/latest")).unwrap(),
        Path::new(second)
    );
    let meta = json(&b.join("builds").join(second).join("x86_64/meta.json"));
    assert_meta_v1(&meta);
    let why = nosa(&b, &["graph", "why", "ostree-commit:x86_64"]);
    let text = String::from_utf8_lossy(&why.stdout);
    assert!(
        text.contains("examples/overlay.d/15nestos/etc/test/test.txt"),
        "{text}"
    );
}
