//! `nosa build live` end to end on the example: the live artifacts under nestos-assembler's
//! names and meta.json keys; the ISO read the way coreos-installer and nestos-installer read
//! it (primary-volume 8.3 names, `nestos/` metadata, the Ignition area, each kernel-argument
//! embed area at `LBA * 2048 + offset` holding the defaults); the ISO's PXE files byte-equal
//! to the live-kernel/-initramfs/-rootfs artifacts; rootfs.img a cpio whose first member is
//! the squashfs of the deployed root; the live system booted under QEMU from the ISO as a CD
//! (BIOS and UEFI) and from the PXE files, each with an Ignition config embedded as the
//! installers embed one, reached over ssh and checked (the config applied, the build's commit
//! booted from the squashfs); a template edit rerunning the ISO node alone; and mismatched
//! templates refused with the file names and the fix; then the same build made a coreos
//! variant, which coreos-installer 0.27.0 reads and edits, and `[live] live-ignition`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{fixture_workdir, nosa, ok, summary, v1_meta_errors};
use nosa_image::iso9660;
use nosa_kola::machine::{ConfigChannel, Machine, MachineSpec};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
}

/// The file of `iso` at primary-tree `path`, read as the installers do.
fn iso_file(iso: &Path, tree: &iso9660::IsoTree, path: &str) -> Vec<u8> {
    let e = tree
        .get(path)
        .unwrap_or_else(|| panic!("{path} not in {:?}", tree.entries.keys()));
    let data = fs_err::read(iso).unwrap();
    data[e.offset() as usize..(e.offset() + e.size) as usize].to_vec()
}

/// A live machine (ISO from a CD, BIOS or UEFI, or the PXE files booted directly), with a
/// login config and a test file embedded as the installers embed Ignition configs.
fn live_machine(
    disk: &Path,
    uefi: bool,
    channel: ConfigChannel,
    scratch: &Path,
) -> Result<Machine, String> {
    Machine::boot(&MachineSpec {
        accel: nosa_kola::qemu::Accel::Tcg,
        disk: disk.to_path_buf(),
        sector_size: 2048,
        uefi,
        memory_mib: 3072,
        channel,
        test_config: Some(LIVE_FILE_CONFIG.as_bytes().to_vec()),
        kola: false,
        scratch_base: scratch.to_path_buf(),
        timeout: Duration::from_secs(900),
        extra: vec![],
    })
}

/// The test's own Ignition config: one file, which the live system must have.
const LIVE_FILE_CONFIG: &str = r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/live-check","mode":420,"contents":{"source":"data:,embedded%20config"}}]}}"#;

/// What a booted live system shows: the file Ignition wrote, the root's type, the deployment
/// the `ostree=` argument leads to, systemd's state, and the kernel's command line.
fn live_facts(m: &Machine) -> String {
    let (code, out) = m
        .ssh(
            "cat /etc/live-check; echo; findmnt -n -o FSTYPE /sysroot; \
             o=$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^ostree=//p'); readlink -f \"/sysroot$o\"; \
             systemctl is-system-running; cat /proc/cmdline",
            None,
        )
        .unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(code == 0 || out.contains("degraded"), "{code}: {out}");
    out
}

