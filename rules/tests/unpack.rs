//! The unpack rule on real packages: the fixture distro's RPMs unpack with modes, symlinks and
//! scriptlets kept; hostile packages (an entry through a planted symlink, a `..` path, a device
//! node) are refused with an error naming the package and path, and nothing is written outside
//! the tree.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nosa_rules::unpack::unpack;
use rpm::{FileOptions, PackageBuilder};

fn fixture_repo() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/out/repo/x86_64/Packages");
    assert!(
        p.is_dir(),
        "{} is missing: run `cargo xtask fixture-distro` (make test does)",
        p.display()
    );
    p
}

fn find(prefix: &str) -> PathBuf {
    fs_err::read_dir(fixture_repo())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
        })
        .unwrap_or_else(|| panic!("{prefix} in the fixture repo"))
}

fn mode(p: &Path) -> u32 {
    fs_err::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn fixture_packages_unpack_faithfully() {
    let tmp = tempfile::tempdir().unwrap();
    let bb = tmp.path().join("busybox");
    let meta = unpack(&find("busybox"), &bb, "busybox").unwrap();
    assert_eq!(meta.name, "busybox");
    assert_eq!(mode(&bb.join("usr/bin/busybox")), 0o755);
    let sh = fs_err::read_link(bb.join("usr/bin/sh")).unwrap();
    assert!(sh.to_string_lossy().contains("busybox"), "{sh:?}");

    let setup = tmp.path().join("setup");
    unpack(&find("setup"), &setup, "setup").unwrap();
    assert_eq!(mode(&setup.join("etc/shadow")), 0);
    assert!(
        fs_err::read_to_string(setup.join("etc/passwd"))
            .unwrap()
            .starts_with("root:")
    );

    let fs = tmp.path().join("filesystem");
    unpack(&find("filesystem"), &fs, "filesystem").unwrap();
    assert_eq!(mode(&fs.join("tmp")), 0o1777);
    assert_eq!(
        fs_err::read_link(fs.join("bin")).unwrap(),
        Path::new("usr/bin")
    );

    let post = tmp.path().join("post");
    let meta = unpack(&find("fixture-post"), &post, "fixture-post").unwrap();
    let script = &meta.scripts["post"];
    assert!(
        script.script.contains("fixture-post.conf"),
        "{}",
        script.script
    );
}

fn build(dir: &Path, name: &str, f: impl FnOnce(&mut PackageBuilder)) -> PathBuf {
    let mut b = PackageBuilder::new(name, "1", "MIT", "noarch", "hostile test package");
    f(&mut b);
    let pkg = b.build().unwrap();
    let path = dir.join(format!("{name}.rpm"));
    pkg.write_file(&path).unwrap();
    path
}

#[test]
fn entry_through_a_planted_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let rpm = build(tmp.path(), "plant", |b| {
        b.with_symlink(FileOptions::symlink("/x", outside.to_str().unwrap()))
            .unwrap()
            .with_file_contents("owned\n", FileOptions::new("/x/passwd"))
            .unwrap();
    });
    let root = tmp.path().join("root");
    let e = unpack(&rpm, &root, "plant-1").unwrap_err().to_string();
    assert!(e.contains("plant-1"), "{e}");
    assert!(e.contains("/x/passwd"), "{e}");
    assert!(
        !outside.join("passwd").exists(),
        "nothing written outside the tree"
    );
}

#[test]
fn dotdot_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rpm = build(tmp.path(), "dots", |b| {
        b.with_file_contents("x\n", FileOptions::new("/usr/../../escape"))
            .unwrap();
    });
    let root = tmp.path().join("a/root");
    let e = unpack(&rpm, &root, "dots-1").unwrap_err().to_string();
    assert!(e.contains("dots-1") && e.contains("escape"), "{e}");
    assert!(!tmp.path().join("escape").exists());
    assert!(!tmp.path().join("a/escape").exists());
}
