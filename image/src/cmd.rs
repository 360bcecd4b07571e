//! Running the external tools (ostree, mke2fs, mkfs.vfat, mtools, grub-mkimage, qemu-img):
//! output captured (the library never prints), failures carry the command line and stderr.

use std::ffi::OsStr;
use std::process::Command;

use crate::ImageError;

/// The Debian package that ships `tool`, for error messages.
pub(crate) fn package_of(tool: &str) -> &'static str {
    match tool {
        "ostree" => "ostree",
        "mke2fs" => "e2fsprogs",
        "mkfs.vfat" => "dosfstools",
        "mcopy" | "mmd" => "mtools",
        "grub-mkimage" => "grub-common",
        "qemu-img" => "qemu-utils",
        "mkfs.xfs" => "xfsprogs",
        "mount" | "umount" => "mount",
        "cp" => "coreutils",
        "mksquashfs" => "squashfs-tools",
        "xorriso" => "xorriso",
        _ => "?",
    }
}

/// A command being built.
pub(crate) struct Tool {
    cmd: Command,
    name: String,
}

impl Tool {
    pub(crate) fn new(name: &str) -> Tool {
        let mut cmd = Command::new(name);
        cmd.env("LC_ALL", "C");
        Tool {
            cmd,
            name: name.to_string(),
        }
    }

    pub(crate) fn arg(mut self, a: impl AsRef<OsStr>) -> Tool {
        self.cmd.arg(a);
        self
    }

    pub(crate) fn args<I, S>(mut self, a: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(a);
        self
    }

    pub(crate) fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Tool {
        self.cmd.env(k, v);
        self
    }

    /// Runs to completion; returns stdout.
    pub(crate) fn run(mut self) -> Result<String, ImageError> {
        let line = format!("{:?}", self.cmd);
        let t0 = std::time::Instant::now();
        let out = self.cmd.output();
        // Each tool's time under NOSA_TIMINGS: the engine's cheap profile, left in on purpose.
        let args: Vec<_> = self.cmd.get_args().take(3).collect();
        nosa_engine::timing(&format!("{} {args:?}", self.name), t0);
        let out = out.map_err(|e| ImageError::ToolMissing {
            tool: self.name.clone(),
            package: package_of(&self.name).to_string(),
            source: e,
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(ImageError::ToolFailed {
                command: line,
                status: out.status.to_string(),
                stderr: tail.trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
