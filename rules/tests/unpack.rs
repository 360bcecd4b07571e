//! The unpack rule on real packages: the fixture distro's RPMs unpack with modes, symlinks and
//! scriptlets kept; hostile packages (an entry through a planted symlink, a `..` path, a device
//! node written into the header by hand, a header over rpm's limits, a truncated header or
//! payload) are refused with an error naming the package and path, and nothing is written
//! outside the tree; a setuid file keeps its mode in the tree, never on the store's disk.

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

/// Where the main header starts in `rpm` (after the lead and the padded signature header).
fn main_header(rpm: &[u8]) -> usize {
    let be = |at: usize| u32::from_be_bytes(rpm[at..at + 4].try_into().unwrap()) as usize;
    let (il, dl) = (be(96 + 8), be(96 + 12));
    (96 + 16 + il * 16 + dl).div_ceil(8) * 8
}

/// Sets the mode of the package's first file in its header (`RPMTAG_FILEMODES`, tag 1030):
/// the RPM builder cannot make a device node, so the bytes are written here.
fn set_first_file_mode(rpm: &mut [u8], mode: u16) {
    let h = main_header(rpm);
    let be = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let il = be(rpm, h + 8);
    let data = h + 16 + il * 16;
    let entry = (0..il)
        .map(|i| h + 16 + i * 16)
        .find(|&e| be(rpm, e) == 1030)
        .expect("a FILEMODES tag");
    let at = data + be(rpm, entry + 8);
    rpm[at..at + 2].copy_from_slice(&mode.to_be_bytes());
}

#[test]
fn device_nodes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build(tmp.path(), "devnode", |b| {
        b.with_file_contents("x", FileOptions::new("/evil").permissions(0o644))
            .unwrap();
    });
    let mut bytes = fs_err::read(&path).unwrap();
    set_first_file_mode(&mut bytes, 0o020_644); // a character device
    fs_err::write(&path, &bytes).unwrap();
    let root = tmp.path().join("root");
    let e = unpack(&path, &root, "devnode-1").unwrap_err().to_string();
    assert!(
        e.contains("package devnode-1: /evil:") && e.contains("device nodes belong in /dev"),
        "{e}"
    );
    assert!(root.join("evil").symlink_metadata().is_err());
}

#[test]
fn setuid_files_keep_their_mode_in_the_tree_never_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build(tmp.path(), "suid", |b| {
        b.with_file_contents(
            "#!/bin/sh\n",
            FileOptions::new("/usr/bin/su").permissions(0o4755),
        )
        .unwrap();
    });
    let root = tmp.path().join("root");
    unpack(&path, &root, "suid-1").unwrap();
    // A package's setuid program is part of the OS (su, passwd): kept in the tree's modes.
    let store = nosa_cache::Store::open(tmp.path().join("store")).unwrap();
    let (_, tree) = store.ingest_dir(&root, true).unwrap();
    let e = tree
        .entries
        .iter()
        .find(|e| e.path == "usr/bin/su")
        .unwrap();
    assert_eq!(e.mode, 0o4755, "the tree records it");
    let nosa_cache::EntryKind::File { digest, .. } = e.kind else {
        panic!("a file")
    };
    assert_eq!(
        mode(&store.blob_path(&digest)),
        0o444,
        "the store's copy is no setuid program on the build host"
    );
}

#[test]
fn headers_over_rpms_limits_and_truncated_packages_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Content that zstd cannot shrink much, so that the payload is long.
    let noise: Vec<u8> = (0u32..200_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = build(tmp.path(), "big", |b| {
        b.with_file_contents(noise, FileOptions::new("/usr/share/noise"))
            .unwrap();
    });
    let good = fs_err::read(&path).unwrap();
    let h = main_header(&good);
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: [(&str, Damage, &str); 5] = [
        (
            // Found by `make fuzz` (rpm_header): an entry's offset past the data area made the
            // rpm crate index out of bounds and panic.
            "offset",
            Box::new(move |b: &mut Vec<u8>| {
                let e = h + 16 + 16; // the second index entry (the first is the region)
                b[e + 8..e + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
            }),
            "header: index entry 1 (tag",
        ),
        (
            "entries",
            Box::new(move |b: &mut Vec<u8>| {
                b[h + 8..h + 12].copy_from_slice(&0x7fff_ffffu32.to_be_bytes())
            }),
            "header: 2147483647 index entries, over rpm's limit of 65535",
        ),
        (
            "data",
            Box::new(move |b: &mut Vec<u8>| {
                b[h + 12..h + 16].copy_from_slice(&0xffff_ff00u32.to_be_bytes())
            }),
            "header: 4294967040 bytes of data, over rpm's limit",
        ),
        (
            "short",
            Box::new(move |b: &mut Vec<u8>| b.truncate(h + 100)),
            "header: it claims",
        ),
        (
            "payload",
            Box::new(move |b: &mut Vec<u8>| {
                // Half way into the payload, after the header.
                let be = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
                let payload = h + 16 + be(h + 8) * 16 + be(h + 12);
                assert!(b.len() > payload + 1000, "a payload to cut");
                b.truncate(payload + (b.len() - payload) / 2);
            }),
            "package big-1: payload:",
        ),
    ];
    for (name, damage, want) in cases {
        let mut bytes = good.clone();
        damage(&mut bytes);
        let p = tmp.path().join(format!("{name}.rpm"));
        fs_err::write(&p, &bytes).unwrap();
        let root = tmp.path().join(format!("root-{name}"));
        let e = unpack(&p, &root, "big-1").unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}
