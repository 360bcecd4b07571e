//! Running images under QEMU: the machine's command line ([`Vm`]), the accelerator
//! ([`detect_accel`]: KVM only when a probe boot shows it works, else TCG) and booting until a
//! marker appears on the serial console ([`boot_until`]). Used by `nosa run`, `nosa kola` and
//! the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The OVMF firmware Debian's `ovmf` package installs.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// The QEMU system emulator for x86_64 (Debian package `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// A QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// The software emulator (slow, always works).
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why (shown by `nosa run` and in kola logs).
    pub reason: String,
}

/// What the probe result is cached under: a probe holds until the host reboots, QEMU changes
/// or the probe kernel changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ProbeKey {
    boot_id: String,
    qemu: String,
    kernel: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProbeRecord {
    key: ProbeKey,
    choice: AccelChoice,
}

fn file_identity(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match fs_err::metadata(p) {
        Ok(m) => format!("{}:{}:{}:{}", p.display(), m.len(), m.mtime(), m.ino()),
        Err(_) => format!("{}:absent", p.display()),
    }
}

fn qemu_path() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(QEMU))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(QEMU))
}

/// A kernel for the KVM probe: its file and its content digest (what the probe's cached
/// answer is keyed by; callers have it from the store, so it is not hashed again here).
#[derive(Clone, Copy, Debug)]
pub struct ProbeKernel<'a> {
    /// The kernel image.
    pub path: &'a Path,
    /// Its content digest (any stable hex digest of the bytes).
    pub digest: &'a str,
}

/// Chooses the accelerator.
///
/// `NOSA_QEMU_ACCEL=kvm|tcg` decides when set. Otherwise KVM is used only if `/dev/kvm` opens
/// read-write *and* a probe boot works: `probe_kernel` (a Linux kernel, e.g. the image's own)
/// booted under KVM with no root filesystem must reach its "unable to mount root" panic
/// within 30 s. Opening `/dev/kvm` is not enough: on nested machines KVM can run firmware yet
/// hang every Linux guest. The probe's answer is cached in `cache_dir` (one file) until the
/// host reboots or QEMU or the kernel changes. Without a probe kernel, TCG.
pub fn detect_accel(probe_kernel: Option<ProbeKernel<'_>>, cache_dir: &Path) -> AccelChoice {
    match std::env::var("NOSA_QEMU_ACCEL").as_deref() {
        Ok("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                reason: "NOSA_QEMU_ACCEL=kvm".into(),
            };
        }
        Ok("tcg") => {
            return AccelChoice {
                accel: Accel::Tcg,
                reason: "NOSA_QEMU_ACCEL=tcg".into(),
            };
        }
        _ => {}
    }
    if let Err(e) = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: format!("KVM unavailable ({e})"),
        };
    }
    let Some(kernel) = probe_kernel else {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: "/dev/kvm opens but there is no kernel to probe it with".into(),
        };
    };
    let key = ProbeKey {
        boot_id: fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .to_string(),
        qemu: file_identity(&qemu_path()),
        kernel: kernel.digest.to_string(),
    };
    let cache = cache_dir.join("qemu-accel.json");
    if let Ok(bytes) = fs_err::read(&cache)
        && let Ok(rec) = serde_json::from_slice::<ProbeRecord>(&bytes)
        && rec.key == key
    {
        return rec.choice;
    }
    let choice = probe_kvm(kernel.path, cache_dir);
    let rec = ProbeRecord {
        key,
        choice: choice.clone(),
    };
    if fs_err::create_dir_all(cache_dir).is_ok()
        && let Ok(json) = serde_json::to_vec_pretty(&rec)
    {
        let tmp = cache_dir.join(format!(".qemu-accel.{}.tmp", std::process::id()));
        if fs_err::write(&tmp, json).is_ok() {
            let _ = fs_err::rename(&tmp, &cache);
        }
    }
    choice
}

