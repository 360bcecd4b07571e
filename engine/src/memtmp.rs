//! Run directories in memory: where [`crate::RunContext::memory_scratch`] puts a node's
//! temporaries made of many small files, and how stale ones are found.
//!
//! The store's file system on these machines is ext4 without a journal. There every inode
//! allocation scans the group's recently freed inodes (ext4's `recently_deleted`), so a
//! build that creates and removes thousands of files pays for each new one in proportion to
//! what it removed in the last minutes: `ostree pull-local` of the example's commit into a
//! fresh sysroot takes ~0.75 s there and ~0.18 s on tmpfs. A directory on tmpfs avoids it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable that chooses the memory directory: a path, or `off` for none
/// (temporaries then stay under the run's scratch directory). Unset: `/dev/shm` when it is
/// a writable tmpfs.
pub const MEMORY_TMP_ENV: &str = "NOSA_MEMORY_TMP";

/// The share of the available memory a node's memory scratch may expect to fill; a larger
/// request is given a directory on disk instead.
const SHARE_OF_AVAILABLE: u64 = 4;

/// The memory directory for this process (`NOSA_MEMORY_TMP`, or `/dev/shm`), if any.
pub(crate) fn default_base() -> Option<&'static Path> {
    static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
    BASE.get_or_init(|| match std::env::var_os(MEMORY_TMP_ENV) {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => {
            let shm = Path::new("/dev/shm");
            (is_tmpfs(shm) && rustix::fs::access(shm, rustix::fs::Access::WRITE_OK).is_ok())
                .then(|| shm.to_path_buf())
        }
    })
    .as_deref()
}

fn is_tmpfs(p: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    rustix::fs::statfs(p).is_ok_and(|s| s.f_type == TMPFS_MAGIC)
}

/// The directory in memory that holds the run directories of the store at `store_root`
/// (one per store, so that clearing stale ones never touches another store's runs).
pub(crate) fn store_dir_in(base: &Path, store_root: &Path) -> PathBuf {
    let root = fs_err::canonicalize(store_root).unwrap_or_else(|_| store_root.to_path_buf());
    let id = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    base.join(format!("nosa-{}", &id[..16]))
}

/// Whether `bytes` may go to memory now, under `dir`: at most a quarter of `MemAvailable`,
/// and no more than half of what the file system at `dir` (or its nearest existing
/// ancestor) has free (a size-limited tmpfs,
/// such as a container's 64 MiB /dev/shm, would fail the run half way).
pub(crate) fn fits_in(dir: &Path, bytes: u64) -> bool {
    // The directory itself may not exist yet: its nearest existing ancestor's file system.
    let free = dir
        .ancestors()
        .find_map(|d| rustix::fs::statvfs(d).ok())
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    bytes <= free / 2 && fits(bytes)
}

/// Whether `bytes` may go to memory now: at most a quarter of `MemAvailable`.
pub(crate) fn fits(bytes: u64) -> bool {
    let Ok(info) = fs_err::read_to_string("/proc/meminfo") else {
        return false;
    };
    let available_kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    available_kib.is_some_and(|kib| bytes <= kib.saturating_mul(1024) / SHARE_OF_AVAILABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_per_store_and_a_bounded_share() {
        let base = Path::new("/dev/shm");
        let a = store_dir_in(base, Path::new("/nonexistent/a/store"));
        let b = store_dir_in(base, Path::new("/nonexistent/b/store"));
        assert_ne!(a, b);
        assert_eq!(a, store_dir_in(base, Path::new("/nonexistent/a/store")));
        assert!(a.starts_with(base));
        assert!(fits(1));
        assert!(!fits(u64::MAX / 2));
        let tmp = tempfile::tempdir().unwrap();
        assert!(fits_in(tmp.path(), 1));
        assert!(!fits_in(tmp.path(), u64::MAX / 2));
        // A directory still to be made is judged by its nearest existing ancestor.
        assert!(fits_in(&tmp.path().join("missing/run"), 1));
    }
}
