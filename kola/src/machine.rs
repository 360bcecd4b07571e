//! A booted image that nosa reaches over ssh, as mantle's kola does: QEMU with user
//! networking and the guest's port 22 forwarded from a free port on 127.0.0.1, an Ignition
//! config that authorizes a key generated for the machine (passed as QEMU's fw_cfg for the
//! qemu platform, written to the boot partition of a copy of the disk for metal), and
//! commands run as the `nest` user (root through sudo). Also a pool of such machines that
//! tests which may share a boot (kola's non-exclusive tests) share, until [`shutdown_pool`].

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ignition;
use crate::qemu::{Accel, Vm, VmDisk};

/// How a machine's first boot gets its Ignition config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChannel {
    /// QEMU's fw_cfg (`opt/com.coreos/config`): the `qemu` platform.
    FwCfg,
    /// `ignition/config.ign` on the boot partition at this byte offset of a raw disk, as
    /// nestos-installer writes it: the `metal` platform. The disk is copied first.
    BootPartition {
        /// The boot partition's offset in the disk.
        offset: u64,
    },
    /// The live ISO (the spec's `disk`), copied with the config in its Ignition embed area
    /// (as `iso ignition embed` writes it) and booted from a virtio-scsi CD.
    LiveIso,
    /// The live PXE files booted directly by QEMU: the spec's `disk` is the kernel, and the
    /// initrd is `initramfs`, then `rootfs` (when given) and a cpio holding the config, in one
    /// file (QEMU's `-initrd` takes one, as a PXE loader's list of initrds ends up in memory).
    LivePxe {
        /// The live initramfs.
        initramfs: PathBuf,
        /// rootfs.img, appended to the initramfs.
        rootfs: Option<PathBuf>,
        /// The kernel arguments.
        kargs: String,
    },
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct MachineSpec {
    /// The accelerator.
    pub accel: Accel,
    /// The image (qcow2 or raw), never written.
    pub disk: PathBuf,
    /// The disk's logical block size.
    pub sector_size: u64,
    /// UEFI (OVMF) instead of BIOS.
    pub uefi: bool,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// How the config reaches Ignition.
    pub channel: ConfigChannel,
    /// A test's (or user's) own Ignition config, merged into the machine's.
    pub test_config: Option<Vec<u8>>,
    /// The kola machine's config (a file and a unit for `nestos.basic`) or only the login.
    pub kola: bool,
    /// Where the machine's files go (key, config, console, a disk copy); removed with it.
    pub scratch_base: PathBuf,
    /// Give up waiting for ssh after this long.
    pub timeout: Duration,
    /// More QEMU arguments (`nosa run`'s 9p share of the workdir).
    pub extra: Vec<String>,
}

/// A running machine; stopped (QEMU killed) when dropped.
pub struct Machine {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    key: PathBuf,
    /// Seconds from QEMU's start until ssh answered.
    pub boot_secs: f64,
}

/// A generated ed25519 key pair in `dir` (`id_ed25519`, `id_ed25519.pub`); returns the private
/// key's path and the public key.
pub fn generate_key(dir: &Path) -> Result<(PathBuf, String), String> {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "nosa", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen (Debian package openssh-client): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let public = fs_err::read_to_string(dir.join("id_ed25519.pub")).map_err(|e| e.to_string())?;
    Ok((key, public.trim().to_string()))
}

