//! Crash-safe publication: write to a temporary name, fsync, rename into place, fsync the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name inside `dir` (process id + counter + nanos).
pub fn temp_name(dir: &Path, hint: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(
        ".tmp-{}-{}-{}-{}",
        std::process::id(),
        n,
        nanos,
        hint
    ))
}

/// Writes `bytes` to `dest` atomically: readers see the old file or the complete new one, never
/// a prefix, even if the process is killed. `tmp_dir` must be on the same filesystem as `dest`.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(tmp_dir, "w");
    let mut f = fs_err::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    publish(&tmp, dest)
}

/// Renames a complete, fsynced `tmp` onto `dest` and fsyncs `dest`'s directory.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    fs_err::rename(tmp, dest)?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory so that a rename into it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = fs_err::File::open(dir)?;
    f.sync_all()?;
    Ok(())
}
