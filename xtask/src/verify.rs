//! `--verify`: checks the output with real tools: rpm queries and digests, dnf resolution against the repo, and a dracut run in an unpacked tree.

use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::distro::{Manifest, repo_dir};
use crate::tools::{self, run, run_stdout};

/// Runs every check; the first failure is the error.
pub fn verify(out: &Path, manifest: &Manifest) -> Result<()> {
    tools::require(tools::VERIFY_TOOLS)?;
    let repo = repo_dir(out, &manifest.arch);
    for p in &manifest.packages {
        let rpm = repo.join(&p.file);
        for args in [
            &["-qpi"][..],
            &["-qpl"],
            &["-qp", "--requires"],
            &["-qp", "--provides"],
            &["-qp", "--scripts"],
        ] {
            run_stdout(Command::new("rpm").args(args).arg(&rpm))?;
        }
        let k = run_stdout(Command::new("rpm").args(["-K", "--nosignature"]).arg(&rpm))?;
        if !k.contains("digests OK") {
            return Err(format!("rpm -K --nosignature {}: {}", rpm.display(), k.trim()).into());
        }
    }
    eprintln!(
        "verify: rpm -qpi/-qpl/--requires/--provides/--scripts and rpm -K --nosignature pass on {} packages",
        manifest.packages.len()
    );
    check_dnf(&repo, manifest)?;
    if ["kernel", "busybox", "nosa-mini-dracut"]
        .iter()
        .all(|n| manifest.packages.iter().any(|p| p.name == *n))
    {
        check_dracut(&repo, manifest)?;
    }
    Ok(())
}

fn dnf_base(repo: &Path, root: &Path) -> Command {
    let mut c = Command::new("dnf");
    c.arg(format!("--installroot={}", root.display()))
        .arg(format!("--repofrompath=fixture,file://{}", repo.display()))
        .args([
            "--repo=fixture",
            "--releasever=1",
            "--setopt=fixture.gpgcheck=0",
            "-y",
        ])
        .arg(format!(
            "--setopt=cachedir={}",
            root.join("cache").display()
        ));
    c
}

/// dnf (libsolv) must see every package and resolve fixture-app to
/// fixture-lib 1.3 + fixture-foo + one fixture-virtual provider.
fn check_dnf(repo: &Path, manifest: &Manifest) -> Result<()> {
    if tools::which("dnf").is_none() {
        return Err(
            "dnf is not installed\nhint: apt-get install dnf (or run without --verify)".into(),
        );
    }
    let root = tempfile::tempdir()?;
    let listed = run_stdout(dnf_base(repo, root.path()).args([
        "repoquery",
        "-q",
        "--available",
        "--queryformat",
        "%{name}-%{version}-%{release}.%{arch}\n",
    ]))?;
    let mut listed: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = manifest.packages.iter().map(|p| p.nvra.as_str()).collect();
    expected.sort_unstable();
    if listed != expected {
        return Err(format!("dnf repoquery lists {listed:?}, the manifest {expected:?}").into());
    }
    if manifest.packages.iter().any(|p| p.name == "fixture-app") {
        // --assumeno: resolve, print the transaction, install nothing (exit 1).
        let out = dnf_base(repo, root.path())
            .args(["install", "--assumeno", "fixture-app"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        for want in ["fixture-lib", "1.3-", "fixture-foo", "fixture-virt-"] {
            if !text.contains(want) {
                return Err(format!(
                    "dnf install --assumeno fixture-app: transaction lacks {want:?}:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
        }
        if text.contains("1.1-") {
            return Err(format!("dnf picked fixture-lib 1.1:\n{text}").into());
        }
    }
    eprintln!(
        "verify: dnf sees all {} packages; fixture-app resolves to fixture-lib 1.3 + fixture-foo + a fixture-virtual provider",
        manifest.packages.len()
    );
    Ok(())
}

/// Unpacks filesystem, busybox, kernel and dracut into a tree and runs the
/// tree's dracut twice with --sysroot: both images must be identical and hold
/// /init, busybox and the root file system modules.
fn check_dracut(repo: &Path, manifest: &Manifest) -> Result<()> {
    let tree = tempfile::tempdir()?;
    for name in ["filesystem", "busybox", "kernel", "nosa-mini-dracut"] {
        let Some(p) = manifest.packages.iter().find(|p| p.name == name) else {
            continue;
        };
        let rpm = repo.join(&p.file);
        run(Command::new("sh")
            .arg("-c")
            .arg("rpm2cpio \"$1\" | cpio -idm --quiet --no-absolute-filenames")
            .arg("sh")
            .arg(&rpm)
            .current_dir(tree.path()))?;
    }
    let images = tempfile::tempdir()?;
    let mut digests = Vec::new();
    for n in ["a", "b"] {
        let img = images.path().join(format!("initramfs-{n}.img"));
        run(Command::new("sh")
            .arg(tree.path().join("usr/bin/dracut"))
            .args([
                "--no-hostonly",
                "--reproducible",
                "-f",
                "--add",
                "ostree",
                "--sysroot",
            ])
            .arg(tree.path())
            .arg(&img)
            .env("SOURCE_DATE_EPOCH", "1700000000"))?;
        digests.push(crate::rpmbuild::sha256_hex(&fs_err::read(&img)?));
    }
    if digests[0] != digests[1] {
        return Err("dracut: two runs gave different initramfs images".into());
    }
    let img = images.path().join("initramfs-a.img");
    let listing = run_stdout(
        Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | cpio -t --quiet")
            .arg("sh")
            .arg(&img),
    )?;
    for want in [
        "init",
        "bin/busybox",
        "bin/switch_root",
        "virtio_blk.ko",
        "ext4.ko",
        "xfs.ko",
        "overlay.ko",
    ] {
        if !listing
            .lines()
            .any(|l| l == want || l.ends_with(&format!("/{want}")))
        {
            return Err(format!("dracut image lacks {want}").into());
        }
    }
    eprintln!(
        "verify: dracut --sysroot builds a reproducible initramfs ({} entries, {} KiB)",
        listing.lines().count(),
        fs_err::metadata(&img)?.len() / 1024
    );
    Ok(())
}
