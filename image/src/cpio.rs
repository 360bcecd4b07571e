//! A writer of "newc" cpio archives (the `070701` format the kernel unpacks as an initramfs),
//! for the live artifacts: `rootfs.img` (one member, `root.squashfs`) and the stamp archive
//! appended to the live initramfs. Every header and every file's data start on a 4-byte
//! boundary; members keep the order they are added in (the live initramfs looks for
//! `root.squashfs` first); owner root, mtime as given, inode numbers counted from 1.

use std::io::{self, Read, Write};

/// A newc archive being written to `W`.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    mtime: u32,
}

/// The newc header's magic.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";

impl<W: Write> CpioWriter<W> {
    /// A writer whose members all get modification time `mtime` (seconds since 1970).
    pub fn new(out: W, mtime: u64) -> CpioWriter<W> {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            mtime: u32::try_from(mtime).unwrap_or(u32::MAX),
        }
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            size,
            0,
            0,
            0,
            0,
            u32::try_from(name.len() + 1).map_err(io::Error::other)?,
            0,
        ];
        let mut h = Vec::with_capacity(110 + name.len() + 4);
        h.extend_from_slice(NEWC_MAGIC);
        for f in fields {
            h.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        self.put(&h)?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// A directory `name` (no leading `/`), mode 0755.
    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.header(name, 0o040755, 2, 0)
    }

    /// A regular file `name` with mode `perm` and the `size` bytes read from `data`.
    pub fn file(&mut self, name: &str, perm: u32, size: u64, data: impl Read) -> io::Result<()> {
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::other(format!(
                "{name}: {size} bytes do not fit a newc cpio member (4 GiB at most)"
            ))
        })?;
        self.header(name, 0o100000 | (perm & 0o7777), 1, size32)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{name}: {copied} bytes read, {size} expected"
            )));
        }
        self.written += size;
        self.pad()
    }

    /// Writes the trailer and returns the output and the archive's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.header("TRAILER!!!", 0, 1, 0)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// One member read back by [`members`]: name, mode, data offset in the archive, size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The name, without the terminating NUL.
    pub name: String,
    /// `st_mode` (type and permissions).
    pub mode: u32,
    /// Where the data starts in the archive.
    pub offset: u64,
    /// The data's length.
    pub size: u64,
}

/// The members of the uncompressed newc archive `data` up to its trailer, for checks and tests.
pub fn members(data: &[u8]) -> Result<Vec<Member>, String> {
    let field = |h: &[u8], i: usize| -> Result<u64, String> {
        let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
        u64::from_str_radix(s, 16).map_err(|e| format!("header field {i}: {e}"))
    };
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let h = data
            .get(pos..pos + 110)
            .ok_or_else(|| format!("truncated header at {pos}"))?;
        if &h[..6] != NEWC_MAGIC {
            return Err(format!("no newc magic at {pos}"));
        }
        let mode = field(h, 1)? as u32;
        let size = field(h, 6)? as usize;
        let namesize = field(h, 11)? as usize;
        let name_bytes = data
            .get(pos + 110..pos + 110 + namesize)
            .ok_or_else(|| format!("truncated name at {pos}"))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let start = align(pos + 110 + namesize);
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        if start + size > data.len() {
            return Err(format!("{name}: data runs past the end"));
        }
        out.push(Member {
            name,
            mode,
            offset: start as u64,
            size: size as u64,
        });
        pos = align(start + size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_aligned_in_order_and_read_back() {
        let mut w = CpioWriter::new(Vec::new(), 1_700_000_000);
        w.file("root.squashfs", 0o644, 5, &b"hello"[..]).unwrap();
        w.dir("etc").unwrap();
        w.file("etc/a", 0o600, 0, io::empty()).unwrap();
        let (bytes, len) = w.finish().unwrap();
        assert_eq!(len as usize, bytes.len());
        assert_eq!(bytes.len() % 4, 0);
        // The first member's data follows its 110-byte header and 14-byte name, padded to 4.
        assert_eq!(&bytes[124..129], b"hello");
        let m = members(&bytes).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["root.squashfs", "etc", "etc/a"]);
        assert_eq!(m[0].offset, 124);
        assert_eq!(m[1].mode, 0o040755);
        assert_eq!(m[2].mode, 0o100600);
        assert!(m.iter().all(|m| m.offset % 4 == 0));
    }

    #[test]
    fn the_system_cpio_reads_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = CpioWriter::new(Vec::new(), 0);
        w.dir("etc").unwrap();
        w.file("etc/stamp", 0o644, 3, &b"abc"[..]).unwrap();
        let (bytes, _) = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-id", "--quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (Debian package cpio)");
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(fs_err::read(dir.path().join("etc/stamp")).unwrap(), b"abc");
    }

    #[test]
    fn a_short_reader_is_an_error() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        let e = w.file("x", 0o644, 10, &b"abc"[..]).unwrap_err();
        assert!(e.to_string().contains("3 bytes read, 10 expected"), "{e}");
    }
}
