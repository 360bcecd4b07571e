//! File hashing (mmap and all cores for large files) and the stat cache that lets a no-op build
//! skip rehashing files whose size, mtime, ctime and inode did not change.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use crate::atomic::write_atomic;
use crate::codec::{Reader, Writer};
use crate::stamp::{Stamp, epoch_ns};
use crate::{Digest, Result};

/// SHA-256 (lowercase hex) and size of a file's content: the name REAPI and HTTP caches and
/// builds/ give it.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::Digest as _;
    let f = fs_err::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut h)?;
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, n))
}

/// Files at least this large are hashed with memory mapping on all cores.
const PARALLEL_THRESHOLD: u64 = 4 << 20;

/// blake3 of a file's content. A large sparse file (a filesystem image: 2 GiB of which some
/// tens of MiB are data) is read by its data extents and its holes are hashed as zeros from
/// memory: mapping it would fill the page cache with gigabytes of zero pages, which cost ~2 s
/// here where hashing the same zeros from memory costs ~0.3 s. The digest is the same either way.
pub fn hash_file(path: &Path) -> Result<Digest> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::metadata(path)?;
    let mut h = blake3::Hasher::new();
    if meta.len() >= PARALLEL_THRESHOLD && meta.blocks() * 512 < meta.len() {
        hash_sparse(path, meta.len(), &mut h)?;
    } else if meta.len() >= PARALLEL_THRESHOLD {
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

/// The data extents of the first `len` bytes of `f` (`SEEK_DATA`/`SEEK_HOLE`), in order; what
/// lies between them reads as zeros. A file system without hole support reports one extent.
pub fn data_extents(f: &std::fs::File, len: u64) -> std::io::Result<Vec<std::ops::Range<u64>>> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let data = match seek(f, SeekFrom::Data(pos)) {
            Ok(d) if d < len => d,
            Ok(_) | Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let end = seek(f, SeekFrom::Hole(data))?.min(len);
        out.push(data..end);
        pos = end;
    }
    Ok(out)
}

/// Feeds `len` bytes of `path` to `h`: its data extents as read, the holes between them as
/// zeros. A file that grows or shrinks meanwhile is an error, not a wrong digest.
fn hash_sparse(path: &Path, len: u64, h: &mut blake3::Hasher) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 8 << 20;
    let f = fs_err::File::open(path)?;
    let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    // Untouched zeroed memory: reading it maps the kernel's zero page, nothing is allocated.
    let zeros = vec![0u8; CHUNK as usize];
    let mut buf = vec![0u8; CHUNK as usize];
    let feed_zeros = |h: &mut blake3::Hasher, mut n: u64| {
        while n > 0 {
            let k = n.min(CHUNK);
            h.update_rayon(&zeros[..k as usize]);
            n -= k;
        }
    };
    let mut pos = 0;
    for extent in data_extents(f.file(), len).map_err(err)? {
        feed_zeros(h, extent.start - pos);
        let mut at = extent.start;
        while at < extent.end {
            let n = (extent.end - at).min(CHUNK) as usize;
            f.file().read_exact_at(&mut buf[..n], at).map_err(err)?;
            h.update_rayon(&buf[..n]);
            at += n as u64;
        }
        pos = extent.end;
    }
    feed_zeros(h, len - pos);
    if f.metadata()?.len() != len {
        return Err(err(std::io::Error::other(
            "its size changed while it was hashed",
        ))
        .into());
    }
    Ok(())
}

/// FxHash (rustc's hasher): a few cycles per word. Keys are local paths, so hash flooding is
/// not a concern, and SipHash over 30,000 paths per no-op build is.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut last = [0u8; 8];
        let rem = chunks.remainder();
        last[..rem.len()].copy_from_slice(rem);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(last) ^ rem.len() as u64).wrapping_mul(K);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s, for `HashMap::with_hasher`.
pub type FxBuildHasher = std::hash::BuildHasherDefault<FxHasher>;
type FxBuild = FxBuildHasher;

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// Maps a path to the digest of its content, trusted while its [`Stamp`] is unchanged; a file
/// whose stamp is racy when it is hashed is not remembered.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: HashMap<Box<[u8]>, (Stamp, Digest), FxBuild>,
    dirty: bool,
}

