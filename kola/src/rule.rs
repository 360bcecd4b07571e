//! `KolaRule`: the engine node `kola:<arch>:<image>:<test>`, one test run in one boot of one
//! image, like kola's exclusive tests. Its key is the image's output digest, the test's files
//! (external tests) or checks (the built-in `nestos.basic`) and the machine's settings, so a
//! rerun on an unchanged image reports the cached result.
//!
//! The channel into the guest is two extra virtio disks, found by their serial: `nosa-kola-in`
//! holds a tar archive with the test, `nosa-kola-out` is blank and receives a tar archive with
//! the exit status and output. The fixture distro's `nosa-kola-agent` boot hook runs the test
//! and powers the machine off. A test that fails is a result (cached); a machine that never
//! reports (timeout, no agent) is a node failure (not cached).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nosa_cache::EntryKind;
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use nosa_image::{ImageError, ImageFormat, ImageRecord, read_image_record};

use crate::qemu::{ProbeKernel, Vm, VmDisk, boot_until, detect_accel};

/// The guest script of `nestos.basic`; its digest is in the key of every `nestos.basic` node.
const BASIC_SH: &str = include_str!("basic.sh");

/// The serial of the disk carrying the test into the guest.
pub const IN_SERIAL: &str = "nosa-kola-in";
/// The serial of the disk the guest writes the result to.
pub const OUT_SERIAL: &str = "nosa-kola-out";
/// Size of the result disk.
const OUT_DISK_SIZE: u64 = 64 << 20;
/// The name of the built-in test.
pub const BASIC_TEST: &str = "nestos.basic";

/// What a test is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KolaKind {
    /// nosa's built-in checks: the built commit is booted, the kernel command line has the
    /// image's kargs, os-release is the committed one, the firmware and the disk's block size
    /// are the expected ones, and these files (from overlay.d) exist.
    Basic {
        /// Absolute paths in the booted system.
        files: Vec<String>,
    },
    /// An external test (`tests/kola/...`): the directory, workdir-relative (every file below
    /// it is an input), and the executable's name in it.
    External {
        /// The test's directory, relative to the workdir.
        dir: String,
        /// The executable, relative to `dir`.
        exe: String,
    },
}

/// The `kola:<arch>:<image>:<test>` rule.
#[derive(Clone, Debug)]
pub struct KolaRule {
    /// Architecture.
    pub arch: String,
    /// The image booted.
    pub image: ImageFormat,
    /// The test's name (`nestos.basic`, `ext.config.<name>`).
    pub test: String,
    /// What it runs.
    pub kind: KolaKind,
    /// Boot with UEFI (OVMF) instead of BIOS.
    pub uefi: bool,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Give up (a node failure, not a result) after this long.
    pub timeout: Duration,
    /// Where the KVM probe's answer is cached (not in the key: the accelerator does not change
    /// a result).
    pub accel_cache: PathBuf,
}

/// What `result.json` records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KolaResult {
    /// The test.
    pub test: String,
    /// The image it ran on.
    pub image: String,
    /// `PASS` or `FAIL`.
    pub status: String,
    /// The test's exit status.
    pub rc: i32,
    /// Seconds from QEMU's start to the guest's power-off.
    pub secs: u64,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The firmware: `bios` or `uefi`.
    pub firmware: String,
    /// The commit the image holds.
    pub commit: String,
}

