//! The example's images, built by `nosa build qemu metal metal4k`, boot under QEMU and pass
//! `nosa kola run` (TCG here: no working KVM): `nestos.basic` on qemu.qcow2 with BIOS, metal.raw
//! with UEFI and metal4k.raw with UEFI on a disk with 4096-byte logical blocks, and the example's
//! external test on qemu. Then, on the same workdir (one test: every boot is expensive):
//! results are cached by image and test; a new failing test runs alone and fails; the
//! denylist skips it; an extra-kargs change rebuilds the image and reruns its tests and no
//! compose node; `nosa run --ssh` logs in and runs a command; `nosa virt-install` prints the
//! import;
//! `rootfs: xfs` rebuilds only the image, which boots with an xfs root; buildextend-openstack
//! adds the openstack image to the same build.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{fixture_workdir, nosa, summary};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(p).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report's rows: (test, image) -> (status, detail).
fn report(w: &Path) -> Vec<(String, String, String, String)> {
    let r = json(&w.join("tmp/kola/reports/report.json"));
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["test"].as_str().unwrap().to_string(),
                t["image"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row<'a>(
    rows: &'a [(String, String, String, String)],
    test: &str,
    image: &str,
) -> &'a (String, String, String, String) {
    rows.iter()
        .find(|r| r.0 == test && r.1 == image)
        .unwrap_or_else(|| panic!("no report row for {test} on {image}: {rows:?}"))
}

/// The `--json` summary of a build says exactly the qemu image (its image-fs and image nodes)
/// ran.
fn assert_only_qemu_image_ran(out: &std::process::Output) {
    let ran: Vec<String> = summary(out)
        .into_iter()
        .filter(|(_, s)| s == "ran")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ran,
        ["image-fs:x86_64:qemu", "image:x86_64:qemu"],
        "only the qemu image ran"
    );
}

