//! Bootloaders, from the OS tree's own payloads: BIOS grub (an i386-pc core image made with
//! the host's `grub-mkimage` from the tree's `/usr/lib/grub/i386-pc`, embedded in the
//! BIOS-BOOT partition, and `boot.img` in the MBR, patched the way `grub-bios-setup` does),
//! and UEFI systemd-boot (`/usr/lib/systemd/boot/efi/systemd-bootx64.efi` as the ESP's
//! removable-media loader, reading BLS entries copied to the ESP).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::ImageError;
use crate::cmd::Tool;
use crate::deploy::Sysroot;
use crate::fsimg::VfatWriter;

/// The grub modules built into the BIOS core image (dependencies are added by grub-mkimage).
pub const GRUB_BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "ext2",
    "search",
    "search_label",
    "search_fs_uuid",
    "normal",
    "linux",
    "configfile",
    "echo",
    "test",
    "serial",
    "terminal",
    "boot",
];

/// Where the generated grub.cfg lives on the boot partition.
pub const GRUB_CFG_PATH: &str = "grub2/grub.cfg";

// Offsets in boot.img (grub-core/boot/i386/pc/boot.S, include/grub/i386/pc/boot.h).
const KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;
/// The MBR boot code area that may be written (the rest is disk signature + partition table).
const MBR_CODE_END: usize = 440;
// The first blocklist at the end of the core image's first sector (diskboot.S).
const BLOCKLIST_START: usize = 0x200 - 12;

/// The config embedded in the BIOS core image.
const GRUB_EMBEDDED_CFG: &str =
    "search --no-floppy --label boot --set=root\nset prefix=($root)/grub2\n";

/// The prefix given to grub-mkimage.
const GRUB_PREFIX: &str = "/grub2";

/// A digest of everything [`grub_bios_core`] reads: the `grub-mkimage` executable it runs
/// (found on `PATH` as the command is), its arguments and embedded config, and every file
/// of the tree's `usr/lib/grub/i386-pc` (path, type, mode, content). grub-mkimage is a
/// deterministic function of these (checked: two runs give the same bytes), so a core image
/// made from equal inputs may be used again; `image-fs` keeps the last one in its memo.
pub fn grub_bios_core_inputs(sysroot: &Sysroot) -> Result<[u8; 32], ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = blake3::Hasher::new();
    h.update(b"nosa grub-mkimage i386-pc v1\0");
    let exe = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("grub-mkimage"))
        .find(|p| p.is_file())
        .ok_or_else(|| ImageError::msg("grub-mkimage not found on PATH (package grub-common)"))?;
    h.update(exe.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    let hash = |p: &Path| {
        nosa_cache::hash_file(p).map_err(|e| ImageError::msg(format!("{}: {e}", p.display())))
    };
    h.update(&hash(&exe)?.0);
    for a in [GRUB_PREFIX, GRUB_EMBEDDED_CFG]
        .iter()
        .chain(GRUB_BIOS_MODULES)
    {
        h.update(a.as_bytes());
        h.update(b"\0");
    }
    let dir = sysroot.tree_path("usr/lib/grub/i386-pc");
    for e in walkdir::WalkDir::new(&dir).sort_by_file_name() {
        let e = e.map_err(|e| ImageError::msg(format!("{}: {e}", dir.display())))?;
        let rel = e.path().strip_prefix(&dir).expect("walked under dir");
        let meta = e.path().symlink_metadata()?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(&meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            h.update(&hash(e.path())?.0);
        } else if meta.file_type().is_symlink() {
            h.update(fs_err::read_link(e.path())?.as_os_str().as_encoded_bytes());
        }
        h.update(b"\0");
    }
    Ok(*h.finalize().as_bytes())
}

