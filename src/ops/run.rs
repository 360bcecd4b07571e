//! `nosa run` (boot the latest qemu image with its serial console on the terminal) and
//! `nosa virt-install` (the libvirt import command for it).

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

/// A free TCP port on 127.0.0.1 (for the ssh forward).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
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
    if let Some(ign) = &a.ignition
        && !ign.is_file()
    {
        return Err(Failure::Config(miette::miette!(
            "--ignition {}: no such file",
            ign.display()
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
    let mut vm = Vm::new(accel.accel, a.memory, a.uefi, VmDisk::image(&image, 512));
    let port = free_port().map_err(runtime)?;
    vm.extra.extend([
        "-nic".to_string(),
        format!("user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22"),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        "mon:stdio".into(),
    ]);
    if let Some(ign) = &a.ignition {
        let abs = fs_err::canonicalize(ign).map_err(runtime)?;
        vm.extra.extend([
            "-fw_cfg".to_string(),
            format!("name=opt/com.coreos/config,file={}", abs.display()),
        ]);
    }
    // The workdir, read-only, as 9p tag `workdir` (the fixture distro mounts it at
    // /var/mnt/workdir).
    vm.extra.extend([
        "-virtfs".to_string(),
        format!(
            "local,path={},mount_tag=workdir,security_model=none,readonly=on",
            workdir.display()
        ),
    ]);
    if a.dry_run {
        println!("{} {}", nosa_kola::qemu::QEMU, vm.args().join(" "));
        return Ok(());
    }
    eprintln!(
        "nosa run: booting {} with {} ({}); ssh is forwarded from 127.0.0.1:{port}; \
         quit with Ctrl-A X",
        image.display(),
        accel.accel.name(),
        accel.reason
    );
    eprintln!(
        "nosa run: the workdir is shared read-only as 9p tag `workdir` (the fixture distro \
         mounts it at /var/mnt/workdir)"
    );
    if a.devshell {
        eprintln!("nosa run: devshell: the serial console below is a root shell once booted");
    }
    // Release the workdir before handing the terminal to QEMU for as long as the user likes.
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