impl KolaRule {
    /// The expectations `basic.sh` reads for one image (see the script's header).
    fn basic_expectations(
        &self,
        files: &[String],
        rec: &ImageRecord,
        dir: &Path,
    ) -> std::io::Result<()> {
        let deploy = format!(
            "/sysroot/ostree/deploy/{}/deploy/{}.0",
            rec.osname, rec.commit
        );
        let firmware = if self.uefi { "uefi" } else { "bios" };
        let env = [
            ("DEPLOY", deploy.as_str()),
            ("COMMIT", rec.commit.as_str()),
            ("FIRMWARE", firmware),
            ("SECTOR_SIZE", &self.image.sector_size().to_string()),
            ("ROOTFS", rec.rootfs.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}\n", sh_quote(v)))
        .collect::<String>();
        fs_err::write(dir.join("expect.env"), env)?;
        let lines = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
        fs_err::write(dir.join("expected-kargs"), lines(&rec.kargs))?;
        fs_err::write(dir.join("expected-files"), lines(files))?;
        fs_err::write(dir.join("expected-os-release"), &rec.os_release)
    }

    /// Stages the image node's output read-only under `dir`; returns the digest of its
    /// `vmlinuz`, if it has one.
    fn stage_image(&self, ctx: &RunContext<'_>, dir: &Path) -> Result<Option<String>, RunError> {
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "kola needs exactly one dependency (the image)",
            ));
        };
        // Hardlinks to the store's read-only blobs: QEMU boots with snapshot=on and never
        // writes the image.
        ctx.stage_dep_readonly(dep, dir)?;
        Ok(ctx
            .dep_tree(dep)?
            .entries
            .iter()
            .find_map(|e| match &e.kind {
                EntryKind::File { digest, .. } if e.path == "vmlinuz" => Some(digest.to_hex()),
                _ => None,
            }))
    }

    fn write_test_archive(
        &self,
        ctx: &RunContext<'_>,
        rec: &ImageRecord,
        path: &Path,
    ) -> Result<(), RunError> {
        let test_dir = ctx.scratch.join("test");
        fs_err::create_dir_all(&test_dir)?;
        let exe = match &self.kind {
            KolaKind::Basic { files } => {
                let p = test_dir.join("test.sh");
                fs_err::write(&p, BASIC_SH)?;
                set_mode(&p, 0o755)?;
                self.basic_expectations(files, rec, &test_dir)?;
                "test.sh".to_string()
            }
            KolaKind::External { dir, exe } => {
                let prefix = format!("{dir}/");
                for f in ctx.inputs {
                    let Some(rel) = f.rel.strip_prefix(&prefix) else {
                        continue;
                    };
                    let to = test_dir.join(rel);
                    if let Some(p) = to.parent() {
                        fs_err::create_dir_all(p)?;
                    }
                    if f.symlink {
                        std::os::unix::fs::symlink(fs_err::read_link(&f.abs)?, &to)?;
                    } else {
                        fs_err::copy(&f.abs, &to)?;
                    }
                }
                let p = test_dir.join(exe);
                if !p.is_file() {
                    return Err(RunError::msg(format!("{dir}/{exe}: not found")));
                }
                // The key covers contents, not modes: the test runs whatever its mode.
                set_mode(&p, 0o755)?;
                exe.clone()
            }
        };
        let env = format!(
            "KOLA_TEST={}\nKOLA_EXE={}\n",
            sh_quote(&self.test),
            sh_quote(&exe)
        );
        let file = fs_err::File::create(path)?;
        let mut b = tar::Builder::new(file);
        b.mode(tar::HeaderMode::Deterministic);
        let mut h = tar::Header::new_gnu();
        h.set_size(env.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "kola.env", env.as_bytes())?;
        b.append_dir_all("test", &test_dir)?;
        b.into_inner()?.sync_all()?;
        Ok(())
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let image_dir = ctx.scratch.join("image");
        let kernel_digest = self.stage_image(ctx, &image_dir)?;
        let rec = read_image_record(&image_dir).map_err(|e| RunError::msg(e.to_string()))?;
        let disk = image_dir.join(&rec.file);
        let kernel = image_dir.join("vmlinuz");
        let archive = ctx.scratch.join("in.tar");
        self.write_test_archive(ctx, &rec, &archive)?;
        let out_disk = ctx.scratch.join("out.img");
        fs_err::File::create(&out_disk)?.set_len(OUT_DISK_SIZE)?;

        let probe = kernel_digest.as_deref().map(|digest| ProbeKernel {
            path: &kernel,
            digest,
        });
        let accel = detect_accel(probe, &self.accel_cache);
        writeln!(
            ctx.log,
            "accelerator: {} ({})",
            accel.accel.name(),
            accel.reason
        )?;
        let mut vm = Vm::new(
            accel.accel,
            self.memory_mib,
            self.uefi,
            VmDisk::image(&disk, self.image.sector_size()),
        );
        vm.disks.push(VmDisk {
            path: archive.clone(),
            format: "raw".into(),
            sector_size: 512,
            serial: Some(IN_SERIAL.into()),
            snapshot: false,
            readonly: true,
        });
        vm.disks.push(VmDisk {
            path: out_disk.clone(),
            format: "raw".into(),
            sector_size: 512,
            serial: Some(OUT_SERIAL.into()),
            snapshot: false,
            readonly: false,
        });
        vm.extra.extend(["-nic".into(), "none".into()]);
        writeln!(ctx.log, "qemu-system-x86_64 {}", vm.args().join(" "))?;
        let console = ctx.scratch.join("console.txt");
        let boot = boot_until(&vm, &console, None, self.timeout).map_err(|e| {
            RunError::msg(format!(
                "qemu-system-x86_64 (Debian package qemu-system-x86): {e}"
            ))
        })?;
        fs_err::copy(&console, ctx.out.join("console.txt"))?;
        let tail = || {
            let lines: Vec<&str> = boot.serial.lines().rev().take(25).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        if !boot.exited {
            return Err(RunError::msg(format!(
                "{}: the guest did not power off within {} s; console:\n{}",
                self.test,
                self.timeout.as_secs(),
                tail()
            )));
        }
        let (rc, output) = read_result(&out_disk).map_err(|e| {
            RunError::msg(format!(
                "{}: the guest wrote no result ({e}); is the nosa-kola-agent package in the image? console:\n{}",
                self.test,
                tail()
            ))
        })?;
        fs_err::write(ctx.out.join("output.txt"), &output)?;
        let result = KolaResult {
            test: self.test.clone(),
            image: self.image.name().into(),
            status: if rc == 0 { "PASS" } else { "FAIL" }.into(),
            rc,
            secs: boot.secs.round() as u64,
            accel: accel.accel.name().into(),
            firmware: if self.uefi { "uefi" } else { "bios" }.into(),
            commit: rec.commit.clone(),
        };
        writeln!(
            ctx.log,
            "{} on {}: {} (exit status {rc}) in {} s",
            result.test, result.image, result.status, result.secs
        )?;
        let json = serde_json::to_vec_pretty(&result).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("result.json"), json)?;
        Ok(())
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Reads the tar archive the agent wrote to the result disk: the exit status and the output.
fn read_result(disk: &Path) -> Result<(i32, Vec<u8>), String> {
    let f = fs_err::File::open(disk).map_err(|e| e.to_string())?;
    let mut a = tar::Archive::new(f);
    let mut rc = None;
    let mut output = Vec::new();
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        let name = path.to_string_lossy().trim_start_matches("./").to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        match name.as_str() {
            "rc" => {
                rc = String::from_utf8_lossy(&buf).trim().parse::<i32>().ok();
            }
            "output.txt" => output = buf,
            _ => {}
        }
    }
    rc.map(|rc| (rc, output))
        .ok_or_else(|| "no exit status on the result disk".to_string())
}

