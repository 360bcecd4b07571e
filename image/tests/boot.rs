//! The acceptance test: a real OS tree from the fixture distro, committed, deployed, built into
//! qemu (qcow2), metal (raw, 512-byte blocks) and metal4k (raw, 4096-byte blocks) disks, and
//! booted under QEMU TCG (BIOS/SeaBIOS and UEFI/OVMF) until `nestos booted` appears on the
//! serial console.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{MARKER, boot, make_tree, need_tools, scratch};

use nosa_commit::{CommitRequest, MetaValue, RepoMode, commit_tree};
use nosa_image::{BASE_KARGS, DiskLayout, build_disk, deploy_sysroot, raw_to_qcow2};

#[test]
fn commit_deploy_build_and_boot_bios_uefi_4k() {
    need_tools();
    let tmp = scratch();
    let work = tmp.path();
    let tree = work.join("tree");
    let kver = make_tree(&tree);
    assert!(
        tree.join(format!("usr/lib/modules/{kver}/initramfs.img"))
            .is_file()
    );

    let repo = work.join("repo");
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "version".to_string(),
        MetaValue::Str("1.0-test".to_string()),
    );
    let commit = commit_tree(&CommitRequest {
        repo: repo.clone(),
        mode: RepoMode::Archive,
        rootfs: tree.clone(),
        ref_name: "nestos/x86_64/test".into(),
        metadata,
        timestamp: 1_700_000_000,
        ..Default::default()
    })
    .unwrap();

    let mut kargs: Vec<String> = BASE_KARGS.iter().map(|s| s.to_string()).collect();
    kargs.push("ignition.platform.id=qemu".into());
    let sysroot = deploy_sysroot(
        &repo,
        "nestos/x86_64/test",
        "nestos",
        &kargs,
        &work.join("sysroot"),
    )
    .unwrap();
    assert_eq!(sysroot.checksum, commit.checksum);
    let e = &sysroot.entries[0];
    assert!(e.options.contains("root=LABEL=root"), "{}", e.options);
    assert!(e.options.contains("ostree=/ostree/boot."), "{}", e.options);

    let raw512 = work.join("test-1.0-metal.x86_64.raw");
    let layout = DiskLayout {
        sector_size: 512,
        root_size: 512 << 20,
        seed: commit.checksum.clone(),
        timestamp: 1_700_000_000,
        root_fs: "ext4".into(),
    };
    let t = Instant::now();
    let info = build_disk(&sysroot, &layout, &raw512).unwrap();
    eprintln!("build 512: {:.1}s", t.elapsed().as_secs_f64());
    assert!(info.bios);
    // sgdisk reads the 512-byte table back and verifies it.
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(&raw512)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    let qcow2 = work.join("test-1.0-qemu.x86_64.qcow2");
    raw_to_qcow2(&raw512, &qcow2).unwrap();

    let raw4k = work.join("test-1.0-metal4k.x86_64.raw");
    let t = Instant::now();
    let info4k = build_disk(
        &sysroot,
        &DiskLayout {
            sector_size: 4096,
            ..layout.clone()
        },
        &raw4k,
    )
    .unwrap();
    eprintln!("build 4k: {:.1}s", t.elapsed().as_secs_f64());
    assert!(!info4k.bios);

    let virtio = |f: &Path, fmt: &str| {
        vec![
            "-drive".to_string(),
            format!("file={},if=virtio,format={fmt}", f.display()),
        ]
    };
    let boots = [
        boot("bios-qcow2", work, false, &virtio(&qcow2, "qcow2")),
        boot("uefi-512", work, true, &virtio(&raw512, "raw")),
        boot(
            "uefi-4k",
            work,
            true,
            &[
                "-drive".to_string(),
                format!("file={},if=none,id=d0,format=raw", raw4k.display()),
                "-device".to_string(),
                "virtio-blk-pci,drive=d0,logical_block_size=4096,physical_block_size=4096"
                    .to_string(),
            ],
        ),
    ];
    // Which firmware and block size each boot really used.
    let [bios, uefi, uefi4k] = &boots;
    if bios.ok {
        assert!(
            !bios.text.contains("efi: EFI v"),
            "the BIOS boot went through UEFI"
        );
    }
    for b in [uefi, uefi4k] {
        if b.ok {
            assert!(
                b.text.contains("efi: EFI v"),
                "{}: no EFI firmware line",
                b.name
            );
        }
    }
    if uefi4k.ok {
        assert!(
            uefi4k.text.contains("4096-byte logical blocks"),
            "the 4k boot did not see 4096-byte blocks"
        );
    }
    let failed: Vec<String> = boots
        .iter()
        .filter(|b| !b.ok)
        .map(|b| format!("{} ({:.0}s):\n{}", b.name, b.secs, b.tail))
        .collect();
    assert!(
        failed.is_empty(),
        "no `{MARKER}` on the serial console:\n{}",
        failed.join("\n\n")
    );
}