#[test]
fn live_iso_and_pxe_artifacts_boot_and_read_as_the_installers_read_them() {
    for (bin, pkg) in [
        ("xorriso", "xorriso"),
        ("mksquashfs", "squashfs-tools"),
        ("unsquashfs", "squashfs-tools"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ssh", "openssh-client"),
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{bin} is missing: install Debian package {pkg} (make test does)"
        );
    }
    coreos_installer();
    let (_tmp, w) = fixture_workdir();
    ok(nosa(&w, &["buildextend-live"]), "buildextend-live");
    let dir = w.join("builds/latest/x86_64");
    let meta = json(&dir.join("meta.json"));
    let errors = v1_meta_errors(&meta);
    assert!(errors.is_empty(), "{errors:#?}");
    let id = meta["buildid"].as_str().unwrap();
    let name = meta["name"].as_str().unwrap();
    let base = format!("{name}-{id}");
    let artifact = |key: &str, file: String| {
        let entry = &meta["images"][key];
        assert_eq!(entry["path"], file.as_str(), "{meta:#}");
        assert_eq!(entry["skip-compression"], true, "{meta:#}");
        let bytes = fs_err::read(dir.join(&file)).unwrap();
        assert_eq!(entry["size"], bytes.len() as u64);
        assert_eq!(
            entry["sha256"].as_str().unwrap(),
            nosa_cache::sha256_file(&dir.join(&file)).unwrap().0
        );
        bytes
    };
    let kernel = artifact("live-kernel", format!("{base}-live-kernel-x86_64"));
    let initramfs = artifact(
        "live-initramfs",
        format!("{base}-live-initramfs.x86_64.img"),
    );
    let rootfs = artifact("live-rootfs", format!("{base}-live-rootfs.x86_64.img"));
    artifact("live-iso", format!("{base}-live.x86_64.iso"));
    let iso = dir.join(format!("{base}-live.x86_64.iso"));

    // The primary tree, as the installers look files up.
    let tree = iso9660::read_tree(&iso).unwrap();
    let volid: String = base.chars().take(32).collect();
    assert_eq!(tree.volume_id, volid);
    let igninfo: serde_json::Value =
        serde_json::from_slice(&iso_file(&iso, &tree, "NESTOS/IGNINFO.JSO")).unwrap();
    assert_eq!(igninfo, serde_json::json!({"file": "images/ignition.img"}));
    let area = iso_file(&iso, &tree, "IMAGES/IGNITION.IMG");
    assert_eq!(area.len(), 256 * 1024);
    assert!(area.iter().all(|&b| b == 0));
    let features: serde_json::Value =
        serde_json::from_slice(&iso_file(&iso, &tree, "NESTOS/FEATURES.JSO")).unwrap();
    assert!(features.is_object(), "{features}");
    // `iso extract pxe`: the ISO's PXE files are the artifacts.
    assert!(iso_file(&iso, &tree, "IMAGES/PXEBOOT/VMLINUZ") == kernel);
    assert!(iso_file(&iso, &tree, "IMAGES/PXEBOOT/INITRD.IMG") == initramfs);
    assert!(iso_file(&iso, &tree, "IMAGES/PXEBOOT/ROOTFS.IMG") == rootfs);

    // kargs.json: each area holds the defaults, `\n`, then `#` padding, in the ISO itself.
    let kargs: serde_json::Value =
        serde_json::from_slice(&iso_file(&iso, &tree, "NESTOS/KARGS.JSO")).unwrap();
    let default = kargs["default"].as_str().unwrap();
    assert!(
        default.contains(&format!("nestos.liveiso={volid}")),
        "{kargs:#}"
    );
    assert!(
        !default.split(' ').any(|a| a.starts_with("root=")),
        "{kargs:#}"
    );
    let size = kargs["size"].as_u64().unwrap() as usize;
    assert!(size > default.len() && size <= 2048, "{kargs:#}");
    let files = kargs["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["EFI/nestos/grub.cfg", "isolinux/isolinux.cfg"]);
    let data = fs_err::read(&iso).unwrap();
    for f in files {
        let e = tree.get(f["path"].as_str().unwrap()).unwrap();
        let start = (e.offset() + f["offset"].as_u64().unwrap()) as usize;
        let area = &data[start..start + size];
        let want = format!("{default}\n");
        assert!(area.starts_with(want.as_bytes()), "{f}");
        assert!(area[want.len()..].iter().all(|&b| b == b'#'), "{f}");
    }

    // rootfs.img: a newc cpio, root.squashfs first, its data at byte 124; the squashfs holds
    // the deployed physical root.
    let members = nosa_image::cpio::members(&rootfs).unwrap();
    assert_eq!(members[0].name, "root.squashfs");
    assert_eq!(members[0].offset, 124);
    assert_eq!(&rootfs[124..128], b"hsqs");
    let squashfs = w.join("root.squashfs");
    fs_err::write(&squashfs, &rootfs[124..124 + members[0].size as usize]).unwrap();
    let list = ok(
        Command::new("unsquashfs")
            .args(["-l", "-d", ""])
            .arg(&squashfs)
            .output()
            .unwrap(),
        "unsquashfs -l",
    );
    let list = String::from_utf8_lossy(&list.stdout);
    let commit = meta["ostree-commit"].as_str().unwrap();
    assert!(
        list.contains(&format!("/ostree/deploy/nestos/deploy/{commit}.0/usr/bin")),
        "{}",
        &list[..list.len().min(2000)]
    );
    // The live initramfs ends with a cpio holding the stamp the installers look for and the
    // live root's files.
    let from = initramfs.len().saturating_sub(64 << 10);
    let appended = (from..initramfs.len() - 6)
        .filter(|&i| &initramfs[i..i + 6] == b"070701")
        .find_map(|i| nosa_image::cpio::members(&initramfs[i..]).ok())
        .expect("a newc cpio at the end of the live initramfs");
    let names: Vec<&str> = appended.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "etc/nestos-live-initramfs",
        "usr/sbin/nosa-live-root",
        "etc/systemd/system/sysroot.mount",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }

    // The live system boots from the ISO as a CD, BIOS and UEFI, and from the PXE files
    // with rootfs.img appended to the initramfs; each applies its embedded Ignition config,
    // runs from the squashfs under a layer in memory, and has booted the build's commit.
    let scratch = w.join("tmp/live-machines");
    let pxe_kargs = "ignition.firstboot ignition.platform.id=metal console=ttyS0,115200n8";
    let kernel_path = dir.join(format!("{base}-live-kernel-x86_64"));
    // Each machine is checked in the thread that booted it: QEMU dies with that thread.
    let boot_and_check = |disk: &Path, uefi: bool, channel: ConfigChannel| {
        live_machine(disk, uefi, channel, &scratch).map(|m| (live_facts(&m), m.console_tail(40)))
    };
    let machines = std::thread::scope(|s| {
        let bios = s.spawn(|| boot_and_check(&iso, false, ConfigChannel::LiveIso));
        let uefi = s.spawn(|| boot_and_check(&iso, true, ConfigChannel::LiveIso));
        let pxe = s.spawn(|| {
            boot_and_check(
                &kernel_path,
                false,
                ConfigChannel::LivePxe {
                    initramfs: dir.join(format!("{base}-live-initramfs.x86_64.img")),
                    rootfs: Some(dir.join(format!("{base}-live-rootfs.x86_64.img"))),
                    kargs: pxe_kargs.to_string(),
                },
            )
        });
        [
            ("ISO BIOS", bios.join().unwrap()),
            ("ISO UEFI", uefi.join().unwrap()),
            ("PXE", pxe.join().unwrap()),
        ]
    });
    for (what, m) in machines {
        let (facts, console) = m.unwrap_or_else(|e| panic!("{what}: {e}"));
        let lines: Vec<&str> = facts.lines().collect();
        assert_eq!(lines[0], "embedded config", "{what}: {facts}");
        assert_eq!(lines[1], "overlay", "{what}: {facts}");
        assert!(
            lines[2].ends_with(&format!("/ostree/deploy/nestos/deploy/{commit}.0")),
            "{what}: {facts}"
        );
        assert_eq!(lines[3], "running", "{what}: {facts}\n{console}");
        if what == "PXE" {
            assert!(lines[4].starts_with(pxe_kargs), "{what}: {facts}");
        } else {
            // The ISO's arguments, from the embed areas (isolinux for BIOS, grub for UEFI).
            assert!(lines[4].contains(default), "{what}: {facts}");
        }
    }

    // A template edit reruns the ISO node only, in the same build.
    let cfg = w.join("src/config/live/isolinux/isolinux.cfg");
    let text = fs_err::read_to_string(&cfg).unwrap();
    fs_err::write(&cfg, text.replace("timeout 30", "timeout 20")).unwrap();
    let out = ok(nosa(&w, &["build", "live", "--json"]), "build live again");
    let ran: Vec<(String, String)> = summary(&out)
        .into_iter()
        .filter(|(_, s)| s == "ran")
        .collect();
    assert_eq!(
        ran,
        [("live:x86_64".to_string(), "ran".to_string())],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = json(&dir.join("meta.json"));
    assert_eq!(again["buildid"], meta["buildid"]);
    assert_ne!(
        again["images"]["live-iso"]["sha256"],
        meta["images"]["live-iso"]["sha256"]
    );
    assert_eq!(
        again["images"]["live-rootfs"]["sha256"],
        meta["images"]["live-rootfs"]["sha256"]
    );

    // Templates that disagree on the embed area are refused, naming both and the fix.
    let grub = w.join("src/config/live/EFI/nestos/grub.cfg");
    let text = fs_err::read_to_string(&grub).unwrap();
    fs_err::write(&grub, text.replacen("##", "#", 1)).unwrap();
    let out = nosa(&w, &["build", "live"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let flat: String = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("live/EFI/nestos/grub.cfg and live/isolinux/isolinux.cfg disagree"),
        "{err}"
    );
    assert!(flat.contains("the same number of `#`"), "{err}");
    fs_err::write(&grub, text).unwrap();

    // The same build as a coreos variant, for coreos-installer (no second OS build).
    coreos_installer_reads_and_edits_a_coreos_variant(&w);
}

/// coreos-installer 0.27.0 as `scripts/install-deps.sh test` builds it (`make test` does), or
/// `NOSA_COREOS_INSTALLER`.
fn coreos_installer() -> std::path::PathBuf {
    let p = std::env::var_os("NOSA_COREOS_INSTALLER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            "/var/cache/nosa-tools/coreos-installer-0.27.0/bin/coreos-installer".into()
        });
    assert!(
        p.is_file(),
        "{} is missing: run `scripts/install-deps.sh test` (make test does), which builds \
         coreos-installer 0.27.0 from crates.io, or set NOSA_COREOS_INSTALLER",
        p.display()
    );
    p
}

/// Runs coreos-installer with `args`; its stdout.
fn ci(args: &[&str]) -> String {
    let out = ok(
        Command::new(coreos_installer())
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap(),
        &format!("coreos-installer {args:?}"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// coreos-installer on the build in `w` made a coreos variant: it reads and edits the ISO,
/// extracts the PXE files as built, customizes the initramfs; then `[live] live-ignition`.
fn coreos_installer_reads_and_edits_a_coreos_variant(w: &Path) {
    // A coreos-variant config: the templates' markers say COREOS_.
    let live = w.join("src/config/live");
    for f in ["isolinux/isolinux.cfg", "EFI/nestos/grub.cfg"] {
        let p = live.join(f);
        let text = fs_err::read_to_string(&p).unwrap();
        fs_err::write(
            &p,
            text.replace("NESTOS_KARG_EMBED_AREA", "COREOS_KARG_EMBED_AREA"),
        )
        .unwrap();
    }
    ok(nosa(w, &["build", "live"]), "build live, coreos variant");
    let dir = w.join("builds/latest/x86_64");
    let meta = json(&dir.join("meta.json"));
    let path = |key: &str| dir.join(meta["images"][key]["path"].as_str().unwrap());
    let t = tempfile::tempdir().unwrap();
    let iso = t.path().join("live.iso");
    fs_err::copy(path("live-iso"), &iso).unwrap();
    let mut perms = fs_err::metadata(&iso).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs_err::set_permissions(&iso, perms).unwrap();
    let s = iso.to_str().unwrap();

    // iso kargs show / modify / reset.
    let tree = iso9660::read_tree(&iso).unwrap();
    let kargs: serde_json::Value =
        serde_json::from_slice(&iso_file(&iso, &tree, "COREOS/KARGS.JSO")).unwrap();
    let default = kargs["default"].as_str().unwrap();
    assert!(default.contains("coreos.liveiso="), "{kargs:#}");
    assert_eq!(ci(&["iso", "kargs", "show", s]).trim(), default);
    assert_eq!(
        ci(&["iso", "kargs", "show", "--default", s]).trim(),
        default
    );
    ci(&["iso", "kargs", "modify", "--append", "nosa.test=1", s]);
    let modified = format!("{default} nosa.test=1");
    assert_eq!(ci(&["iso", "kargs", "show", s]).trim(), modified);
    // Both templates were rewritten in place, the same way.
    let data = fs_err::read(&iso).unwrap();
    let size = kargs["size"].as_u64().unwrap() as usize;
    let areas: Vec<&[u8]> = kargs["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let e = tree.get(f["path"].as_str().unwrap()).unwrap();
            let start = (e.offset() + f["offset"].as_u64().unwrap()) as usize;
            &data[start..start + size]
        })
        .collect();
    assert_eq!(areas.len(), 2);
    assert_eq!(areas[0], areas[1]);
    assert!(areas[0].starts_with(format!("{modified}\n").as_bytes()));
    ci(&["iso", "kargs", "reset", s]);
    assert_eq!(ci(&["iso", "kargs", "show", s]).trim(), default);

    // iso ignition embed / show, and nosa's own embedding read back by coreos-installer.
    let config = br#"{"ignition":{"version":"3.3.0"}}"#;
    let cfg = t.path().join("config.ign");
    fs_err::write(&cfg, config).unwrap();
    ci(&["iso", "ignition", "embed", "-i", cfg.to_str().unwrap(), s]);
    assert_eq!(ci(&["iso", "ignition", "show", s]).as_bytes(), config);
    ci(&["iso", "ignition", "remove", s]);
    let other = br#"{"ignition":{"version":"3.3.0"},"passwd":{}}"#;
    nosa_image::live::embed_ignition(&iso, other).unwrap();
    assert_eq!(ci(&["iso", "ignition", "show", s]).as_bytes(), other);
    ci(&["iso", "ignition", "remove", s]);

    // iso extract pxe: byte-identical to the build's PXE artifacts.
    let out = t.path().join("pxe");
    fs_err::create_dir(&out).unwrap();
    ci(&["iso", "extract", "pxe", "-o", out.to_str().unwrap(), s]);
    for (file, key) in [
        ("live-vmlinuz", "live-kernel"),
        ("live-initrd.img", "live-initramfs"),
        ("live-rootfs.img", "live-rootfs"),
    ] {
        assert!(
            fs_err::read(out.join(file)).unwrap() == fs_err::read(path(key)).unwrap(),
            "{file} differs from {key}"
        );
    }

    // pxe customize with a live Ignition config: the initramfs, then the config.
    let initramfs = path("live-initramfs");
    let custom = t.path().join("custom.img");
    ci(&[
        "pxe",
        "customize",
        "--live-ignition",
        cfg.to_str().unwrap(),
        "-o",
        custom.to_str().unwrap(),
        initramfs.to_str().unwrap(),
    ]);
    let base = fs_err::read(&initramfs).unwrap();
    let customized = fs_err::read(&custom).unwrap();
    assert!(customized.len() > base.len() && customized.starts_with(&base));

    // `[live] live-ignition`: the live-custom node embeds it into copies of the ISO and the
    // initramfs; coreos-installer finds it there; only that node runs, in the same build,
    // and again only it when the config alone changes.
    fs_err::write(w.join("live.ign"), config).unwrap();
    let toml = w.join("nestos.build.toml");
    let mut text = fs_err::read_to_string(&toml).unwrap();
    text.push_str("\n[live]\nlive-ignition = \"live.ign\"\n");
    fs_err::write(&toml, &text).unwrap();
    let ran = |out: &Output| -> Vec<String> {
        summary(out)
            .into_iter()
            .filter(|(_, s)| s == "ran")
            .map(|(id, _)| id)
            .collect()
    };
    for (round, cfg_bytes) in [(1, &config[..]), (2, &other[..])] {
        fs_err::write(w.join("live.ign"), cfg_bytes).unwrap();
        let out = ok(
            nosa(w, &["build", "live", "--json"]),
            "build live, customized",
        );
        assert_eq!(
            ran(&out),
            ["live-custom:x86_64"],
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta2 = json(&dir.join("meta.json"));
        assert_eq!(meta2["buildid"], meta["buildid"]);
        assert!(v1_meta_errors(&meta2).is_empty(), "{meta2:#}");
        let custom_iso = dir.join(meta2["images"]["live-iso-custom"]["path"].as_str().unwrap());
        assert_eq!(
            ci(&["iso", "ignition", "show", custom_iso.to_str().unwrap()]).as_bytes(),
            cfg_bytes
        );
        let custom_initrd = fs_err::read(
            dir.join(
                meta2["images"]["live-initramfs-custom"]["path"]
                    .as_str()
                    .unwrap(),
            ),
        )
        .unwrap();
        let mut want = base.clone();
        want.extend(nosa_image::live::ignition_cpio(cfg_bytes));
        assert!(custom_initrd == want, "round {round}");
    }
    // A config that is not Ignition's is refused, naming the file.
    fs_err::write(w.join("live.ign"), "not json").unwrap();
    let out = nosa(w, &["build", "live"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("live.ign ([live] live-ignition)"), "{err}");
}