/// Makes the i386-pc core image from the tree's grub modules. Its embedded config finds the
/// partition labelled `boot` and sets the prefix to `($root)/grub2`, where `normal` reads
/// grub.cfg.
pub fn grub_bios_core(sysroot: &Sysroot, work: &Path) -> Result<Vec<u8>, ImageError> {
    let dir = sysroot.tree_path("usr/lib/grub/i386-pc");
    if !dir.join("moddep.lst").is_file() {
        return Err(ImageError::missing(
            "grub i386-pc modules in the tree (package grub2-pc-modules)",
            dir,
        ));
    }
    let cfg = work.join("grub-embedded.cfg");
    fs_err::write(&cfg, GRUB_EMBEDDED_CFG)?;
    let core = work.join("core.img");
    Tool::new("grub-mkimage")
        .args(["-O", "i386-pc", "-p", GRUB_PREFIX])
        .arg("-d")
        .arg(&dir)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&core)
        .args(GRUB_BIOS_MODULES)
        .run()?;
    let bytes = fs_err::read(&core)?;
    fs_err::remove_file(&core)?;
    fs_err::remove_file(&cfg)?;
    Ok(bytes)
}

/// The tree's grub `boot.img` (the MBR code), checked to be one sector.
pub fn grub_bios_boot_img(sysroot: &Sysroot) -> Result<Vec<u8>, ImageError> {
    let path = sysroot.tree_path("usr/lib/grub/i386-pc/boot.img");
    let boot = fs_err::read(&path)?;
    if boot.len() != 512 {
        return Err(ImageError::msg(format!(
            "{} is {} bytes, not 512",
            path.display(),
            boot.len()
        )));
    }
    Ok(boot)
}

/// Installs grub for BIOS into the image: `core` at 512-byte sector `core_lba` (the BIOS-BOOT
/// partition) and `boot_img` (the tree's `boot.img`, see [`grub_bios_boot_img`]) into the MBR
/// code area, pointing at it.
pub fn install_grub_bios(
    boot_img: &[u8],
    image: &Path,
    core: &[u8],
    core_lba: u64,
    room: u64,
) -> Result<(), ImageError> {
    if core.len() < 512 || core.len() as u64 > room {
        return Err(ImageError::msg(format!(
            "grub core image is {} bytes; the BIOS-BOOT partition holds {room}",
            core.len()
        )));
    }
    if boot_img.len() != 512 {
        return Err(ImageError::msg(format!(
            "grub boot.img is {} bytes, not 512",
            boot_img.len()
        )));
    }
    let mut boot = boot_img.to_vec();
    boot[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    // 0xff: use the drive number the BIOS passes in DL.
    boot[BOOT_DRIVE] = 0xff;
    // Hard disk: replace the floppy drive check (a jmp) with two NOPs, as grub-bios-setup does.
    boot[DRIVE_CHECK] = 0x90;
    boot[DRIVE_CHECK + 1] = 0x90;

    let mut core = core.to_vec();
    let len = u16::from_le_bytes([core[BLOCKLIST_START + 8], core[BLOCKLIST_START + 9]]);
    let sectors = (core.len() as u64).div_ceil(512);
    if u64::from(len) + 1 != sectors {
        return Err(ImageError::msg(format!(
            "grub core image blocklist says {len} sectors, the image has {sectors}"
        )));
    }
    core[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());

    let mut f = fs_err::OpenOptions::new().write(true).open(image)?;
    f.seek(SeekFrom::Start(core_lba * 512))?;
    f.write_all(&core)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&boot[..MBR_CODE_END])?;
    f.sync_all()?;
    Ok(())
}