fn probe_kvm(kernel: &Path, scratch: &Path) -> AccelChoice {
    let _ = fs_err::create_dir_all(scratch);
    let log = scratch.join(format!("kvm-probe.{}.log", std::process::id()));
    let _ = fs_err::remove_file(&log);
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "kvm", "-m", "256", "-smp", "1"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]);
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return AccelChoice {
                accel: Accel::Tcg,
                reason: format!("KVM probe: cannot start {QEMU}: {e}"),
            };
        }
    };
    let mut reached = false;
    while started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(250));
        let text = fs_err::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if text.contains("Kernel panic") || text.contains("Unable to mount root") {
            reached = true;
            break;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs_err::remove_file(&log);
    if reached {
        AccelChoice {
            accel: Accel::Kvm,
            reason: format!(
                "a probe kernel booted under KVM in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        }
    } else {
        AccelChoice {
            accel: Accel::Tcg,
            reason: "/dev/kvm opens, but a probe kernel did not boot under KVM within 30 s".into(),
        }
    }
}

/// A disk attached to a [`Vm`].
#[derive(Clone, Debug)]
pub struct VmDisk {
    /// The image file.
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Logical (and physical) block size the guest sees: 512 or 4096.
    pub sector_size: u64,
    /// The virtio serial (how a guest finds a disk: `/sys/block/vdX/serial`).
    pub serial: Option<String>,
    /// Writes go to a temporary overlay, never to the file.
    pub snapshot: bool,
    /// Read-only.
    pub readonly: bool,
}

impl VmDisk {
    /// An OS image booted without changing it (`snapshot=on`); the format comes from the
    /// extension (`.qcow2` or raw).
    pub fn image(path: &Path, sector_size: u64) -> VmDisk {
        let format = if path.extension().is_some_and(|e| e == "qcow2") {
            "qcow2"
        } else {
            "raw"
        };
        VmDisk {
            path: path.to_path_buf(),
            format: format.into(),
            sector_size,
            serial: None,
            snapshot: true,
            readonly: false,
        }
    }
}

/// A QEMU x86_64 machine: memory, firmware, disks (virtio-blk, the first one boots).
#[derive(Clone, Debug)]
pub struct Vm {
    /// The accelerator.
    pub accel: Accel,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// UEFI (OVMF) instead of BIOS (SeaBIOS).
    pub uefi: bool,
    /// Disks, the boot disk first.
    pub disks: Vec<VmDisk>,
    /// More arguments (network, serial, fw_cfg, ...).
    pub extra: Vec<String>,
}

impl Vm {
    /// A machine with `memory_mib` MiB booting `boot`.
    pub fn new(accel: Accel, memory_mib: u64, uefi: bool, boot: VmDisk) -> Vm {
        Vm {
            accel,
            memory_mib,
            uefi,
            disks: vec![boot],
            extra: Vec::new(),
        }
    }

    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-accel".into(),
            self.accel.name().into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            "1".into(),
            "-no-reboot".into(),
        ];
        if self.accel == Accel::Kvm {
            a.extend(["-cpu".into(), "host".into()]);
        }
        if self.uefi {
            a.extend(["-bios".into(), OVMF.into()]);
        }
        for (i, d) in self.disks.iter().enumerate() {
            let mut drive = format!(
                "file={},if=none,id=disk{i},format={}",
                d.path.display(),
                d.format
            );
            if d.snapshot {
                drive.push_str(",snapshot=on");
            }
            if d.readonly {
                drive.push_str(",readonly=on");
            }
            let mut dev = format!(
                "virtio-blk-pci,drive=disk{i},logical_block_size={0},physical_block_size={0}",
                d.sector_size
            );
            if i == 0 {
                dev.push_str(",bootindex=0");
            }
            if let Some(s) = &d.serial {
                dev.push_str(&format!(",serial={s}"));
            }
            a.extend(["-drive".into(), drive, "-device".into(), dev]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command, ready to spawn.
    pub fn command(&self) -> Command {
        let mut c = Command::new(QEMU);
        c.args(self.args());
        c
    }
}

/// What a boot showed.
#[derive(Debug, Clone)]
pub struct BootResult {
    /// Whether the marker appeared before the timeout.
    pub ok: bool,
    /// Whether QEMU exited by itself (the guest powered off).
    pub exited: bool,
    /// Seconds until the marker, the exit or the timeout.
    pub secs: f64,
    /// Everything the serial console printed.
    pub serial: String,
}

/// Boots `vm` with the serial console written to `serial_log` until `marker` appears on it
/// (when given), QEMU exits, or `timeout` passes; then stops QEMU.
pub fn boot_until(
    vm: &Vm,
    serial_log: &Path,
    marker: Option<&str>,
    timeout: Duration,
) -> std::io::Result<BootResult> {
    let mut cmd = vm.command();
    cmd.args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()));
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut ok = false;
    let mut exited = false;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(m) = marker {
            let text = fs_err::read(serial_log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains(m) {
                ok = true;
                break;
            }
        }
        if child.try_wait()?.is_some() {
            exited = true;
            break;
        }
        if start.elapsed() > timeout {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output()?;
    let mut serial =
        String::from_utf8_lossy(&fs_err::read(serial_log).unwrap_or_default()).into_owned();
    if exited && !out.status.success() {
        serial.push_str(&format!(
            "\n[{QEMU} exited with {}: {}]\n",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if marker.is_none() {
        ok = exited && out.status.success();
    }
    Ok(BootResult {
        ok,
        exited,
        secs,
        serial,
    })
}