/// Makes `cmd`'s child die when the thread that started it dies: a killed nosa leaves no
/// machine behind.
#[allow(unsafe_code)]
fn die_with_thread(cmd: &mut Command) {
    // SAFETY: one system call between fork and exec; no allocation, no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The ssh options nosa logs in with: the machine's key only, no host key checks (every
/// machine is new), no prompts, and a dead connection noticed within ~15 s.
pub fn ssh_options(port: u16, key: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        port.to_string(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
        "-o".into(),
        "ServerAliveInterval=5".into(),
        "-o".into(),
        "ServerAliveCountMax=3".into(),
    ]
}

/// Copies `src` to `dst` keeping holes (only data extents are read): a raw disk image is
/// mostly holes.
fn sparse_copy(src: &Path, dst: &Path) -> Result<(), String> {
    let out = Command::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cp {} {}: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The copy is written by QEMU; the image in the store is read-only (0444).
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(dst, std::fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())
}

impl Machine {
    /// Boots `spec` and waits until its ssh answers.
    pub fn boot(spec: &MachineSpec) -> Result<Machine, String> {
        fs_err::create_dir_all(&spec.scratch_base).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("machine-")
            .tempdir_in(&spec.scratch_base)
            .map_err(|e| e.to_string())?;
        let (key, public) = generate_key(dir.path())?;
        let config = if spec.kola {
            ignition::kola_config(&public, spec.test_config.as_deref())
        } else {
            ignition::login_config(&public, spec.test_config.as_deref())
        };
        let config_path = dir.path().join("config.ign");
        fs_err::write(&config_path, &config).map_err(|e| e.to_string())?;
        let mut vm = match &spec.channel {
            ConfigChannel::FwCfg => {
                let mut vm = Vm::new(
                    spec.accel,
                    spec.memory_mib,
                    spec.uefi,
                    VmDisk::image(&spec.disk, spec.sector_size),
                );
                vm.extra.extend([
                    "-fw_cfg".to_string(),
                    format!("name=opt/com.coreos/config,file={}", config_path.display()),
                ]);
                vm
            }
            ConfigChannel::BootPartition { offset } => {
                let copy = dir.path().join("disk.raw");
                sparse_copy(&spec.disk, &copy)?;
                ignition::write_to_boot_partition(&copy, *offset, &config_path)?;
                let mut d = VmDisk::image(&copy, spec.sector_size);
                d.format = "raw".into();
                d.snapshot = false;
                Vm::new(spec.accel, spec.memory_mib, spec.uefi, d)
            }
            ConfigChannel::LiveIso => {
                let copy = dir.path().join("live.iso");
                fs_err::copy(&spec.disk, &copy).map_err(|e| e.to_string())?;
                let mut perms = fs_err::metadata(&copy)
                    .map_err(|e| e.to_string())?
                    .permissions();
                // The build's artifact is read-only; its copy is written.
                std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
                fs_err::set_permissions(&copy, perms).map_err(|e| e.to_string())?;
                nosa_image::live::embed_ignition(&copy, &config).map_err(|e| e.to_string())?;
                let mut vm = Vm::new(
                    spec.accel,
                    spec.memory_mib,
                    spec.uefi,
                    VmDisk::image(&copy, 2048),
                );
                vm.disks.clear();
                vm.extra.extend([
                    "-device".to_string(),
                    "virtio-scsi-pci,id=scsi0".to_string(),
                    "-drive".to_string(),
                    format!(
                        "file={},media=cdrom,if=none,id=cd0,readonly=on",
                        copy.display()
                    ),
                    "-device".to_string(),
                    "scsi-cd,drive=cd0,bootindex=0".to_string(),
                ]);
                vm
            }
            ConfigChannel::LivePxe {
                initramfs,
                rootfs,
                kargs,
            } => {
                let initrd = dir.path().join("initrd.img");
                let mut bytes = fs_err::read(initramfs).map_err(|e| e.to_string())?;
                if let Some(r) = rootfs {
                    bytes.extend(fs_err::read(r).map_err(|e| e.to_string())?);
                }
                bytes.extend(nosa_image::live::ignition_cpio(&config));
                fs_err::write(&initrd, bytes).map_err(|e| e.to_string())?;
                let mut vm = Vm::new(
                    spec.accel,
                    spec.memory_mib,
                    spec.uefi,
                    VmDisk::image(&spec.disk, 512),
                );
                vm.disks.clear();
                vm.extra.extend([
                    "-kernel".to_string(),
                    spec.disk.display().to_string(),
                    "-initrd".to_string(),
                    initrd.display().to_string(),
                    "-append".to_string(),
                    kargs.clone(),
                ]);
                vm
            }
        };
        vm.extra.extend(spec.extra.iter().cloned());
        let port = free_port().map_err(|e| e.to_string())?;
        let console = dir.path().join("console.txt");
        vm.extra.extend([
            "-nic".to_string(),
            format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"),
            "-display".into(),
            "none".into(),
            "-monitor".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", console.display()),
        ]);
        fs_err::write(
            dir.path().join("qemu-command"),
            format!("{} {}\n", crate::qemu::QEMU, vm.args().join(" ")),
        )
        .map_err(|e| e.to_string())?;
        let mut cmd = vm.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_thread(&mut cmd);
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run {} (Debian package qemu-system-x86): {e}",
                crate::qemu::QEMU
            )
        })?;
        let mut m = Machine {
            child,
            dir,
            port,
            key,
            boot_secs: 0.0,
        };
        loop {
            if let Ok(Some(status)) = m.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = m.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "{} exited ({status}) before ssh answered: {}\nconsole:\n{}",
                    crate::qemu::QEMU,
                    err.trim(),
                    m.console_tail(30)
                ));
            }
            if started.elapsed() > spec.timeout {
                return Err(format!(
                    "ssh to the machine did not answer within {} s; console:\n{}",
                    spec.timeout.as_secs(),
                    m.console_tail(30)
                ));
            }
            if let Ok((0, _)) = m.ssh("true", None) {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        m.boot_secs = started.elapsed().as_secs_f64();
        Ok(m)
    }

    /// The forwarded ssh port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private key that logs in as `nest`.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// The ssh command line that logs in (for people: `nosa run` prints it).
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh {} {}@127.0.0.1",
            ssh_options(self.port, &self.key).join(" "),
            ignition::USER
        )
    }

    /// Runs `command` (a shell command line) as `nest`, with `stdin` if given; returns its
    /// exit status and its output (stdout and stderr interleaved as the guest wrote them).
    /// 255 is ssh's own failure.
    pub fn ssh(&self, command: &str, stdin: Option<&[u8]>) -> std::io::Result<(i32, Vec<u8>)> {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(self.port, &self.key))
            .arg(format!("{}@127.0.0.1", ignition::USER))
            .arg("--")
            .arg(format!("exec 2>&1; {command}"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot run ssh (Debian package openssh-client): {e}"),
            )
        })?;
        if let Some(bytes) = stdin {
            let mut w = child.stdin.take().expect("piped");
            let bytes = bytes.to_vec();
            // A writer thread: the guest may answer before it has read everything.
            std::thread::spawn(move || {
                let _ = w.write_all(&bytes);
            });
        }
        let out = child.wait_with_output()?;
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        Ok((out.status.code().unwrap_or(255), text))
    }

    /// The last `n` lines of the serial console.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console();
        let lines: Vec<&str> = text.lines().rev().take(n).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Everything the serial console printed so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(
            &fs_err::read(self.dir.path().join("console.txt")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// Whether QEMU still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the guest to power off and waits up to `timeout` for QEMU to exit; kills it
    /// otherwise.
    pub fn poweroff(mut self, timeout: Duration) {
        let _ = self.ssh("sudo systemctl poweroff --no-block", None);
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A machine of the pool: booted once for every test that may share it, or the boot's error
/// (each test that asked for it reports it without booting again).
pub type Shared = Arc<Mutex<Option<Result<Machine, String>>>>;

fn pool() -> &'static Mutex<HashMap<String, Shared>> {
    static POOL: OnceLock<Mutex<HashMap<String, Shared>>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The pool's machine for `key` (what was booted and how: the image's digest, firmware,
/// memory, test config), locked for the caller's use: tests on one machine run one at a
/// time. Boots it with `spec` the first time.
pub fn shared(key: &str, spec: &MachineSpec) -> Shared {
    let slot = pool()
        .lock()
        .expect("machine pool")
        .entry(key.to_string())
        .or_default()
        .clone();
    {
        let mut g = slot.lock().expect("machine slot");
        if g.is_none() {
            *g = Some(Machine::boot(spec));
        }
    }
    slot
}

/// Stops every machine of the pool (the end of a `nosa kola run`).
pub fn shutdown_pool() {
    let slots: Vec<Shared> = pool()
        .lock()
        .expect("machine pool")
        .drain()
        .map(|(_, v)| v)
        .collect();
    for s in slots {
        let taken = s.lock().expect("machine slot").take();
        if let Some(Ok(m)) = taken {
            drop(m);
        }
    }
}