/// Format of the stat cache file ([`crate::codec`], checksummed: a damaged file is dropped
/// whole, so a wrong digest can never be trusted from it).
const MAGIC: &[u8; 8] = b"nosasc03";

impl StatCache {
    /// Loads the cache from `path`; a missing, damaged or older-format file gives an empty
    /// cache (every file is then hashed once).
    pub fn load(path: &Path) -> StatCache {
        let Ok(bytes) = fs_err::read(path) else {
            return StatCache::default();
        };
        Self::decode(&bytes).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<StatCache> {
        let mut r = Reader::open(bytes, MAGIC)?;
        let n = r.count()?;
        let mut entries = HashMap::with_capacity_and_hasher(n.min(bytes.len()), FxBuild::default());
        for _ in 0..n {
            let p = r.bytes()?;
            let stamp = Stamp::decode(&mut r)?;
            let d = r.digest()?;
            entries.insert(p.into(), (stamp, d));
        }
        r.is_empty().then_some(StatCache {
            entries,
            dirty: false,
        })
    }

    /// Writes the cache atomically if anything changed.
    pub fn save(&mut self, path: &Path, tmp_dir: &Path) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut w = Writer::new(MAGIC, self.entries.len() * 100);
        w.u64(self.entries.len() as u64);
        for (p, (s, d)) in &self.entries {
            w.bytes(p);
            s.encode(&mut w);
            w.digest(d);
        }
        write_atomic(tmp_dir, path, &w.finish())?;
        self.dirty = false;
        Ok(())
    }

    /// The digest remembered for `path` if its stamp still matches `meta`.
    pub fn lookup(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Digest> {
        let (stamp, d) = self.entries.get(key(path))?;
        (*stamp == Stamp::of(meta)).then_some(*d)
    }

    /// Remembers `d` for `path` unless the file was modified too recently to trust its stamp.
    pub fn insert(&mut self, path: &Path, meta: &std::fs::Metadata, d: Digest) {
        let stamp = Stamp::of(meta);
        if stamp.racy_at(epoch_ns(SystemTime::now())) {
            if self.entries.remove(key(path)).is_some() {
                self.dirty = true;
            }
            return;
        }
        if self.entries.get(key(path)) != Some(&(stamp, d)) {
            self.entries.insert(key(path).into(), (stamp, d));
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
        self.insert(path, &meta, d);
        Ok(d)
    }

    /// Drops entries for which `keep` returns false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let before = self.entries.len();
        self.entries
            .retain(|p, _| keep(Path::new(std::ffi::OsStr::from_bytes(p))));
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
    fn a_sparse_file_hashes_as_its_content() {
        use std::os::unix::fs::FileExt;
        let tmp = tempfile::tempdir().unwrap();
        // Holes at the start, between extents and at the end; data not aligned to chunks.
        let len: u64 = 40 << 20;
        let p = tmp.path().join("sparse.img");
        let f = fs_err::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        let mut content = vec![0u8; len as usize];
        for (at, n) in [
            (9u64 << 20, 5000usize),
            ((21 << 20) + 17, 3 << 20),
            (len - 8192, 100),
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
            f.file().write_all_at(&data, at).unwrap();
            content[at as usize..at as usize + n].copy_from_slice(&data);
        }
        f.sync_all().unwrap();
        drop(f);
        use std::os::unix::fs::MetadataExt;
        let m = fs_err::metadata(&p).unwrap();
        assert!(m.blocks() * 512 < m.len(), "the file system made it sparse");
        assert_eq!(hash_file(&p).unwrap(), Digest::from(blake3::hash(&content)));
        // All hole, and a dense file of the same content, hash the same as their bytes.
        let q = tmp.path().join("holes.img");
        fs_err::File::create(&q).unwrap().set_len(len).unwrap();
        assert_eq!(
            hash_file(&q).unwrap(),
            Digest::from(blake3::hash(&vec![0u8; len as usize]))
        );
        let d = tmp.path().join("dense.img");
        fs_err::write(&d, &content).unwrap();
        assert_eq!(hash_file(&d).unwrap(), hash_file(&p).unwrap());
    }

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
        sc.entries.insert(
            key(&f).into(),
            (
                Stamp {
                    mtime_ns: 1,
                    ctime_ns: 1,
                    ..Stamp::of(&meta)
                },
                d,
            ),
        );
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
