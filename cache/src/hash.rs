//! File hashing (mmap and all cores for large files) and the stat cache that lets a no-op build
//! skip rehashing files whose size, mtime, ctime and inode did not change.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic::write_atomic;
use crate::{Digest, Result};

/// Files at least this large are hashed with memory mapping on all cores.
const PARALLEL_THRESHOLD: u64 = 4 << 20;

/// blake3 of a file's content.
pub fn hash_file(path: &Path) -> Result<Digest> {
    let meta = fs_err::metadata(path)?;
    let mut h = blake3::Hasher::new();
    if meta.len() >= PARALLEL_THRESHOLD {
        h.update_mmap_rayon(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    } else {
        let mut f = fs_err::File::open(path)?;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().into())
}

/// What the stat cache remembers about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// Files modified this recently (ns) are not remembered: a write in the same clock tick as our
/// stat could leave the stamp unchanged ("racily clean", as git calls it).
const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Maps a path to the digest of its content, trusted while (size, mtime, ctime, inode, device)
/// are unchanged. ctime cannot be set from user space, so `touch -d` tricks do not fool it.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<PathBuf, (Stamp, Digest)>,
    dirty: bool,
}

const MAGIC: &[u8; 8] = b"nosasc01";

impl StatCache {
    /// Loads the cache from `path`; a missing or unreadable file gives an empty cache.
    pub fn load(path: &Path) -> StatCache {
        let Ok(bytes) = fs_err::read(path) else {
            return StatCache::default();
        };
        Self::decode(&bytes).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<StatCache> {
        let mut r = bytes.strip_prefix(MAGIC.as_slice())?;
        let mut entries = HashMap::new();
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if r.len() < n {
                return None;
            }
            let (a, b) = r.split_at(n);
            *r = b;
            Some(a)
        }
        fn u64le(r: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(r, 8)?.try_into().ok()?))
        }
        while !r.is_empty() {
            let len = usize::try_from(u64le(&mut r)?).ok()?;
            let p = std::str::from_utf8(take(&mut r, len)?).ok()?;
            let stamp = Stamp {
                size: u64le(&mut r)?,
                mtime_ns: u64le(&mut r)? as i64,
                ctime_ns: u64le(&mut r)? as i64,
                ino: u64le(&mut r)?,
                dev: u64le(&mut r)?,
            };
            let d = Digest(take(&mut r, 32)?.try_into().ok()?);
            entries.insert(PathBuf::from(p), (stamp, d));
        }
        Some(StatCache {
            entries,
            dirty: false,
        })
    }

    /// Writes the cache atomically if anything changed.
    pub fn save(&mut self, path: &Path, tmp_dir: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut out = Vec::with_capacity(self.entries.len() * 100);
        out.extend_from_slice(MAGIC);
        for (p, (s, d)) in &self.entries {
            let Some(ps) = p.to_str() else { continue };
            out.extend_from_slice(&(ps.len() as u64).to_le_bytes());
            out.extend_from_slice(ps.as_bytes());
            for v in [
                s.size,
                s.mtime_ns as u64,
                s.ctime_ns as u64,
                s.ino,
                s.dev,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&d.0);
        }
        write_atomic(tmp_dir, path, &out)?;
        self.dirty = false;
        Ok(())
    }

    /// The digest remembered for `path` if its stamp still matches `meta`.
    pub fn lookup(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Digest> {
        let (stamp, d) = self.entries.get(path)?;
        (*stamp == Stamp::of(meta)).then_some(*d)
    }

    /// Remembers `d` for `path` unless the file was modified too recently to trust its stamp.
    pub fn insert(&mut self, path: PathBuf, meta: &std::fs::Metadata, d: Digest) {
        let stamp = Stamp::of(meta);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(i64::MAX);
        if now - stamp.mtime_ns.max(stamp.ctime_ns) < RACY_WINDOW_NS {
            if self.entries.remove(&path).is_some() {
                self.dirty = true;
            }
            return;
        }
        if self.entries.get(&path) != Some(&(stamp, d)) {
            self.entries.insert(path, (stamp, d));
            self.dirty = true;
        }
    }

    /// Digest of `path`, from the cache when its stamp matches, else hashed (and remembered).
    pub fn digest(&mut self, path: &Path) -> Result<Digest> {
        let meta = fs_err::metadata(path)?;
        if let Some(d) = self.lookup(path, &meta) {
            return Ok(d);
        }
        let d = hash_file(path)?;
        self.insert(path.to_path_buf(), &meta, d);
        Ok(d)
    }

    /// Drops entries for which `keep` returns false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|p, _| keep(p));
        self.dirty |= self.entries.len() != before;
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_racy_files_are_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("a");
        fs_err::write(&f, "one").unwrap();
        let mut sc = StatCache::default();
        let d = sc.digest(&f).unwrap();
        assert_eq!(d, Digest::of(b"one"));
        // Just written: too recent to remember.
        assert!(sc.is_empty());
        // An old stamp is remembered and survives a save/load.
        let meta = fs_err::metadata(&f).unwrap();
        sc.entries
            .insert(f.clone(), (Stamp { mtime_ns: 1, ctime_ns: 1, ..Stamp::of(&meta) }, d));
        sc.dirty = true;
        let db = tmp.path().join("sc");
        sc.save(&db, tmp.path()).unwrap();
        let loaded = StatCache::load(&db);
        assert_eq!(loaded.len(), 1);
        // The real file's stamp differs from the faked one: it is rehashed, not trusted.
        assert_eq!(loaded.lookup(&f, &meta), None);
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("big");
        let data: Vec<u8> = (0..(PARALLEL_THRESHOLD as usize + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        fs_err::write(&f, &data).unwrap();
        assert_eq!(hash_file(&f).unwrap(), Digest::of(&data));
    }
}
