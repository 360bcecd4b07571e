//! `build_disk`: the x86_64 disk layout of nestos-assembler (BIOS-BOOT, EFI-SYSTEM, boot,
//! root) as a raw image with 512- or 4096-byte logical blocks, assembled by writing partition
//! images at their offsets (no loop devices, no mounts).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ImageError;
use crate::bls;
use crate::bootloader;
use crate::deploy::Sysroot;
use crate::fsimg;
use crate::gpt::{Gpt, GptPartition, Guid, derived_uuid_bytes, types, uuid_text};
use crate::sparse;

const MIB: u64 = 1 << 20;
/// BIOS-BOOT partition size.
pub const BIOS_BOOT_SIZE: u64 = MIB;
/// EFI-SYSTEM partition size.
pub const ESP_SIZE: u64 = 127 * MIB;
/// boot partition size.
pub const BOOT_SIZE: u64 = 384 * MIB;

/// What to build.
#[derive(Clone, Debug)]
pub struct DiskLayout {
    /// Logical block size: 512 (`qemu`, `metal`) or 4096 (`metal4k`).
    pub sector_size: u64,
    /// Root partition size in bytes (a multiple of 1 MiB).
    pub root_size: u64,
    /// Seed for the disk, partition and filesystem GUIDs (e.g. the commit checksum + format),
    /// so the same inputs give the same identifiers.
    pub seed: String,
    /// Filesystem timestamps (SOURCE_DATE_EPOCH style).
    pub timestamp: u64,
    /// The root filesystem: `ext4` (from a directory, no privileges) or `xfs` (a loop mount:
    /// root only).
    pub root_fs: String,
}

/// One partition of a built disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionInfo {
    /// 1-based number.
    pub number: u32,
    /// GPT name (`BIOS-BOOT`, `EFI-SYSTEM`, `boot`, `root`).
    pub name: String,
    /// Offset in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type GUID.
    pub type_guid: String,
    /// Unique GUID.
    pub guid: String,
    /// Filesystem UUID (or FAT volume id), if it has a filesystem.
    pub fs_id: Option<String>,
}

/// A built disk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in bytes.
    pub size: u64,
    /// Logical block size.
    pub sector_size: u64,
    /// Disk GUID.
    pub disk_guid: String,
    /// Whether grub for BIOS is installed (not on 4096-byte-block disks).
    pub bios: bool,
    /// The partitions.
    pub partitions: Vec<PartitionInfo>,
}

/// Copies `src` into `dst` at `offset`, reading only `src`'s data extents (`SEEK_DATA` /
/// `SEEK_HOLE`) and skipping all-zero blocks in them, so the destination stays sparse.
fn write_at_sparse(dst: &Path, offset: u64, src: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::FileExt;
    let input = fs_err::File::open(src)?;
    let len = input.metadata()?.len();
    let out = fs_err::OpenOptions::new().write(true).open(dst)?;
    sparse::each_nonzero_block(&input, len, 4096, |at, bytes| {
        Ok(out.file().write_all_at(bytes, offset + at)?)
    })?;
    // No fsync: the disk is either the node's output, which the store fsyncs when it takes
    // it, or a temporary that the qcow2 writer reads back from the page cache.
    Ok(())
}

/// What [`prepare_filesystems`] makes from a sysroot: the partition contents that do not depend
/// on the disk's sector size, so that images of the same platform (metal, metal4k) share them.
#[derive(Clone, Debug)]
pub struct FsLayout {
    /// Root partition size in bytes (a multiple of 1 MiB).
    pub root_size: u64,
    /// Seed for the filesystem UUIDs.
    pub seed: String,
    /// Filesystem timestamps.
    pub timestamp: u64,
    /// `ext4` or `xfs`.
    pub root_fs: String,
}

/// The prepared partitions, recorded as `filesystems.json` beside them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsInfo {
    /// Root partition size in bytes.
    pub root_size: u64,
    /// `ext4` or `xfs`.
    pub root_fs: String,
    /// UUID of the boot filesystem.
    pub boot_uuid: String,
    /// UUID of the root filesystem.
    pub root_uuid: String,
}

/// Files [`prepare_filesystems`] writes into its directory.
pub mod prepared {
    /// The boot partition (ext4), packed (`crate::sparse`).
    pub const BOOT_IMG: &str = "boot.packed";
    /// The root partition, packed.
    pub const ROOT_IMG: &str = "root.packed";
    /// The ESP's files (see `bootloader::stage_esp`).
    pub const ESP_DIR: &str = "esp";
    /// grub's i386-pc core image.
    pub const GRUB_CORE: &str = "grub-core.img";
    /// grub's boot.img (MBR code).
    pub const GRUB_BOOT: &str = "grub-boot.img";
    /// [`super::FsInfo`].
    pub const INFO: &str = "filesystems.json";
}

