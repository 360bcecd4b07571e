//! The example's images, built by `nosa build qemu metal metal4k`, boot under QEMU (TCG here:
//! no working KVM): qemu.qcow2 with BIOS, metal.raw with UEFI, metal4k.raw with UEFI on a disk
//! with 4096-byte logical blocks. Each boots once, until `nestos booted` (printed by the
//! fixture distro's rcS) appears on the serial console; the kernel command line carries the
//! image.yaml kargs and the ostree deployment.

mod common;

use std::time::Duration;

use common::{fixture_workdir, nosa};
use nosa_image::qemu::{Boot, boot_until};

#[test]
fn built_images_boot() {
    let (_tmp, w) = fixture_workdir();
    let out = nosa(&w, &["build", "qemu", "metal", "metal4k"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = w.join("builds/latest/x86_64");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("meta.json")).unwrap()).unwrap();
    let path = |f: &str| dir.join(meta["images"][f]["path"].as_str().unwrap());
    for f in ["qemu", "metal", "metal4k", "ostree"] {
        assert!(path(f).is_file(), "meta.json images.{f} names a file");
    }
    let check = Command::new("qemu-img")
        .args(["check"])
        .arg(path("qemu"))
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(check.status.success(), "qemu-img check");
    let gpt = Command::new("sgdisk")
        .arg("-p")
        .arg(path("metal"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&gpt.stdout);
    for label in ["BIOS-BOOT", "EFI-SYSTEM", "boot", "root"] {
        assert!(table.contains(label), "partition {label}: {table}");
    }

    let disk = |f: &str, fmt: &str| {
        vec![
            "-drive".to_string(),
            format!(
                "file={},if=virtio,format={fmt},snapshot=on",
                path(f).display()
            ),
        ]
    };
    let boots = [
        ("qemu-bios", false, disk("qemu", "qcow2")),
        ("metal-uefi", true, disk("metal", "raw")),
        (
            "metal4k-uefi",
            true,
            vec![
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=d0,format=raw,snapshot=on",
                    path("metal4k").display()
                ),
                "-device".to_string(),
                "virtio-blk-pci,drive=d0,logical_block_size=4096,physical_block_size=4096"
                    .to_string(),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, uefi, args) in boots {
        let r = boot_until(&Boot {
            disk: args,
            uefi,
            serial_log: w.join(format!("serial-{name}.log")),
            marker: "nestos booted".into(),
            timeout: Duration::from_secs(300),
        })
        .expect("qemu-system-x86_64 (Debian package qemu-system-x86)");
        eprintln!(
            "{name}: {} in {:.0} s",
            if r.ok { "booted" } else { "FAILED" },
            r.secs
        );
        if !r.ok {
            let tail: Vec<&str> = r.serial.lines().rev().take(30).collect();
            failures.push(format!(
                "{name}:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
            continue;
        }
        assert!(
            r.serial.contains("ostree="),
            "{name}: booted an ostree deployment"
        );
        assert_eq!(r.serial.contains("efi: EFI v"), uefi, "{name}: firmware");
        if name == "metal4k-uefi" {
            assert!(
                r.serial.contains("4096-byte logical blocks"),
                "{name}: 4K disk"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "no `nestos booted`:\n{}",
        failures.join("\n\n")
    );
}

use std::process::Command;
