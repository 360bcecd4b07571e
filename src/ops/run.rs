//! `nosa run` (boot the latest qemu image with its serial console on the terminal, or log in
//! over ssh with `--ssh`) and `nosa virt-install` (the libvirt import command for it).

use std::path::{Path, PathBuf};
use std::process::Command;

use nosa_kola::qemu::{ProbeKernel, Vm, VmDisk, detect_accel};

use crate::cli::{Cli, RunArgs, VirtInstallArgs};
use crate::exit::{Failure, OpResult, runtime};
use nosa_build::{BuildsDir, Session, ids};

/// The latest build's id, its name and the path of its qemu image, for `arch`.
fn latest_qemu(workdir: &Path, arch: &str) -> Result<(String, String, PathBuf), Failure> {
    BuildsDir::of(workdir)
        .latest_image(arch, "qemu")
        .map(|(id, meta, path)| (id, meta.name, path))
        .ok_or_else(|| {
            Failure::Build(Some(miette::miette!(
                help = "run `nosa build qemu` (or `nosa buildextend-qemu`) first, or pass --qemu-image",
                "the latest build has no qemu image"
            )))
        })
}

/// The workdir's session, its path and the first configured arch.
fn open(cli: &Cli) -> Result<(Session, PathBuf, String), Failure> {
    let s = crate::ops::open(cli, None, None)?;
    let workdir = s.engine.workdir().to_path_buf();
    let arch =
        s.ws.configs
            .first()
            .map(|c| c.arch.to_string())
            .unwrap_or_else(|| "x86_64".into());
    Ok((s, workdir, arch))
}

/// The public key `--authorize-key` names: the file given, or the user's usual one, or
/// `None` (generate one).
fn user_public_key(arg: &str) -> Result<Option<(PathBuf, String)>, Failure> {
    if !arg.is_empty() {
        let p = PathBuf::from(arg);
        let key = fs_err::read_to_string(&p).map_err(|e| {
            Failure::Config(miette::miette!(
                help = "pass the public half (a .pub file) of the key you log in with",
                "--authorize-key: {e}"
            ))
        })?;
        return Ok(Some((p, key.trim().to_string())));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for name in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
        if let Some(p) = home.as_ref().map(|h| h.join(".ssh").join(name))
            && let Ok(key) = fs_err::read_to_string(&p)
        {
            return Ok(Some((p, key.trim().to_string())));
        }
    }
    Ok(None)
}