/// Makes the partition contents of a disk from a deployed sysroot into `dir`: the `boot`
/// filesystem (ext4, label `boot`, with a grub.cfg generated from the BLS entries and the
/// first-boot flag file), the `root` filesystem (ext4 from the directory, or xfs through a
/// loop mount, label `root`, 4096-byte sectors so it mounts on any disk), the ESP's files,
/// and grub's BIOS core and boot images; then `filesystems.json`. The filesystems are made
/// in `work` (any directory; a memory one is fastest) and packed into `dir`. `grub`, if given,
/// are the images `grub_images` would make for this sysroot (the caller checked
/// [`crate::grub_inputs`]); otherwise they are made.
pub fn prepare_filesystems(
    sysroot: &Sysroot,
    layout: &FsLayout,
    dir: &Path,
    work: &Path,
    grub: Option<bootloader::GrubImages>,
) -> Result<FsInfo, ImageError> {
    if layout.root_size == 0 || !layout.root_size.is_multiple_of(MIB) {
        return Err(ImageError::msg(format!(
            "root size {} is not a positive multiple of 1 MiB",
            layout.root_size
        )));
    }
    fs_err::create_dir_all(dir)?;
    let seed = layout.seed.as_str();
    // grub.cfg on the boot partition, from the BLS entries.
    let grub_cfg = sysroot.boot.join(bootloader::GRUB_CFG_PATH);
    fs_err::create_dir_all(grub_cfg.parent().expect("has a parent"))?;
    fs_err::write(&grub_cfg, bls::grub_cfg(&sysroot.entries, 1))?;
    // The first-boot flag file grub.cfg looks for (network kargs: none).
    fs_err::write(
        sysroot.boot.join("ignition.firstboot"),
        "set ignition_network_kcmdline=\"\"\n",
    )?;
    let boot_uuid = uuid_text(&derived_uuid_bytes(seed, "fs-boot"));
    let root_uuid = uuid_text(&derived_uuid_bytes(seed, "fs-root"));
    let grub = match grub {
        Some(g) => g,
        None => {
            let work = dir.join("grub.tmp");
            let g = bootloader::grub_images(sysroot, &work)?;
            fs_err::remove_dir_all(&work)?;
            g
        }
    };
    bootloader::stage_esp(&grub.efi, &dir.join(prepared::ESP_DIR))?;
    fs_err::create_dir_all(work)?;
    let boot_img = work.join("boot.img.tmp");
    fsimg::make_ext4(
        &sysroot.boot,
        &boot_img,
        BOOT_SIZE,
        "boot",
        &boot_uuid,
        layout.timestamp,
    )?;
    sparse::pack(&boot_img, &dir.join(prepared::BOOT_IMG))?;
    fs_err::remove_file(&boot_img)?;
    let root_img = work.join("root.img.tmp");
    match layout.root_fs.as_str() {
        "ext4" => fsimg::make_ext4(
            &sysroot.root,
            &root_img,
            layout.root_size,
            "root",
            &root_uuid,
            layout.timestamp,
        )?,
        "xfs" => {
            let work = dir.join("xfs.tmp");
            fs_err::create_dir_all(&work)?;
            fsimg::make_xfs(
                &sysroot.root,
                &root_img,
                layout.root_size,
                "root",
                &root_uuid,
                4096,
                &work,
            )?;
            fs_err::remove_dir_all(&work)?;
        }
        other => {
            return Err(ImageError::msg(format!(
                "root filesystem {other:?}: only ext4 and xfs are supported"
            )));
        }
    }
    sparse::pack(&root_img, &dir.join(prepared::ROOT_IMG))?;
    fs_err::remove_file(&root_img)?;
    fs_err::write(dir.join(prepared::GRUB_CORE), &grub.bios_core)?;
    fs_err::write(
        dir.join(prepared::GRUB_BOOT),
        bootloader::grub_bios_boot_img(sysroot)?,
    )?;
    let info = FsInfo {
        root_size: layout.root_size,
        root_fs: layout.root_fs.clone(),
        boot_uuid,
        root_uuid,
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| ImageError::msg(e.to_string()))?;
    fs_err::write(dir.join(prepared::INFO), json)?;
    Ok(info)
}

/// Builds the raw disk `out` from a deployed sysroot: [`prepare_filesystems`] then
/// [`assemble_disk`], with temporary files next to `out`.
pub fn build_disk(
    sysroot: &Sysroot,
    layout: &DiskLayout,
    out: &Path,
) -> Result<DiskInfo, ImageError> {
    let work = out.with_extension("parts.tmp");
    if work.exists() {
        fs_err::remove_dir_all(&work)?;
    }
    let info = prepare_filesystems(
        sysroot,
        &FsLayout {
            root_size: layout.root_size,
            seed: layout.seed.clone(),
            timestamp: layout.timestamp,
            root_fs: layout.root_fs.clone(),
        },
        &work,
        &work,
        None,
    )?;
    let disk = assemble_disk(&work, &info, layout.sector_size, &layout.seed, out)?;
    fs_err::remove_dir_all(&work)?;
    Ok(disk)
}

