//! Disk images from an ostree commit, like nestos-assembler's x86_64 `qemu`, `metal` and
//! `metal4k` artifacts.
//!
//! - [`deploy_sysroot`] deploys the commit into a physical sysroot with the ostree CLI
//!   (`admin init-fs`, `os-init`, `pull-local`, `admin deploy --sysroot`), which writes BLS
//!   entries and copies the kernel and initramfs to `/boot`; the result is split into the root
//!   and boot partitions' contents.
//! - [`build_disk`] writes a GPT (by hand: 512- or 4096-byte blocks, GUIDs derived from a
//!   seed) with BIOS-BOOT, EFI-SYSTEM (FAT via mkfs.vfat + mtools), boot and root (ext4 via
//!   `mke2fs -d`); grub from the tree's modules for both firmwares (i386-pc in BIOS-BOOT,
//!   x86_64-efi as the ESP's `EFI/BOOT/BOOTX64.EFI`), reading one generated grub.cfg.
//! - [`raw_to_qcow2`] writes qcow2 from a sparse raw disk, then runs `qemu-img check`.
//! - [`ImageRule`] is the engine rule `image:<arch>:<format>`.
//! - [`live_kargs`] fills the config's `live/` templates with the live system's kernel
//!   arguments and describes their embed areas (`kargs.json`).
//! - [`LivePxeRule`] and [`LiveIsoRule`] are the engine rules `live-pxe:<arch>` (kernel,
//!   live initramfs, `rootfs.img` with the squashfs) and `live:<arch>` (the ISO), written with
//!   [`cpio`] and checked with [`iso9660`] (see [`live`]).
//!
//! Booting and testing the images is `nosa-kola`'s.
//!
//! See `docs/images.md`.

mod bls;
mod bootloader;
mod cmd;
pub mod cpio;
mod deploy;
mod disk;
mod error;
mod fsimg;
mod gpt;
pub mod iso9660;
pub mod live;
pub mod live_kargs;
mod qcow2;
mod rule;
pub mod sparse;

pub use bls::{BlsEntry, grub_cfg, read_entries};
pub use bootloader::{
    GRUB_BIOS_MODULES, GRUB_CFG_PATH, GRUB_EFI_MODULES, GRUB_EFI_PATH, GrubImages, grub_inputs,
};
pub use deploy::{BASE_KARGS, Sysroot, deploy_sysroot};
pub use disk::{
    BIOS_BOOT_SIZE, BOOT_SIZE, DiskInfo, DiskLayout, ESP_SIZE, FsInfo, FsLayout, PartitionInfo,
    assemble_disk, build_disk, prepare_filesystems, prepared,
};
pub use error::ImageError;
pub use gpt::{Gpt, GptPartition, Guid, crc32, types as part_types};
pub use live::{LiveCustomRule, LiveIsoRule, LiveNames, LivePxeRule, LiveRecord};
pub use qcow2::{check_qcow2, raw_to_qcow2};
pub use rule::{
    ImageFormat, ImageFsRule, ImageRecord, ImageRule, SysrootRecord, read_image_record,
};