/// Stages the ESP's contents in the directory `dir`: systemd-boot as `EFI/BOOT/BOOTX64.EFI`
/// (and `EFI/systemd/`), a `loader/loader.conf` that boots the default entry without a menu,
/// and the BLS entries with the kernels and initramfs images they name, at the same paths as
/// on the boot partition. [`fill_esp`] puts them into a FAT image of either sector size.
pub fn stage_esp(sysroot: &Sysroot, dir: &Path) -> Result<(), ImageError> {
    let sdboot = sysroot.tree_path("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    if !sdboot.is_file() {
        return Err(ImageError::missing(
            "systemd-boot in the tree (package systemd-boot-unsigned)",
            sdboot,
        ));
    }
    let mut w = DirWriter { root: dir };
    w.put(&sdboot, "EFI/BOOT/BOOTX64.EFI")?;
    w.put(&sdboot, "EFI/systemd/systemd-bootx64.efi")?;
    let default = &sysroot.entries[0];
    let conf = dir.join("loader.conf.tmp");
    fs_err::write(
        &conf,
        format!("timeout 0\ndefault {}\nconsole-mode keep\n", default.file),
    )?;
    w.put(&conf, "loader/loader.conf")?;
    fs_err::remove_file(&conf)?;
    let work = dir;
    for e in &sysroot.entries {
        // systemd-boot has no conditionals: the ESP copy of each entry carries the first-boot
        // flag (the entries on the boot partition, which ostree manages, do not).
        let text = fs_err::read_to_string(sysroot.boot.join("loader/entries").join(&e.file))?;
        let flagged: String = text
            .lines()
            .map(|l| match l.strip_prefix("options ") {
                Some(o) => format!("options {o} ignition.firstboot\n"),
                None => format!("{l}\n"),
            })
            .collect();
        let copy = work.join("entry.conf.tmp");
        fs_err::write(&copy, flagged)?;
        w.put(&copy, &format!("loader/entries/{}", e.file))?;
        fs_err::remove_file(&copy)?;
        for f in e.files() {
            let src = sysroot.boot.join(f);
            if !src.is_file() {
                return Err(ImageError::missing(
                    format!("file named by BLS entry {}", e.file),
                    src,
                ));
            }
            w.put(&src, f)?;
        }
    }
    Ok(())
}

/// Copies files into a staging directory, like [`VfatWriter`] into a FAT image.
struct DirWriter<'a> {
    root: &'a Path,
}

impl DirWriter<'_> {
    fn put(&mut self, src: &Path, dest: &str) -> Result<(), ImageError> {
        let to = self.root.join(dest);
        if let Some(p) = to.parent() {
            fs_err::create_dir_all(p)?;
        }
        fs_err::copy(src, &to)?;
        Ok(())
    }
}

/// Puts every file of the staged ESP directory `dir` (see [`stage_esp`]) into the formatted
/// FAT image `esp`, in path order.
pub fn fill_esp(dir: &Path, esp: &Path) -> Result<(), ImageError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut w = VfatWriter::new(esp);
    for f in files {
        let rel = f
            .strip_prefix(dir)
            .map_err(|e| ImageError::msg(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        w.put(&f, &rel)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysroot(deployment: &Path) -> Sysroot {
        Sysroot {
            root: deployment.join("root"),
            boot: deployment.join("boot"),
            osname: "nestos".into(),
            deployment: deployment.to_path_buf(),
            checksum: "0".repeat(64),
            entries: Vec::new(),
        }
    }

    /// Every change grub-mkimage could see changes the digest a kept core image is keyed by.
    #[test]
    fn grub_inputs_follow_the_module_directory() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("usr/lib/grub/i386-pc");
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("moddep.lst"), "ext2: fshelp\n").unwrap();
        fs_err::write(dir.join("ext2.mod"), "module").unwrap();
        let s = sysroot(tmp.path());
        let first = grub_bios_core_inputs(&s).unwrap();
        assert_eq!(grub_bios_core_inputs(&s).unwrap(), first, "stable");
        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let d = grub_bios_core_inputs(&s).unwrap();
            assert!(!seen.contains(&d), "{what} did not change the digest");
            seen.push(d);
        };
        fs_err::write(dir.join("ext2.mod"), "Module").unwrap();
        changed("a module's content");
        fs_err::set_permissions(dir.join("ext2.mod"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        changed("a module's mode");
        fs_err::write(dir.join("new.mod"), "").unwrap();
        changed("a new module");
        std::os::unix::fs::symlink("ext2.mod", dir.join("alias.mod")).unwrap();
        changed("a symlink");
    }
}
