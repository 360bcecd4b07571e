//! `init_workdir`: layout, git clone (with and without --branch), symlinked plain
//! directories, and refusal of non-empty destinations.

use std::path::Path;
use std::process::Command;

use nosa_config::{ConfigError, ConfigSource, init_workdir};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git is needed for these tests (Debian package: git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repo holding a one-file config, with a second branch `stable`.
fn config_repo(dir: &Path) {
    fs_err::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    git(dir, &["config", "user.email", "t@example.org"]);
    git(dir, &["config", "user.name", "t"]);
    fs_err::write(dir.join("manifest.yaml"), "ref: a\n").unwrap();
    git(dir, &["add", "manifest.yaml"]);
    git(dir, &["commit", "--quiet", "-m", "main"]);
    git(dir, &["checkout", "--quiet", "-b", "stable"]);
    fs_err::write(dir.join("manifest.yaml"), "ref: stable\n").unwrap();
    git(dir, &["commit", "--quiet", "-am", "stable"]);
    git(dir, &["checkout", "--quiet", "main"]);
}

fn assert_layout(dest: &Path) {
    for d in [
        "builds",
        "cache",
        "overrides/rpm",
        "overrides/rootfs",
        "tmp",
        "src/config",
    ] {
        assert!(dest.join(d).is_dir(), "{d} missing");
    }
    let toml = fs_err::read_to_string(dest.join("nestos.build.toml")).unwrap();
    let v: toml::Table = toml.parse().unwrap();
    let n = v["nestos"].as_table().unwrap();
    assert_eq!(n["config"].as_str(), Some("src/config"));
    assert_eq!(n["keep-last-n"].as_integer(), Some(3));
    let targets: Vec<&str> = n["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(targets, ["ostree", "oci", "qemu"]);
    assert_eq!(n["arches"].as_array().unwrap().len(), 1);
}

#[test]
fn clones_local_git_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("cfg");
    config_repo(&src);
    let dest = tmp.path().join("work");
    let report = init_workdir(&dest, src.to_str().unwrap(), None, false).unwrap();
    assert!(matches!(
        report.config,
        ConfigSource::Cloned { branch: None, .. }
    ));
    assert_layout(&dest);
    let m = fs_err::read_to_string(dest.join("src/config/manifest.yaml")).unwrap();
    assert_eq!(m, "ref: a\n");
    assert!(dest.join("src/config/.git").exists());
}

#[test]
fn clones_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("cfg");
    config_repo(&src);
    let dest = tmp.path().join("work");
    init_workdir(&dest, src.to_str().unwrap(), Some("stable"), false).unwrap();
    let m = fs_err::read_to_string(dest.join("src/config/manifest.yaml")).unwrap();
    assert_eq!(m, "ref: stable\n");
    let err = init_workdir(
        &tmp.path().join("w2"),
        src.to_str().unwrap(),
        Some("nope"),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("git clone failed"), "{err}");
}

#[test]
fn symlinks_plain_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("plain");
    fs_err::create_dir_all(&src).unwrap();
    fs_err::write(src.join("manifest.yaml"), "ref: a\n").unwrap();
    let dest = tmp.path().join("work");
    let report = init_workdir(&dest, src.to_str().unwrap(), None, false).unwrap();
    let link = dest.join("src/config");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        report.config,
        ConfigSource::Symlink {
            target: fs_err::canonicalize(&src).unwrap()
        }
    );
    assert_layout(&dest);
    let err = init_workdir(
        &tmp.path().join("w2"),
        src.to_str().unwrap(),
        Some("b"),
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("--branch needs a git repository"),
        "{err}"
    );
}

#[test]
fn refuses_non_empty_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("plain");
    fs_err::create_dir_all(&src).unwrap();
    let dest = tmp.path().join("work");
    fs_err::create_dir_all(&dest).unwrap();
    fs_err::write(dest.join("junk"), "x").unwrap();
    let err = init_workdir(&dest, src.to_str().unwrap(), None, false).unwrap_err();
    assert!(matches!(err, ConfigError::InitNotEmpty { .. }), "{err:?}");
    init_workdir(&dest, src.to_str().unwrap(), None, true).unwrap();
    assert_layout(&dest);
    // src/config exists now: refused even with force.
    let err = init_workdir(&dest, src.to_str().unwrap(), None, true).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn missing_source() {
    let tmp = tempfile::tempdir().unwrap();
    let err = init_workdir(&tmp.path().join("w"), "/nonexistent/cfg", None, false).unwrap_err();
    assert!(err.to_string().contains("no such directory"), "{err}");
}

#[test]
fn plain_directory_inside_another_repository_is_linked_not_cloned() {
    let tmp = tempfile::tempdir().unwrap();
    config_repo(&tmp.path().join("outer"));
    let src = tmp.path().join("outer/sub/config");
    fs_err::create_dir_all(&src).unwrap();
    fs_err::write(src.join("manifest.yaml"), "ref: t\n").unwrap();
    let dest = tmp.path().join("work");
    let report = init_workdir(&dest, src.to_str().unwrap(), None, false).unwrap();
    assert!(
        matches!(report.config, ConfigSource::Symlink { .. }),
        "{:?}",
        report.config
    );
    assert_layout(&dest);
}
