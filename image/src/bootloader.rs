//! Bootloaders, from the OS tree's own payloads, both grub reading one grub.cfg on the boot
//! partition (generated from the BLS entries, with the first-boot flag test): for BIOS an
//! i386-pc core image made with the host's `grub-mkimage` from the tree's
//! `/usr/lib/grub/i386-pc`, embedded in the BIOS-BOOT partition, and `boot.img` in the MBR,
//! patched the way `grub-bios-setup` does; for UEFI an x86_64-efi image from the tree's
//! `/usr/lib/grub/x86_64-efi` as the ESP's removable-media loader `EFI/BOOT/BOOTX64.EFI`.

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

/// The grub modules built into the UEFI image.
pub const GRUB_EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "fat",
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

/// Where the UEFI image goes on the ESP: the removable-media path, which firmware boots
/// without a boot entry.
pub const GRUB_EFI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

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

/// A digest of everything [`grub_images`] reads: the `grub-mkimage` executable it runs
/// (found on `PATH` as the command is), its arguments and embedded config, and every file
/// of the tree's `usr/lib/grub/i386-pc` and `usr/lib/grub/x86_64-efi` (path, type, mode,
/// content). grub-mkimage is a deterministic function of these (checked: two runs give the
/// same bytes), so images made from equal inputs may be used again; `image-fs` keeps the last
/// ones in its memo.
pub fn grub_inputs(sysroot: &Sysroot) -> Result<[u8; 32], ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = blake3::Hasher::new();
    h.update(b"nosa grub-mkimage i386-pc x86_64-efi v2\0");
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
    for a in [GRUB_PREFIX, GRUB_EMBEDDED_CFG, GRUB_EFI_PATH]
        .iter()
        .chain(GRUB_BIOS_MODULES)
        .chain([&"efi"])
        .chain(GRUB_EFI_MODULES)
    {
        h.update(a.as_bytes());
        h.update(b"\0");
    }
    for platform in ["i386-pc", "x86_64-efi"] {
        let dir = sysroot.tree_path(&format!("usr/lib/grub/{platform}"));
        h.update(platform.as_bytes());
        h.update(b"\0");
        if !dir.exists() {
            h.update(b"absent\0");
            continue;
        }
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
    }
    Ok(*h.finalize().as_bytes())
}

/// grub for both firmwares, made from the tree's modules: the BIOS core image and the UEFI
/// image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrubImages {
    /// The i386-pc core image (BIOS-BOOT partition).
    pub bios_core: Vec<u8>,
    /// The x86_64-efi image (the ESP's `EFI/BOOT/BOOTX64.EFI`).
    pub efi: Vec<u8>,
}

/// Makes both of grub's images ([`grub_bios_core`], [`grub_efi_image`]).
pub fn grub_images(sysroot: &Sysroot, work: &Path) -> Result<GrubImages, ImageError> {
    Ok(GrubImages {
        bios_core: grub_bios_core(sysroot, work)?,
        efi: grub_efi_image(sysroot, work)?,
    })
}

/// Makes the x86_64-efi image from the tree's grub modules, with the same embedded config as
/// the BIOS core image: it finds the partition labelled `boot` and reads `grub2/grub.cfg`
/// there, so UEFI and BIOS boots see the same menu and the same first-boot flag.
pub fn grub_efi_image(sysroot: &Sysroot, work: &Path) -> Result<Vec<u8>, ImageError> {
    grub_mkimage(
        sysroot,
        "x86_64-efi",
        "grub2-efi-x64-modules",
        GRUB_EFI_MODULES,
        work,
    )
}

/// Makes the i386-pc core image from the tree's grub modules. Its embedded config finds the
/// partition labelled `boot` and sets the prefix to `($root)/grub2`, where `normal` reads
/// grub.cfg.
pub fn grub_bios_core(sysroot: &Sysroot, work: &Path) -> Result<Vec<u8>, ImageError> {
    grub_mkimage(
        sysroot,
        "i386-pc",
        "grub2-pc-modules",
        GRUB_BIOS_MODULES,
        work,
    )
}

/// The host's `grub-mkimage -O <platform>` on the tree's `usr/lib/grub/<platform>` (from
/// `package`), with [`GRUB_EMBEDDED_CFG`] and `modules`; the image's bytes.
fn grub_mkimage(
    sysroot: &Sysroot,
    platform: &str,
    package: &str,
    modules: &[&str],
    work: &Path,
) -> Result<Vec<u8>, ImageError> {
    let dir = sysroot.tree_path(&format!("usr/lib/grub/{platform}"));
    if !dir.join("moddep.lst").is_file() {
        return Err(ImageError::missing(
            format!("grub {platform} modules in the tree (package {package})"),
            dir,
        ));
    }
    fs_err::create_dir_all(work)?;
    let cfg = work.join(format!("grub-embedded-{platform}.cfg"));
    fs_err::write(&cfg, GRUB_EMBEDDED_CFG)?;
    let out = work.join(format!("grub-{platform}.img"));
    Tool::new("grub-mkimage")
        .args(["-O", platform, "-p", GRUB_PREFIX])
        .arg("-d")
        .arg(&dir)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .args(modules)
        .run()?;
    let bytes = fs_err::read(&out)?;
    fs_err::remove_file(&out)?;
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

/// Stages the ESP's contents in the directory `dir`: grub's UEFI image `efi` (see
/// [`grub_efi_image`]) at the removable-media path. The kernels stay on the boot partition,
/// where grub.cfg names them. [`fill_esp`] puts the files into a FAT image of either sector
/// size.
pub fn stage_esp(efi: &[u8], dir: &Path) -> Result<(), ImageError> {
    let to = dir.join(GRUB_EFI_PATH);
    fs_err::create_dir_all(to.parent().expect("has a parent"))?;
    fs_err::write(&to, efi)?;
    Ok(())
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
        let first = grub_inputs(&s).unwrap();
        assert_eq!(grub_inputs(&s).unwrap(), first, "stable");
        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let d = grub_inputs(&s).unwrap();
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
        let efi = tmp.path().join("usr/lib/grub/x86_64-efi");
        fs_err::create_dir_all(&efi).unwrap();
        changed("the UEFI modules appearing");
        fs_err::write(efi.join("linux.mod"), "module").unwrap();
        changed("a UEFI module");
    }
}