impl Rule for KolaRule {
    fn kind(&self) -> &str {
        "kola"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("image", self.image.name());
        p.add("test", &self.test);
        p.add(
            "kind",
            &serde_json::to_string(&self.kind).unwrap_or_default(),
        );
        p.add("uefi", &self.uefi);
        p.add("memory-mib", &self.memory_mib);
        p.add("timeout-secs", &self.timeout.as_secs());
        p.add("agent-protocol", "nosa-kola-in/out tar v1");
        if let KolaKind::Basic { .. } = self.kind {
            p.add(
                "basic-script",
                &blake3::hash(BASIC_SH.as_bytes()).to_hex().to_string(),
            );
        }
    }

    fn inputs(&self) -> Vec<nosa_engine::InputSpec> {
        match &self.kind {
            KolaKind::External { dir, .. } => vec![nosa_engine::InputSpec::Path(dir.clone())],
            KolaKind::Basic { .. } => Vec::new(),
        }
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// Reads `result.json` from a kola node's output directory.
pub fn read_kola_result(out: &Path) -> Result<KolaResult, ImageError> {
    serde_json::from_slice(&fs_err::read(out.join("result.json"))?)
        .map_err(|e| ImageError::msg(format!("{}: {e}", out.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_script_parses_and_reads_what_the_rule_quotes() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("basic.sh");
        fs_err::write(&script, BASIC_SH).unwrap();
        let st = std::process::Command::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success(), "basic.sh has a syntax error");
        // A value with a quote and a space survives the rule's quoting into the script's env.
        let value = "it's a /path";
        fs_err::write(
            d.path().join("expect.env"),
            format!("DEPLOY={}\n", sh_quote(value)),
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", ". ./expect.env; printf %s \"$DEPLOY\""])
            .current_dir(d.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    }

    #[test]
    fn a_blank_result_disk_is_no_result() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("out.img");
        fs_err::File::create(&disk)
            .unwrap()
            .set_len(OUT_DISK_SIZE)
            .unwrap();
        let e = read_result(&disk).unwrap_err();
        assert!(e.contains("no exit status"), "{e}");
    }

    #[test]
    fn the_agents_archive_is_read_back() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("out.img");
        // As the agent writes it: `tar -cf DISK -C OUT .` onto a zeroed disk.
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in [("./rc", &b"3\n"[..]), ("./output.txt", &b"FAIL: x\n"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body).unwrap();
        }
        let mut bytes = b.into_inner().unwrap();
        bytes.resize(OUT_DISK_SIZE as usize, 0);
        fs_err::write(&disk, bytes).unwrap();
        let (rc, out) = read_result(&disk).unwrap();
        assert_eq!(rc, 3);
        assert_eq!(out, b"FAIL: x\n");
    }
}
