//! File stamps: the (type and permissions, size, mtime, ctime, inode, device) of a path, and the
//! one racy-window rule that says when a stamp cannot vouch for what was read. The stat cache and
//! the engine's no-op witness both use them.

use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::{Reader, Writer};

/// A path modified this close (ns) to the moment it was observed, or later, cannot be trusted
/// from its stamp: a write in the same clock tick as the observation could leave the stamp
/// unchanged ("racily clean", as git calls it).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// What is compared. ctime cannot be set from user space, and every write, rename into place or
/// chmod moves it, so `touch -d` tricks do not fool a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// File type and permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device.
    pub dev: u64,
}

impl Stamp {
    /// The stamp of `m`.
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            mode: m.mode(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    /// Whether the path was modified within [`RACY_WINDOW_NS`] before `at_ns`, or after it: then
    /// an unchanged stamp later does not prove unchanged content read at `at_ns`.
    pub fn racy_at(&self, at_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) >= at_ns - RACY_WINDOW_NS
    }

    /// Appends the stamp to `w` (six integers).
    pub fn encode(&self, w: &mut Writer) {
        for v in [
            u64::from(self.mode),
            self.size,
            self.mtime_ns as u64,
            self.ctime_ns as u64,
            self.ino,
            self.dev,
        ] {
            w.u64(v);
        }
    }

    /// Reads a stamp written by [`Stamp::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Option<Stamp> {
        Some(Stamp {
            mode: u32::try_from(r.u64()?).ok()?,
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            ino: r.u64()?,
            dev: r.u64()?,
        })
    }
}

/// `t` in ns since the epoch (0 before it).
pub fn epoch_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racy_window_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs_err::write(&f, "x").unwrap();
        let s = Stamp::of(&fs_err::metadata(&f).unwrap());
        let now = epoch_ns(SystemTime::now());
        assert!(s.racy_at(now), "just written");
        assert!(!s.racy_at(now + 2 * RACY_WINDOW_NS), "old enough");
        let mut w = Writer::new(b"testst01", 64);
        s.encode(&mut w);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, b"testst01").unwrap();
        assert_eq!(Stamp::decode(&mut r), Some(s));
        assert!(r.is_empty());
    }
}
