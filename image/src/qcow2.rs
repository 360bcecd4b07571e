//! qcow2 conversion with `qemu-img convert`, checked with `qemu-img check`.

use std::path::Path;

use crate::ImageError;
use crate::cmd::Tool;

/// Converts the raw image `raw` to qcow2 at `out` (uncompressed, like nestos-assembler's
/// `qemu` artifact before `compress`), then runs `qemu-img check` on it.
pub fn raw_to_qcow2(raw: &Path, out: &Path) -> Result<(), ImageError> {
    Tool::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(out)
        .run()?;
    check_qcow2(out)
}

/// `qemu-img check` on a qcow2 file.
pub fn check_qcow2(img: &Path) -> Result<(), ImageError> {
    Tool::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(img)
        .run()?;
    Ok(())
}