#[test]
fn built_images_boot_and_pass_kola() {
    let (_tmp, w) = fixture_workdir();
    let out = nosa(&w, &["build", "qemu", "metal", "metal4k"]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = w.join("builds/latest/x86_64");
    let meta = json(&dir.join("meta.json"));
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
        .expect("sgdisk (Debian package gdisk)");
    // nestos-assembler's x86_64 layout: BIOS-BOOT 1 MiB, EFI-SYSTEM 127 MiB, boot 384 MiB,
    // root the rest, from 1 MiB; 512-byte sectors read back by sgdisk...
    let table = String::from_utf8_lossy(&gpt.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first().is_some_and(|n| n.parse::<u32>().is_ok()))
        .collect();
    let want = [
        ("1", "2048", "4095", "EF02", "BIOS-BOOT"),
        ("2", "4096", "264191", "EF00", "EFI-SYSTEM"),
        ("3", "264192", "1050623", "8300", "boot"),
    ];
    assert_eq!(rows.len(), 4, "{table}");
    for (row, (n, start, end, code, name)) in rows.iter().zip(want) {
        assert_eq!(
            (row[0], row[1], row[2], row[5], row[6]),
            (n, start, end, code, name),
            "{table}"
        );
    }
    assert_eq!(
        (rows[3][1], rows[3][5], rows[3][6]),
        ("1050624", "8300", "root")
    );
    // ...and 4096-byte sectors read back by fdisk.
    let fdisk = Command::new("fdisk")
        .args(["-l", "-b", "4096"])
        .arg(path("metal4k"))
        .output()
        .expect("fdisk (Debian package fdisk)");
    let table4k = String::from_utf8_lossy(&fdisk.stdout);
    let starts_ends: Vec<(u64, u64)> = table4k
        .lines()
        .filter(|l| l.contains("metal4k.x86_64.raw") && !l.starts_with("Disk"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(
        &starts_ends[..3],
        &[(256, 511), (512, 33023), (33024, 131327)],
        "{table4k}"
    );
    assert_eq!(starts_ends[3].0, 131328, "{table4k}");

    // metal and metal4k share their filesystems: one image-fs node for both.
    let out = nosa(&w, &["graph", "show"]);
    assert!(out.status.success(), "{}", text(&out));
    let show = String::from_utf8_lossy(&out.stdout);
    for line in [
        "image:x86_64:metal <- image-fs:x86_64:metal\n",
        "image:x86_64:metal4k <- image-fs:x86_64:metal\n",
    ] {
        assert!(show.contains(line), "{line:?} in:\n{show}");
    }

    // 1. Every test on every image, each in one boot.
    let out = nosa(&w, &["kola", "run"]);
    assert!(out.status.success(), "kola run: {}", text(&out));
    let rows = report(&w);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (test, image, firmware) in [
        ("nestos.basic", "qemu", "bios"),
        ("nestos.basic", "metal", "uefi"),
        ("nestos.basic", "metal4k", "uefi"),
        ("ext.config.basic", "qemu", "bios"),
    ] {
        let r = row(&rows, test, image);
        assert_eq!(r.2, "PASS", "{test} on {image}: {r:?}");
        assert!(r.3.contains(firmware) && r.3.ends_with("ran"), "{r:?}");
        let result = json(&w.join(format!("tmp/kola/x86_64/{image}/{test}/result.json")));
        assert_eq!(result["commit"], meta["ostree-commit"], "{test} on {image}");
    }
    let basic4k =
        fs_err::read_to_string(w.join("tmp/kola/x86_64/metal4k/nestos.basic/output.txt")).unwrap();
    for line in [
        "PASS: root disk has 4096-byte logical blocks",
        "PASS: booted with UEFI",
        "PASS: file '/etc/test/test.txt'",
        "PASS: karg 'ignition.platform.id=metal'",
        "PASS: os-release is the committed one",
        "0 failed",
    ] {
        assert!(basic4k.contains(line), "{line:?} in:\n{basic4k}");
    }
    let txt = fs_err::read_to_string(w.join("tmp/kola/reports/report.txt")).unwrap();
    assert!(
        txt.contains("Summary: 4 tests: 4 PASS, 0 FAIL, 0 ERROR, 0 SKIP"),
        "{txt}"
    );

    // 2. Unchanged images and tests: every result is cached, nothing boots.
    let t = Instant::now();
    let out = nosa(&w, &["kola-run"]);
    assert!(out.status.success(), "kola-run: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 PASS"), "{stdout}");
    assert_eq!(stdout.matches(", cached").count(), 4, "{stdout}");
    eprintln!("cached kola-run: {:.1} s", t.elapsed().as_secs_f64());

    // 3. A new, failing external test: it alone runs, and fails with its output kept.
    let cfg = w.join("src/config");
    let tdir = cfg.join("tests/kola/fails");
    fs_err::create_dir_all(&tdir).unwrap();
    fs_err::write(
        tdir.join("test.sh"),
        "#!/bin/sh\necho \"about to fail on $(uname -m)\"\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(tdir.join("test.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = nosa(&w, &["kola", "run"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing test fails the run: {}",
        text(&out)
    );
    let rows = report(&w);
    let fails = row(&rows, "ext.config.fails", "qemu");
    assert!(fails.2 == "FAIL" && fails.3.ends_with("ran"), "{fails:?}");
    assert_eq!(
        rows.iter().filter(|r| r.3.ends_with("cached")).count(),
        4,
        "the other tests are cached: {rows:?}"
    );
    let output =
        fs_err::read_to_string(w.join("tmp/kola/x86_64/qemu/ext.config.fails/output.txt")).unwrap();
    assert!(output.contains("about to fail on x86_64"), "{output}");
    assert_eq!(
        json(&w.join("tmp/kola/x86_64/qemu/ext.config.fails/result.json"))["rc"],
        3
    );

    // 4. The denylist skips it (no boot).
    fs_err::write(
        cfg.join("kola-denylist.yaml"),
        "- pattern: ext.config.fails\n  tracker: https://example.invalid/1\n",
    )
    .unwrap();
    let out = nosa(&w, &["kola", "run"]);
    assert!(out.status.success(), "denylisted: {}", text(&out));
    let rows = report(&w);
    assert_eq!(row(&rows, "ext.config.fails", "qemu").2, "SKIP", "{rows:?}");

    // 5. An extra karg: the plan reruns image nodes and kola nodes, no compose node; the
    // rebuilt qemu image's basic test runs again and sees the karg.
    let image_yaml = cfg.join("image.yaml");
    let y = fs_err::read_to_string(&image_yaml).unwrap();
    fs_err::write(
        &image_yaml,
        y.replace(
            "  - console=ttyS0,115200n8\n",
            "  - console=ttyS0,115200n8\n  - nosa.kargtest=1\n",
        ),
    )
    .unwrap();
    let out = nosa(&w, &["graph", "plan", "--json", "kola"]);
    assert!(out.status.success(), "plan: {}", text(&out));
    let plan: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let will_run: Vec<String> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["action"] != "up-to-date")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!will_run.is_empty());
    for id in &will_run {
        assert!(
            id.starts_with("image:") || id.starts_with("image-fs:") || id.starts_with("kola:"),
            "only image and kola nodes rerun, not {id}: {will_run:?}"
        );
    }
    assert!(will_run.contains(&"image:x86_64:qemu".to_string()));
    let out = nosa(&w, &["build", "--json", "qemu"]);
    assert!(out.status.success(), "build qemu: {}", text(&out));
    assert_only_qemu_image_ran(&out);
    let out = nosa(&w, &["kola", "run", "--image", "qemu", "nestos.basic"]);
    assert!(out.status.success(), "kola after karg: {}", text(&out));
    let rows = report(&w);
    assert!(
        row(&rows, "nestos.basic", "qemu").3.ends_with("ran"),
        "{rows:?}"
    );
    let basic =
        fs_err::read_to_string(w.join("tmp/kola/x86_64/qemu/nestos.basic/output.txt")).unwrap();
    assert!(basic.contains("PASS: karg 'nosa.kargtest=1'"), "{basic}");

    // 6. `nosa run`: a config passed with --ignition; --authorize-key writes one that
    // authorizes a key (merging the user's), which ignition-validate accepts; --ssh boots,
    // logs in as `nest` with a generated key and runs a command; the workdir is shared over 9p.
    let out = nosa(&w, &["run", "--dry-run", "--ignition", "image.yaml"]);
    assert!(!out.status.success(), "a missing ignition file is an error");
    fs_err::write(
        w.join("config.ign"),
        "{\"ignition\": {\"version\": \"3.3.0\"}}",
    )
    .unwrap();
    nosa_testkit::ignition_validate(&w.join("config.ign"));
    let out = nosa(&w, &["run", "--dry-run", "--ignition", "config.ign"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.contains("name=opt/com.coreos/config,file=")
            && line.contains("hostfwd=tcp:127.0.0.1:"),
        "{line}"
    );
    let keys = w.join("tmp/test-key");
    fs_err::create_dir_all(&keys).unwrap();
    let (_, public) = nosa_kola::machine::generate_key(&keys).unwrap();
    let pubfile = keys.join("id_ed25519.pub");
    let out = nosa(
        &w,
        &[
            "run",
            "--dry-run",
            "--ignition",
            "config.ign",
            "--authorize-key",
            pubfile.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = w.join("tmp/run/config.ign");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("file={}", written.display())),
        "{}",
        text(&out)
    );
    let cfg = json(&written);
    assert_eq!(cfg["passwd"]["users"][0]["name"], "nest");
    assert_eq!(cfg["passwd"]["users"][0]["sshAuthorizedKeys"][0], public);
    assert!(
        cfg["ignition"]["config"]["merge"][0]["source"]
            .as_str()
            .unwrap()
            .starts_with("data:;base64,"),
        "{cfg}"
    );
    nosa_testkit::ignition_validate(&written);
    let out = nosa(
        &w,
        &[
            "run",
            "--ssh",
            "--",
            "systemctl is-system-running --wait; echo run-$((6 * 7)); \
             sudo modprobe 9pnet_virtio && sudo mount -t 9p -o trans=virtio,ro workdir /mnt \
             && cat /mnt/config.ign",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nosa run --ssh: {}", text(&out));
    assert!(stdout.lines().next() == Some("running"), "{stdout}");
    assert!(stdout.contains("run-42"), "the command ran: {stdout}");
    assert!(
        stdout.contains("{\"ignition\": {\"version\": \"3.3.0\"}}"),
        "the guest read the workdir's config.ign over 9p: {stdout}"
    );

    // 7. virt-install: the import command for the latest qemu image.
    let out = nosa(&w, &["virt-install"]);
    assert!(out.status.success(), "{}", text(&out));
    let cmd = String::from_utf8_lossy(&out.stdout);
    let qcow2 = fs_err::canonicalize(path("qemu")).unwrap();
    assert!(
        cmd.starts_with("virt-install ") && cmd.contains("--import"),
        "{cmd}"
    );
    assert!(
        cmd.contains(&format!("backing_store={}", qcow2.display())),
        "{cmd} names {}",
        qcow2.display()
    );

    // 8. `rootfs: xfs` (a loop mount: this test runs as root, as make test does): only the
    // image reruns, and it boots with an xfs root.
    let y = fs_err::read_to_string(&image_yaml).unwrap();
    fs_err::write(&image_yaml, format!("{y}rootfs: xfs\n")).unwrap();
    let out = nosa(&w, &["build", "--json", "qemu"]);
    assert!(out.status.success(), "build qemu with xfs: {}", text(&out));
    assert_only_qemu_image_ran(&out);
    let out = nosa(&w, &["kola", "run", "--image", "qemu", "nestos.basic"]);
    assert!(out.status.success(), "kola on xfs: {}", text(&out));
    let basic =
        fs_err::read_to_string(w.join("tmp/kola/x86_64/qemu/nestos.basic/output.txt")).unwrap();
    assert!(basic.contains("PASS: root filesystem is 'xfs'"), "{basic}");

    // 9. buildextend-openstack adds the openstack qcow2 to the same build.
    let out = nosa(&w, &["buildextend-openstack"]);
    assert!(
        out.status.success(),
        "buildextend-openstack: {}",
        text(&out)
    );
    let meta2 = json(&dir.join("meta.json"));
    assert_eq!(meta2["buildid"], meta["buildid"], "no new build id");
    let openstack = dir.join(meta2["images"]["openstack"]["path"].as_str().unwrap());
    assert!(
        openstack
            .to_string_lossy()
            .ends_with("-openstack.x86_64.qcow2"),
        "{}",
        openstack.display()
    );
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&openstack)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "qemu-img check {}",
        openstack.display()
    );
    assert!(
        meta2["images"]["qemu"].is_object(),
        "earlier images stay recorded"
    );
}