/// `nosa run`.
pub fn run(cli: &Cli, a: &RunArgs) -> OpResult {
    let (s, workdir, arch) = open(cli)?;
    let image = match &a.qemu_image {
        Some(p) => p.clone(),
        None => latest_qemu(&workdir, &arch)?.2,
    };
    if !image.is_file() {
        return Err(Failure::Config(miette::miette!(
            "{}: no such image",
            image.display()
        )));
    }
    let user_config =
        match &a.ignition {
            Some(ign) => Some(fs_err::read(ign).map_err(|e| {
                Failure::Config(miette::miette!("--ignition {}: {e}", ign.display()))
            })?),
            None => None,
        };
    if !(a.command.is_empty() || a.ssh || a.devshell) {
        return Err(Failure::Config(miette::miette!(
            help = "add --ssh: the command runs over ssh once the machine answers",
            "a command after `--` needs --ssh"
        )));
    }
    // The KVM probe boots the image's own kernel, kept in the image node's output.
    let state = s.engine.state();
    let kernel = s.output_blob(&state, &ids::image(&arch, "qemu"), "vmlinuz");
    let digest = kernel.as_ref().map(|(_, d)| d.to_hex());
    let probe = kernel
        .as_ref()
        .zip(digest.as_deref())
        .map(|((path, _), digest)| ProbeKernel { path, digest });
    let accel = detect_accel(probe, &workdir.join("cache/qemu"));
    let run_dir = workdir.join("tmp/run");
    if a.ssh || a.devshell {
        // Release the workdir: the machine may run for as long as the user likes.
        drop(s);
        return run_ssh(a, &image, accel, user_config, &run_dir, &workdir);
    }
    // The console on this terminal; a key authorized for `nest` if asked for.
    let mut login: Option<(String, Option<PathBuf>)> = None;
    let config_file = match &a.authorize_key {
        Some(arg) => {
            fs_err::create_dir_all(&run_dir).map_err(runtime)?;
            let (public, private) = match user_public_key(arg)? {
                Some((path, key)) => (
                    key,
                    path.with_extension("")
                        .is_file()
                        .then(|| path.with_extension("")),
                ),
                None => {
                    let dir = run_dir.join("ssh");
                    let _ = fs_err::remove_dir_all(&dir);
                    fs_err::create_dir_all(&dir).map_err(runtime)?;
                    let (private, public) = nosa_kola::machine::generate_key(&dir)
                        .map_err(|e| Failure::Build(Some(miette::miette!("{e}"))))?;
                    (public, Some(private))
                }
            };
            let file = run_dir.join("config.ign");
            fs_err::write(
                &file,
                nosa_kola::ignition::login_config(&public, user_config.as_deref()),
            )
            .map_err(runtime)?;
            login = Some((public, private));
            Some(file)
        }
        None => match &a.ignition {
            Some(ign) => Some(fs_err::canonicalize(ign).map_err(runtime)?),
            None => None,
        },
    };
    let mut vm = Vm::new(accel.accel, a.memory, a.uefi, VmDisk::image(&image, 512));
    let port = nosa_kola::machine::free_port().map_err(runtime)?;
    vm.extra.extend([
        "-nic".to_string(),
        format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "mon:stdio".into(),
    ]);
    if let Some(f) = &config_file {
        vm.extra.extend([
            "-fw_cfg".to_string(),
            format!("name=opt/com.coreos/config,file={}", f.display()),
        ]);
    }
    vm.extra.extend(workdir_share(&workdir));
    if a.dry_run {
        println!("{} {}", nosa_kola::qemu::QEMU, vm.args().join(" "));
        return Ok(());
    }
    eprintln!(
        "nosa run: booting {} with {} ({}); quit with Ctrl-A X",
        image.display(),
        accel.accel.name(),
        accel.reason
    );
    match &login {
        Some((_, key)) => {
            let identity = key
                .as_ref()
                .map(|k| format!(" -i {}", k.display()))
                .unwrap_or_default();
            eprintln!(
                "nosa run: log in once it has booted: ssh -p {port}{identity} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null nest@127.0.0.1"
            );
        }
        None => eprintln!(
            "nosa run: ssh is forwarded from 127.0.0.1:{port}; images accept keys only: \
             pass --authorize-key (or --ignition with one), or use --ssh"
        ),
    }
    eprintln!(
        "nosa run: the workdir is shared read-only as 9p tag `workdir` \
         (`sudo mount -t 9p workdir /mnt` in the guest)"
    );
    drop(s);
    let status = vm.command().status().map_err(|e| {
        Failure::Build(Some(miette::miette!(
            help = "install the Debian package qemu-system-x86",
            "cannot run {}: {e}",
            nosa_kola::qemu::QEMU
        )))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Build(Some(miette::miette!(
            "{} exited with {status}",
            nosa_kola::qemu::QEMU
        ))))
    }
}

/// The workdir, read-only, as 9p tag `workdir` (`sudo mount -t 9p -o trans=virtio workdir
/// /mnt` in the guest).
fn workdir_share(workdir: &Path) -> Vec<String> {
    vec![
        "-virtfs".to_string(),
        format!(
            "local,path={},mount_tag=workdir,security_model=none,readonly=on",
            workdir.display()
        ),
    ]
}