/// Assembles the raw disk `out` from prepared partitions (`dir`, see [`prepare_filesystems`]):
/// GPT with `sector_size`-byte blocks (GUIDs from `seed`), BIOS-BOOT with grub's core image
/// (512-byte disks only: BIOS addresses 512-byte sectors), the ESP (FAT with the disk's sector
/// size, holding the staged files), `boot` and `root`. No loop devices, no mounts.
pub fn assemble_disk(
    dir: &Path,
    info: &FsInfo,
    sector_size: u64,
    seed: &str,
    out: &Path,
) -> Result<DiskInfo, ImageError> {
    let ss = sector_size;
    if !matches!(ss, 512 | 4096) {
        return Err(ImageError::msg(format!(
            "sector size {ss}: only 512 and 4096 are supported"
        )));
    }
    // Partition offsets: everything MiB-aligned; 1 MiB before (MBR + GPT) and after (backup).
    let bios_off = MIB;
    let esp_off = bios_off + BIOS_BOOT_SIZE;
    let boot_off = esp_off + ESP_SIZE;
    let root_off = boot_off + BOOT_SIZE;
    let size = root_off + info.root_size + MIB;
    let boot_uuid = info.boot_uuid.clone();
    let root_uuid = info.root_uuid.clone();
    let vol = derived_uuid_bytes(seed, "fs-esp");
    let esp_id = u32::from_le_bytes([vol[0], vol[1], vol[2], vol[3]]);

    let esp_img = out.with_extension("esp.tmp");
    fsimg::make_vfat(&esp_img, ESP_SIZE, ss, "EFI-SYSTEM", esp_id)?;
    bootloader::fill_esp(&dir.join(prepared::ESP_DIR), &esp_img)?;

    if out.exists() {
        fs_err::remove_file(out)?;
    }
    let f = fs_err::File::create(out)?;
    f.set_len(size)?;
    drop(f);
    write_at_sparse(out, esp_off, &esp_img)?;
    fs_err::remove_file(&esp_img)?;
    let disk = fs_err::OpenOptions::new().write(true).open(out)?;
    for (name, want, at) in [
        (prepared::BOOT_IMG, BOOT_SIZE, boot_off),
        (prepared::ROOT_IMG, info.root_size, root_off),
    ] {
        let packed = dir.join(name);
        let len = sparse::unpacked_len(&packed)?;
        if len != want {
            return Err(ImageError::msg(format!(
                "{}: a {len}-byte partition image where {want} bytes were expected",
                packed.display()
            )));
        }
        sparse::unpack_at(&packed, &disk, at)?;
    }
    drop(disk);

    let parts = [
        (
            "BIOS-BOOT",
            types::BIOS_BOOT,
            bios_off,
            BIOS_BOOT_SIZE,
            None,
        ),
        (
            "EFI-SYSTEM",
            types::ESP,
            esp_off,
            ESP_SIZE,
            Some(format!("{:04X}-{:04X}", esp_id >> 16, esp_id & 0xffff)),
        ),
        (
            "boot",
            types::LINUX_FS,
            boot_off,
            BOOT_SIZE,
            Some(boot_uuid),
        ),
        (
            "root",
            types::LINUX_FS,
            root_off,
            info.root_size,
            Some(root_uuid),
        ),
    ];
    let disk_guid = Guid::derive(seed, "disk");
    let mut gpt = Gpt {
        block_size: ss,
        disk_size: size,
        disk_guid,
        partitions: Vec::new(),
    };
    let mut infos = Vec::new();
    for (i, (name, ty, off, len, fs_id)) in parts.into_iter().enumerate() {
        let guid = Guid::derive(seed, &format!("part-{name}"));
        gpt.partitions.push(GptPartition {
            type_guid: Guid::parse(ty)?,
            unique_guid: guid,
            first_lba: off / ss,
            last_lba: (off + len) / ss - 1,
            attributes: 0,
            name: name.to_string(),
        });
        infos.push(PartitionInfo {
            number: i as u32 + 1,
            name: name.to_string(),
            offset: off,
            size: len,
            type_guid: ty.to_string(),
            guid: guid.to_text(),
            fs_id,
        });
    }
    gpt.write(out)?;

    // BIOS boot needs 512-byte sectors: boot.img addresses the core image in BIOS sectors.
    let bios = ss == 512;
    if bios {
        let core = fs_err::read(dir.join(prepared::GRUB_CORE))?;
        let boot_img = fs_err::read(dir.join(prepared::GRUB_BOOT))?;
        bootloader::install_grub_bios(&boot_img, out, &core, bios_off / 512, BIOS_BOOT_SIZE)?;
    }
    Ok(DiskInfo {
        size,
        sector_size: ss,
        disk_guid: disk_guid.to_text(),
        bios,
        partitions: infos,
    })
}
