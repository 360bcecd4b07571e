//! `deploy_sysroot`: an ostree commit deployed into a physical sysroot in a directory, with
//! the ostree CLI (`admin init-fs`, `os-init`, `pull-local`, `admin deploy --sysroot`), then
//! split into the two partitions' contents: the physical root and `/boot`.

use std::path::{Path, PathBuf};

use crate::ImageError;
use crate::bls::{self, BlsEntry};
use crate::cmd::Tool;

/// The kernel arguments every nosa image gets before image.yaml's extra ones
/// (`ignition.platform.id=` is per format and added by the caller).
pub const BASE_KARGS: &[&str] = &["root=LABEL=root", "rw", "console=ttyS0,115200"];

/// A deployed sysroot, split by partition.
#[derive(Clone, Debug)]
pub struct Sysroot {
    /// The physical root (root partition contents: `ostree/`, an empty `boot/`, ...).
    pub root: PathBuf,
    /// The boot partition contents (`loader/entries`, `ostree/<os>-<bootcsum>/`, ...).
    pub boot: PathBuf,
    /// The stateroot name.
    pub osname: String,
    /// The deployment's checkout (`root/ostree/deploy/<os>/deploy/<checksum>.0`).
    pub deployment: PathBuf,
    /// The commit checksum deployed.
    pub checksum: String,
    /// The BLS entries, default first.
    pub entries: Vec<BlsEntry>,
}

impl Sysroot {
    /// A file of the deployed OS tree (`usr/lib/grub/i386-pc`).
    pub fn tree_path(&self, rel: &str) -> PathBuf {
        self.deployment.join(rel)
    }
}

/// Deploys `rev` (a ref or checksum) from the repository `repo` (any mode) into `dest` (must
/// not exist or be empty): `dest/root` is the physical root, `dest/boot` the boot partition's
/// contents. `kargs` are appended in order (use [`BASE_KARGS`] plus the platform and extra
/// kernel arguments). The ostree deploy leaves BLS entries only (`sysroot.bootloader=none`).
pub fn deploy_sysroot(
    repo: &Path,
    rev: &str,
    osname: &str,
    kargs: &[String],
    dest: &Path,
) -> Result<Sysroot, ImageError> {
    if dest.exists() && fs_err::read_dir(dest)?.next().is_some() {
        return Err(ImageError::msg(format!(
            "deploy destination {} is not empty",
            dest.display()
        )));
    }
    let root = dest.join("root");
    let boot = dest.join("boot");
    fs_err::create_dir_all(&root)?;
    let sysroot_arg = format!("--sysroot={}", root.display());
    Tool::new("ostree")
        .args(["admin", "init-fs"])
        .arg(&root)
        .run()?;
    Tool::new("ostree")
        .args(["admin", "os-init"])
        .arg(&sysroot_arg)
        .arg(osname)
        .run()?;
    let repo_arg = format!("--repo={}", root.join("ostree/repo").display());
    Tool::new("ostree")
        .arg(&repo_arg)
        .args(["config", "set", "sysroot.bootloader", "none"])
        .run()?;
    Tool::new("ostree")
        .arg(&repo_arg)
        .arg("pull-local")
        .arg(repo)
        .arg(rev)
        .run()?;
    // A checksum names itself (pull-local has checked the commit is there); a ref is resolved.
    let is_checksum = rev.len() == 64 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    let checksum = if is_checksum {
        rev.to_ascii_lowercase()
    } else {
        Tool::new("ostree")
            .arg(&repo_arg)
            .args(["rev-parse", rev])
            .run()?
            .trim()
            .to_string()
    };
    // ostree marks a deployment immutable (chattr +i) when it runs as root: a directory the
    // store's scratch cleanup, `nosa clean` and `rm -rf` could then not remove. A disk image
    // needs no such flag (mke2fs -d does not copy it anyway).
    let mut deploy = Tool::new("ostree")
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .args(["admin", "deploy"])
        .arg(&sysroot_arg)
        .arg(format!("--os={osname}"));
    for k in kargs {
        deploy = deploy.arg(format!("--karg-append={k}"));
    }
    deploy.arg(&checksum).run()?;

    let deployment = root
        .join("ostree/deploy")
        .join(osname)
        .join("deploy")
        .join(format!("{checksum}.0"));
    if !deployment.is_dir() {
        return Err(ImageError::missing("the deployment", deployment));
    }
    // Split: the boot partition's contents leave the physical root, whose /boot stays as the
    // (empty) mount point.
    fs_err::rename(root.join("boot"), &boot)?;
    fs_err::create_dir(root.join("boot"))?;
    let entries = bls::read_entries(&boot)?;
    Ok(Sysroot {
        root,
        boot,
        osname: osname.to_string(),
        deployment,
        checksum,
        entries,
    })
}
