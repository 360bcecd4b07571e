//! Tests of the whole generator on the packages that need no download: byte-identical output across builds, and real `rpm` reading it.

use std::path::Path;
use std::process::Command;

use crate::distro::{self, Options};
use crate::tools;

fn small_options(out: &Path) -> Options {
    Options {
        spec_dir: crate::workspace_root().join("fixtures/distro"),
        out: out.to_path_buf(),
        debs: out.join("debs"),
        arch: "x86_64".into(),
        force: false,
        small_only: true,
    }
}

fn need(tools_needed: &[(&str, &str)]) {
    if let Err(e) = tools::require(tools_needed) {
        panic!("this test needs real tools: {e}");
    }
}

#[test]
fn small_packages_are_byte_identical_across_builds() {
    need(&[("createrepo_c", "createrepo-c")]);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ra = distro::generate(&small_options(a.path())).unwrap();
    let rb = distro::generate(&small_options(b.path())).unwrap();
    assert!(!ra.up_to_date && !rb.up_to_date);
    let da = crate::tree_digests(&a.path().join("repo")).unwrap();
    let db = crate::tree_digests(&b.path().join("repo")).unwrap();
    assert!(da.iter().any(|(p, _)| p.ends_with("repomd.xml")));
    assert!(
        da.iter()
            .any(|(p, _)| p.contains("fixture-lib-1.3-1.nosa1.x86_64.rpm"))
    );
    assert_eq!(da, db);

    // Second run in the same place: nothing to do.
    let again = distro::generate(&small_options(a.path())).unwrap();
    assert!(again.up_to_date);
}

#[test]
fn rpm_reads_the_small_packages() {
    need(&[("createrepo_c", "createrepo-c"), ("rpm", "rpm")]);
    let dir = tempfile::tempdir().unwrap();
    let report = distro::generate(&small_options(dir.path())).unwrap();
    let repo = distro::repo_dir(dir.path(), "x86_64");
    let query = |args: &[&str], file: &str| -> String {
        let out = Command::new("rpm")
            .args(args)
            .arg(repo.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rpm {args:?} {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let file_of = |name: &str| {
        report
            .manifest
            .packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not built"))
            .file
            .clone()
    };
    for p in &report.manifest.packages {
        assert!(query(&["-K", "--nosignature"], &p.file).contains("digests OK"));
    }
    let requires = query(&["-qp", "--requires"], &file_of("fixture-app"));
    for want in ["fixture-lib >= 1.2", "fixture-virtual", "/usr/bin/foo"] {
        assert!(
            requires.lines().any(|l| l == want),
            "fixture-app requires {requires}"
        );
    }
    let obsoletes = query(&["-qp", "--obsoletes"], &file_of("fixture-new"));
    assert!(obsoletes.contains("fixture-old < 2"), "{obsoletes}");
    let conflicts = query(&["-qp", "--conflicts"], &file_of("fixture-conflict-a"));
    assert!(conflicts.contains("fixture-conflict-b"), "{conflicts}");
    let scripts = query(&["-qp", "--scripts"], &file_of("fixture-post"));
    assert!(
        scripts.contains("postinstall scriptlet (using /bin/sh)"),
        "{scripts}"
    );
    assert!(scripts.contains("/etc/fixture-post.conf"), "{scripts}");
    let scripts = query(&["-qp", "--scripts"], &file_of("fixture-pre"));
    assert!(
        scripts.contains("preinstall scriptlet (using /bin/sh)"),
        "{scripts}"
    );
    let lua = query(&["-qp", "--requires"], &file_of("fixture-post"));
    assert!(!lua.contains("lua"), "{lua}");
    let list = query(
        &[
            "-qp",
            "--qf",
            "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
        ],
        &file_of("filesystem"),
    );
    for want in [
        "drwxrwxrwt root:root /tmp",
        "drwx------ root:root /root",
        "lrwxrwxrwx root:root /bin",
    ] {
        assert!(list.contains(want), "{want} not in\n{list}");
    }
    let info = query(&["-qpi"], &file_of("nestos-release"));
    assert!(info.contains("Build Host  : nosa-fixture"), "{info}");
}
