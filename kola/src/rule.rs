//! `KolaRule`: the engine node `kola:<arch>:<image>:<test>`, one test on one image, as kola
//! runs it: the image boots with an Ignition config that authorizes a key generated for the
//! machine, the test is copied in over ssh and runs as root (sudo), its exit status and
//! output are the result. Its key is the image's output digest, the test's files (external
//! tests) or checks (the built-in `nestos.basic`) and the machine's settings, so a rerun on an
//! unchanged image reports the cached result.
//!
//! Tests that may share a boot (`nestos.basic`, external tests whose kola.json says
//! `"exclusive": false`) run one after the other on one machine per image
//! ([`crate::machine::shared`]); the others boot their own. A test that fails is a result
//! (cached); a machine that never answers ssh or dies is a node failure (not cached).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nosa_cache::EntryKind;
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use nosa_image::{ImageError, ImageFormat, ImageRecord, read_image_record};

use crate::machine::{self, ConfigChannel, Machine, MachineSpec};
use crate::qemu::{ProbeKernel, detect_accel};

/// The guest script of `nestos.basic`; its digest is in the key of every `nestos.basic` node.
const BASIC_SH: &str = include_str!("basic.sh");

/// The name of the built-in test.
pub const BASIC_TEST: &str = "nestos.basic";