/// `nosa run --ssh`: boots with a generated key, waits for ssh, logs in (or runs the command
/// after `--`), then powers the machine off; the exit status is ssh's.
fn run_ssh(
    a: &RunArgs,
    image: &Path,
    accel: nosa_kola::qemu::AccelChoice,
    user_config: Option<Vec<u8>>,
    run_dir: &Path,
    workdir: &Path,
) -> OpResult {
    use nosa_kola::machine::{ConfigChannel, Machine, MachineSpec};
    let spec = MachineSpec {
        accel: accel.accel,
        disk: image.to_path_buf(),
        sector_size: 512,
        uefi: a.uefi,
        memory_mib: a.memory,
        channel: ConfigChannel::FwCfg,
        test_config: user_config,
        kola: false,
        scratch_base: run_dir.to_path_buf(),
        timeout: std::time::Duration::from_secs(600),
        extra: workdir_share(workdir),
    };
    if a.dry_run {
        return Err(Failure::Config(miette::miette!(
            "--dry-run prints the QEMU command of a console boot; leave out --ssh"
        )));
    }
    eprintln!(
        "nosa run: booting {} with {} ({}); waiting for ssh (the console is in {}/machine-*/console.txt)",
        image.display(),
        accel.accel.name(),
        accel.reason,
        run_dir.display()
    );
    let m = Machine::boot(&spec).map_err(|e| Failure::Build(Some(miette::miette!("{e}"))))?;
    eprintln!(
        "nosa run: ssh answered after {:.0} s; logging in as nest (sudo works)",
        m.boot_secs
    );
    let mut cmd = Command::new("ssh");
    cmd.args(nosa_kola::machine::ssh_options(m.port(), m.key()));
    if a.command.is_empty() {
        cmd.arg("-t");
    }
    cmd.arg(format!("{}@127.0.0.1", nosa_kola::ignition::USER));
    if !a.command.is_empty() {
        cmd.arg("--").args(&a.command);
    }
    let status = cmd.status().map_err(|e| {
        Failure::Build(Some(miette::miette!(
            help = "install the Debian package openssh-client",
            "cannot run ssh: {e}"
        )))
    })?;
    m.poweroff(std::time::Duration::from_secs(30));
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Build(Some(miette::miette!(
            "ssh exited with {status}"
        ))))
    }
}

/// `nosa virt-install`.
pub fn virt_install(cli: &Cli, a: &VirtInstallArgs) -> OpResult {
    let (_, workdir, arch) = open(cli)?;
    let (id, name, image) = latest_qemu(&workdir, &arch)?;
    let image = fs_err::canonicalize(&image).map_err(runtime)?;
    let mut args: Vec<String> = vec![
        "--connect=qemu:///system".into(),
        format!(
            "--name={}",
            a.name.clone().unwrap_or(format!("{name}-{id}"))
        ),
        format!("--vcpus={}", a.vcpus),
        format!("--memory={}", a.memory),
        "--os-variant=fedora-coreos-stable".into(),
        "--import".into(),
        "--graphics=none".into(),
        "--network=network=default".into(),
        format!(
            "--disk=size={},backing_store={},backing_format=qcow2",
            a.disk_size,
            image.display()
        ),
    ];
    if let Some(ign) = &a.ignition {
        let ign = fs_err::canonicalize(ign)
            .map_err(|e| Failure::Config(miette::miette!("--ignition {}: {e}", ign.display())))?;
        args.push(format!(
            "--qemu-commandline=-fw_cfg name=opt/com.coreos/config,file={}",
            ign.display()
        ));
    }
    if !a.exec {
        let quoted: Vec<String> = args.iter().map(|x| shell_quote(x)).collect();
        println!("virt-install {}", quoted.join(" "));
        return Ok(());
    }
    let status = Command::new("virt-install").args(&args).status().map_err(|e| {
        Failure::Build(Some(miette::miette!(
            help = "install the Debian package virtinst (and libvirt-daemon-system for qemu:///system)",
            "cannot run virt-install: {e}"
        )))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Build(Some(miette::miette!(
            "virt-install exited with {status}"
        ))))
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `nosa exec-node`: the node a build farm's worker was given (see `nosa_engine::exec_node`).
/// Exit 0: it ran; 1: its rule failed (`result.json` says why); 2: it could not run here.
pub fn exec_node(a: &crate::cli::ExecNodeArgs) -> OpResult {
    match nosa_engine::exec_node(&a.node, &nosa_rules::portable::decode) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Build(None)),
        Err(e) => Err(Failure::Config(miette::miette!("exec-node: {e}"))),
    }
}
