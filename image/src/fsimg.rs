//! Filesystem images made from directories without mounting anything: ext4 with
//! `mke2fs -d`, the ESP with `mkfs.vfat` + mtools (`mmd`, `mcopy`).

use std::collections::BTreeSet;
use std::path::Path;

use crate::ImageError;
use crate::cmd::Tool;

/// A new sparse file of `size` bytes at `img`, replacing what was there.
fn blank_file(img: &Path, size: u64) -> Result<fs_err::File, ImageError> {
    if img.exists() {
        fs_err::remove_file(img)?;
    }
    let f = fs_err::File::create(img)?;
    f.set_len(size)?;
    Ok(f)
}

/// Makes an ext4 image of `size` bytes at `img` holding `dir`'s contents (ownership, modes,
/// hardlinks, symlinks and xattrs kept), with label `label` and a fixed UUID and hash seed.
/// 4096-byte blocks always: a 1 KiB-block filesystem cannot be mounted on a 4Kn disk.
/// `timestamp` fixes the superblock times (`E2FSPROGS_FAKE_TIME`).
pub fn make_ext4(
    dir: &Path,
    img: &Path,
    size: u64,
    label: &str,
    uuid: &str,
    timestamp: u64,
) -> Result<(), ImageError> {
    blank_file(img, size)?;
    Tool::new("mke2fs")
        .env("E2FSPROGS_FAKE_TIME", timestamp.to_string())
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", label, "-U", uuid,
        ])
        .arg("-E")
        .arg(format!("hash_seed={uuid},root_owner=0:0"))
        .arg("-d")
        .arg(dir)
        .arg(img)
        .run()?;
    Ok(())
}

/// Makes an xfs image of `size` bytes at `img` holding `dir`'s contents, label `label`, UUID
/// `uuid`, with `sector_size`-byte sectors (4096 on a 4Kn disk, or the kernel refuses to
/// mount it). mkfs.xfs cannot populate from a directory without losing hardlinks (which
/// ostree relies on), so the image is loop-mounted and filled with `cp -a`: this needs root,
/// and fails saying so otherwise.
pub fn make_xfs(
    dir: &Path,
    img: &Path,
    size: u64,
    label: &str,
    uuid: &str,
    sector_size: u64,
    work: &Path,
) -> Result<(), ImageError> {
    let f = blank_file(img, size)?;
    // A file we just created is owned by our (filesystem) user id: 0 means root.
    let uid = std::os::unix::fs::MetadataExt::uid(&f.metadata()?);
    drop(f);
    if uid != 0 {
        return Err(ImageError::msg(
            "rootfs: xfs needs root (the image is filled through a loop mount); run nosa as \
             root, or set `rootfs: ext4` in image.yaml"
                .to_string(),
        ));
    }
    Tool::new("mkfs.xfs")
        .args(["-q", "-f", "-L", label])
        .arg("-m")
        .arg(format!("uuid={uuid}"))
        .arg("-s")
        .arg(format!("size={sector_size}"))
        .arg(img)
        .run()?;
    let mnt = work.join("xfs-mnt");
    fs_err::create_dir_all(&mnt)?;
    Tool::new("mount")
        .args(["-t", "xfs", "-o", "loop"])
        .arg(img)
        .arg(&mnt)
        .run()?;
    let mut src = dir.as_os_str().to_owned();
    src.push("/.");
    let copied = Tool::new("cp").arg("-a").arg(&src).arg(&mnt).run();
    let unmounted = Tool::new("umount").arg(&mnt).run();
    copied?;
    unmounted?;
    fs_err::remove_dir(&mnt)?;
    Ok(())
}

/// Makes a FAT image of `size` bytes at `img` with logical sectors of `sector_size` bytes
/// (FAT16 or FAT32 as mkfs.vfat chooses), label `label`, volume id `volume_id`.
pub fn make_vfat(
    img: &Path,
    size: u64,
    sector_size: u64,
    label: &str,
    volume_id: u32,
) -> Result<(), ImageError> {
    blank_file(img, size)?;
    Tool::new("mkfs.vfat")
        .args(["-S", &sector_size.to_string(), "-n", label])
        .args(["-i", &format!("{volume_id:08X}")])
        .arg(img)
        .run()?;
    Ok(())
}

/// Files put into a FAT image with mtools, creating parent directories once.
pub struct VfatWriter<'a> {
    img: &'a Path,
    dirs: BTreeSet<String>,
}

impl<'a> VfatWriter<'a> {
    /// A writer for the (already formatted) image `img`.
    pub fn new(img: &'a Path) -> VfatWriter<'a> {
        VfatWriter {
            img,
            dirs: BTreeSet::new(),
        }
    }

    fn mtool(&self, name: &str) -> Tool {
        Tool::new(name)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(self.img)
    }

    /// Copies the regular file `src` to `dest` (`EFI/BOOT/BOOTX64.EFI`), keeping its mtime.
    pub fn put(&mut self, src: &Path, dest: &str) -> Result<(), ImageError> {
        let dest = dest.trim_start_matches('/');
        let mut dir = String::new();
        let comps: Vec<&str> = dest.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(c);
            if self.dirs.insert(dir.clone()) {
                self.mtool("mmd").arg(format!("::/{dir}")).run()?;
            }
        }
        self.mtool("mcopy")
            .args(["-o", "-m"])
            .arg(src)
            .arg(format!("::/{dest}"))
            .run()?;
        Ok(())
    }
}
