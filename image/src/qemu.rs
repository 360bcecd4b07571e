//! Booting an image under QEMU until a marker appears on the serial console: TCG unless
//! `NOSA_QEMU_ACCEL=kvm` (see [`accel`]), OVMF for UEFI. Used by the tests
//! and, later, by `nosa run` and `nosa kola`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The OVMF firmware Debian's `ovmf` package installs.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// What a boot showed.
#[derive(Debug, Clone)]
pub struct BootResult {
    /// Whether the marker appeared before the timeout.
    pub ok: bool,
    /// Seconds until the marker (or the timeout).
    pub secs: f64,
    /// Everything the serial console printed.
    pub serial: String,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// QEMU arguments for the disk(s).
    pub disk: Vec<String>,
    /// Boot with UEFI (OVMF) instead of BIOS (SeaBIOS).
    pub uefi: bool,
    /// Where the serial console is written.
    pub serial_log: PathBuf,
    /// Text that means the boot succeeded.
    pub marker: String,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The accelerator to use: `NOSA_QEMU_ACCEL` (`kvm` or `tcg`) when set, else TCG.
///
/// Detecting KVM is not as easy as opening `/dev/kvm`: on these nested machines KVM runs
/// SeaBIOS (a probe with `isa-debugcon` prints its banner) yet OVMF and Linux guests hang, so
/// a probe would say yes and every boot would time out. Until a probe that boots a real guest
/// exists, KVM is opt-in.
pub fn accel() -> &'static str {
    match std::env::var("NOSA_QEMU_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        _ => "tcg",
    }
}

/// Boots until `marker` appears on the serial console, the VM exits, or the timeout.
pub fn boot_until(b: &Boot) -> std::io::Result<BootResult> {
    let accel = accel();
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", accel, "-m", "1024", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", b.serial_log.display()))
        .args(&b.disk);
    if b.uefi {
        cmd.args(["-bios", OVMF]);
    }
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut ok = false;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let text = fs_err::read(&b.serial_log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(&b.marker) {
            ok = true;
            break;
        }
        if child.try_wait()?.is_some() || start.elapsed() > b.timeout {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let serial =
        String::from_utf8_lossy(&fs_err::read(&b.serial_log).unwrap_or_default()).into_owned();
    Ok(BootResult { ok, secs, serial })
}