/// Where a test is unpacked in the guest.
const GUEST_DIR: &str = "/var/tmp/nosa-kola";

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
    /// it is an input), and the executable's name in it. A `config.ign` in the directory is
    /// merged into the machine's Ignition config (the test then boots its own machine).
    External {
        /// The test's directory, relative to the workdir.
        dir: String,
        /// The executable, relative to `dir`.
        exe: String,
        /// kola.json's `exclusive` (kola's default for external tests: true): whether the
        /// test needs a machine of its own.
        exclusive: bool,
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
    /// Where machines keep their files while they run (the workdir's `tmp/kola-machines`; not
    /// in the key).
    pub machines_dir: PathBuf,
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
    /// Seconds the test ran.
    pub secs: u64,
    /// Seconds from QEMU's start until ssh answered (of the boot the test ran in).
    #[serde(default)]
    pub boot_secs: u64,
    /// Whether the test shared its boot with other tests.
    #[serde(default)]
    pub shared: bool,
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
        let version = os_release_value(&rec.os_release, "OSTREE_VERSION").unwrap_or_default();
        let env = [
            ("DEPLOY", deploy.as_str()),
            ("COMMIT", rec.commit.as_str()),
            ("BUILD_VERSION", version.as_str()),
            ("FIRMWARE", firmware),
            ("SECTOR_SIZE", &self.image.sector_size().to_string()),
            ("ROOTFS", rec.rootfs.as_str()),
            ("IGNITION_FILE", crate::ignition::KOLA_FILE.0),
            (
                "IGNITION_FILE_CONTENT",
                crate::ignition::KOLA_FILE.1.trim_end(),
            ),
            ("IGNITION_UNIT", crate::ignition::KOLA_UNIT),
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

    /// The test as a tar archive (`kola.env` and `test/`), and the executable's name.
    fn test_archive(&self, ctx: &RunContext<'_>, rec: &ImageRecord) -> Result<Vec<u8>, RunError> {
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
            KolaKind::External { dir, exe, .. } => {
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
            "KOLA_TEST={}\nKOLA_EXE={}\nKOLA_EXT_DATA={}\n",
            sh_quote(&self.test),
            sh_quote(&exe),
            sh_quote(&format!("{GUEST_DIR}/{}/test/data", self.test)),
        );
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        let mut h = tar::Header::new_gnu();
        h.set_size(env.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "kola.env", env.as_bytes())?;
        b.append_dir_all("test", &test_dir)?;
        Ok(b.into_inner()?)
    }

    /// Whether the test may share its boot with others.
    fn shares_boot(&self) -> bool {
        match &self.kind {
            KolaKind::Basic { .. } => true,
            KolaKind::External { exclusive, .. } => !exclusive,
        }
    }

    /// The Ignition config an external test brings (`config.ign` beside it).
    fn test_config(&self, ctx: &RunContext<'_>) -> Result<Option<Vec<u8>>, RunError> {
        let KolaKind::External { dir, .. } = &self.kind else {
            return Ok(None);
        };
        let want = format!("{dir}/config.ign");
        match ctx.inputs.iter().find(|f| f.rel == want) {
            Some(f) => Ok(Some(fs_err::read(&f.abs)?)),
            None => Ok(None),
        }
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let image_dir = ctx.scratch.join("image");
        let kernel_digest = self.stage_image(ctx, &image_dir)?;
        let rec = read_image_record(&image_dir).map_err(|e| RunError::msg(e.to_string()))?;
        let disk = image_dir.join(&rec.file);
        let kernel = image_dir.join("vmlinuz");
        let archive = self.test_archive(ctx, &rec)?;
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
        let channel = match rec.format.platform() {
            "qemu" => ConfigChannel::FwCfg,
            _ => {
                let boot = rec
                    .disk
                    .partitions
                    .iter()
                    .find(|p| p.name == "boot")
                    .ok_or_else(|| RunError::msg("the image has no boot partition".to_string()))?;
                ConfigChannel::BootPartition {
                    offset: boot.offset,
                }
            }
        };
        let test_config = self.test_config(ctx)?;
        // A test with an Ignition config of its own needs a machine booted with it.
        let shared = self.shares_boot() && test_config.is_none();
        let spec = MachineSpec {
            accel: accel.accel,
            disk: disk.clone(),
            sector_size: self.image.sector_size(),
            uefi: self.uefi,
            memory_mib: self.memory_mib,
            channel,
            test_config,
            kola: true,
            scratch_base: self.machines_dir.clone(),
            timeout: self.timeout,
            extra: Vec::new(),
        };
        let dep_tree = ctx
            .deps
            .first()
            .map(|d| d.tree.to_hex())
            .unwrap_or_default();
        let (rc, output, boot_secs, secs, console) = if shared {
            let key = format!("{dep_tree}:{}:{}", self.uefi, self.memory_mib);
            let slot = machine::shared(&key, &spec);
            let guard = slot.lock().expect("machine slot");
            let m = match guard.as_ref() {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(RunError::msg(format!("{}: {e}", self.test))),
                None => return Err(RunError::msg("the machine was shut down".to_string())),
            };
            writeln!(ctx.log, "shared machine, ssh on 127.0.0.1:{}", m.port())?;
            let (rc, output, secs) = self.run_on(m, &archive)?;
            (rc, output, m.boot_secs, secs, m.console())
        } else {
            let m =
                Machine::boot(&spec).map_err(|e| RunError::msg(format!("{}: {e}", self.test)))?;
            writeln!(ctx.log, "own machine, ssh on 127.0.0.1:{}", m.port())?;
            let (rc, output, secs) = self.run_on(&m, &archive)?;
            (rc, output, m.boot_secs, secs, m.console())
        };
        fs_err::write(ctx.out.join("console.txt"), console)?;
        fs_err::write(ctx.out.join("output.txt"), &output)?;
        let result = KolaResult {
            test: self.test.clone(),
            image: self.image.name().into(),
            status: if rc == 0 { "PASS" } else { "FAIL" }.into(),
            rc,
            secs: secs.round() as u64,
            boot_secs: boot_secs.round() as u64,
            shared,
            accel: accel.accel.name().into(),
            firmware: if self.uefi { "uefi" } else { "bios" }.into(),
            commit: rec.commit.clone(),
        };
        writeln!(
            ctx.log,
            "{} on {}: {} (exit status {rc}) in {} s (boot {} s{})",
            result.test,
            result.image,
            result.status,
            result.secs,
            result.boot_secs,
            if shared { ", shared" } else { "" }
        )?;
        let json = serde_json::to_vec_pretty(&result).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("result.json"), json)?;
        Ok(())
    }

    /// Copies the test into `m` and runs it as root; its exit status, output and seconds. A
    /// machine that stops answering is a node failure, not a result.
    fn run_on(&self, m: &Machine, archive: &[u8]) -> Result<(i32, Vec<u8>, f64), RunError> {
        let dir = format!("{GUEST_DIR}/{}", self.test);
        let q = sh_quote(&dir);
        let (rc, out) = m
            .ssh(
                &format!("sudo rm -rf {q} && sudo mkdir -p {q} && sudo tar -x -C {q}"),
                Some(archive),
            )
            .map_err(|e| RunError::msg(e.to_string()))?;
        if rc != 0 {
            return Err(RunError::msg(format!(
                "{}: copying the test into the machine failed ({rc}): {}\nconsole:\n{}",
                self.test,
                String::from_utf8_lossy(&out).trim(),
                m.console_tail(25)
            )));
        }
        let t0 = Instant::now();
        let secs = self.timeout.as_secs().max(1);
        let (rc, output) = m
            .ssh(
                &format!(
                    "cd {q}/test && sudo sh -c '. ../kola.env; export KOLA_TEST KOLA_EXE KOLA_EXT_DATA; \
                     exec timeout --kill-after=10 {secs} ./\"$KOLA_EXE\"'"
                ),
                None,
            )
            .map_err(|e| RunError::msg(e.to_string()))?;
        if rc == 255 {
            return Err(RunError::msg(format!(
                "{}: the ssh connection failed while the test ran: {}\nconsole:\n{}",
                self.test,
                String::from_utf8_lossy(&output).trim(),
                m.console_tail(25)
            )));
        }
        Ok((rc, output, t0.elapsed().as_secs_f64()))
    }
}

/// The value of `key` in os-release text (quotes removed).
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

impl Rule for KolaRule {
    fn kind(&self) -> &str {
        "kola"
    }

    fn version(&self) -> u32 {
        3
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
        // How the test reaches the machine and what config it boots with (the key is made
        // for each machine: not in the key).
        p.add(
            "transport",
            "ssh as nest, root through sudo, tar into /var/tmp/nosa-kola",
        );
        p.add(
            "ignition-config",
            &blake3::hash(&crate::ignition::kola_config("KEY", None))
                .to_hex()
                .to_string(),
        );
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
    fn os_release_values() {
        let t = "NAME=\"NestOS\"\nOSTREE_VERSION='24.03-LTS.1'\nVERSION=\"x y\"\n";
        assert_eq!(
            os_release_value(t, "OSTREE_VERSION").unwrap(),
            "24.03-LTS.1"
        );
        assert_eq!(os_release_value(t, "VERSION").unwrap(), "x y");
        assert_eq!(os_release_value(t, "ID"), None);
    }
}
