//! Shared by the image tests: the fixture OS tree (unpacked RPMs, ostree layout, initramfs),
//! tool checks, and a QEMU TCG boot that waits for the serial marker.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nosa_kola::qemu::{Accel, Vm, boot_until};

pub const PACKAGES: &[&str] = &[
    "filesystem",
    "setup",
    "busybox",
    "nosa-busybox-init",
    "nestos-release",
    "kernel",
    "nosa-mini-dracut",
    "grub2-pc-modules",
    "grub2-efi-x64-modules",
    "systemd-boot-unsigned",
];
pub const MARKER: &str = "nestos booted";
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

use nosa_testkit::need;

fn sh(cmd: &str, dir: &Path) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .expect("sh");
    assert!(st.success(), "`{cmd}` failed in {}", dir.display());
}

fn packages_dir() -> PathBuf {
    nosa_testkit::fixture_packages()
}

/// Unpacks the fixture RPMs into an ostree-layout tree with an initramfs.
pub fn make_tree(tree: &Path) -> String {
    let pkgs = packages_dir();
    fs_err::create_dir_all(tree).unwrap();
    for name in PACKAGES {
        let rpm = fs_err::read_dir(&pkgs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let f = p.file_name().unwrap().to_string_lossy();
                f.strip_prefix(&format!("{name}-"))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .unwrap_or_else(|| panic!("no {name} package in {}", pkgs.display()));
        sh(
            &format!("rpm2cpio '{}' | cpio -idm --quiet", rpm.display()),
            tree,
        );
    }
    fs_err::rename(tree.join("etc"), tree.join("usr/etc")).unwrap();
    let kver = fs_err::read_dir(tree.join("usr/lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let t = tree.display();
    sh(
        &format!(
            "SOURCE_DATE_EPOCH=1700000000 {t}/usr/bin/busybox sh {t}/usr/bin/dracut -q --sysroot {t} --kver {kver} -f {t}/usr/lib/modules/{kver}/initramfs.img"
        ),
        tree,
    );
    kver
}

pub struct Boot {
    pub name: &'static str,
    pub secs: f64,
    pub ok: bool,
    pub tail: String,
    pub text: String,
}

/// Serial console lines that show which path booted.
pub const EVIDENCE: &[&str] = &[
    "GNU GRUB",
    "efi: EFI v",
    "Command line:",
    "logical blocks",
    "nosa-initramfs",
    MARKER,
];

/// Boots `args` (the disk options) under TCG, BIOS or UEFI, until the marker or the timeout,
/// with the library's [`boot_until`].
pub fn boot(name: &'static str, work: &Path, uefi: bool, disk: &[String]) -> Boot {
    let log = work.join(format!("serial-{name}.log"));
    let vm = Vm {
        accel: Accel::Tcg,
        memory_mib: 1024,
        uefi,
        disks: Vec::new(),
        extra: disk.to_vec(),
    };
    let r =
        boot_until(&vm, &log, Some(MARKER), Duration::from_secs(240)).expect("qemu-system-x86_64");
    let (ok, secs, text) = (r.ok, r.secs, r.serial);
    let tail: String = text
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "boot {name}: {} after {secs:.1}s",
        if ok { "marker seen" } else { "NO MARKER" }
    );
    for l in text
        .lines()
        .filter(|l| EVIDENCE.iter().any(|e| l.contains(e)))
    {
        eprintln!("  {name} serial: {}", l.trim());
    }
    Boot {
        name,
        secs,
        ok,
        tail,
        text,
    }
}

/// Checks the tools the image tests run.
pub fn need_tools() {
    for (tool, pkg) in [
        ("rpm2cpio", "rpm"),
        ("cpio", "cpio"),
        ("ostree", "ostree"),
        ("mke2fs", "e2fsprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("grub-mkimage", "grub-common"),
        ("qemu-img", "qemu-utils"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("sgdisk", "gdisk"),
    ] {
        need(tool, pkg);
    }
    assert!(
        Path::new(OVMF).is_file(),
        "{OVMF} missing: apt-get install ovmf"
    );
}

/// A scratch directory on a disk (not tmpfs): images are a few GiB sparse.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nosa-image-test")
        .tempdir_in(std::env::var_os("NOSA_TEST_TMP").unwrap_or_else(|| "/var/tmp".into()))
        .unwrap()
}
