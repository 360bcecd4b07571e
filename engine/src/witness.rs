//! The no-op witness: a compact record, written at the end of a build in which every node was
//! `cached`, of every file-system fact that build's decisions rested on (the stamps of the
//! build file, of every input file and every directory listed to expand inputs, of every
//! materialized output, of the action-record shards and of the state file). A later build of
//! the same selection first re-stats those paths; when every stamp is unchanged, the build
//! would decide exactly as the witnessed one did, so it reports every node cached without
//! computing a key. Anything else falls back to the normal build. See `docs/engine.md`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nosa_cache::Digest;
use nosa_cache::codec::{Reader, Writer};
use nosa_cache::stamp::{Stamp, epoch_ns};
use rayon::prelude::*;

/// Names the witness encoding; bump the digit when it changes.
const MAGIC: &[u8; 8] = b"nosanw01";

/// One observed path.
#[derive(Debug)]
struct Seen {
    path: PathBuf,
    /// Stat through symlinks (materialized outputs, read through them) or not (inputs, which
    /// hash a symlink's target string, and listed directories).
    follow: bool,
    /// `None`: the path did not exist (a glob's base directory), and must still not.
    stamp: Option<Stamp>,
    /// Written by nosa itself during the witnessed build (the state file): exempt from the
    /// racy rule, because it is only compared for identity (it is replaced by rename, never
    /// rewritten in place).
    own: bool,
}

/// The observations of one build, collected while it runs.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    seen: Vec<Seen>,
}

impl Trace {
    /// `path` was observed with metadata `meta` (`follow`: through symlinks).
    pub(crate) fn stamp(&mut self, path: &Path, meta: &std::fs::Metadata, follow: bool) {
        self.seen.push(Seen {
            path: path.to_path_buf(),
            follow,
            stamp: Some(Stamp::of(meta)),
            own: false,
        });
    }

    /// `path` was found missing.
    pub(crate) fn absent(&mut self, path: &Path, follow: bool) {
        self.seen.push(Seen {
            path: path.to_path_buf(),
            follow,
            stamp: None,
            own: false,
        });
    }

    /// Stats `path` now and records it (missing: recorded as absent).
    pub(crate) fn stat_now(&mut self, path: &Path, follow: bool, own: bool) -> bool {
        let m = if follow {
            fs_err::metadata(path)
        } else {
            fs_err::symlink_metadata(path)
        };
        match m {
            Ok(m) => {
                self.seen.push(Seen {
                    path: path.to_path_buf(),
                    follow,
                    stamp: Some(Stamp::of(&m)),
                    own,
                });
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.absent(path, follow);
                true
            }
            Err(_) => false,
        }
    }
}

/// Writes the witness for selection `key`: `trace` observed since `since`, the build reported
/// `ids` (in report order). Refuses (returns `false`, writing nothing) when a path other than
/// nosa's own was modified within the racy window of `since` or later: its stamp cannot vouch
/// for what was read.
pub(crate) fn write<'a>(
    file: &Path,
    tmp_dir: &Path,
    key: &Digest,
    since: SystemTime,
    trace: &Trace,
    ids: impl ExactSizeIterator<Item = &'a str>,
) -> bool {
    let at = epoch_ns(since);
    let racy = trace
        .seen
        .iter()
        .any(|s| !s.own && s.stamp.is_some_and(|st| st.racy_at(at)));
    if racy {
        return false;
    }
    let mut w = Writer::new(MAGIC, trace.seen.len() * 96 + ids.len() * 16);
    w.digest(key);
    w.u64(trace.seen.len() as u64);
    for s in &trace.seen {
        w.bytes(s.path.as_os_str().as_bytes());
        w.bool(s.follow);
        w.bool(s.stamp.is_some());
        if let Some(st) = s.stamp {
            st.encode(&mut w);
        }
    }
    w.u64(ids.len() as u64);
    for id in ids {
        w.str(id);
    }
    nosa_cache::atomic::write_atomic(tmp_dir, file, &w.finish()).is_ok()
}

/// One recorded path, borrowed from the witness file.
struct Entry<'a> {
    path: &'a [u8],
    follow: bool,
    stamp: Option<Stamp>,
}

impl Entry<'_> {
    fn holds(&self) -> bool {
        let p = Path::new(OsStr::from_bytes(self.path));
        let m = if self.follow {
            fs_err::metadata(p)
        } else {
            fs_err::symlink_metadata(p)
        };
        match (m, self.stamp) {
            (Ok(m), Some(st)) => Stamp::of(&m) == st,
            (Err(e), None) => e.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// The node ids of the witnessed build, in report order, if `file` is a witness for `key` and
/// every path it recorded still has its recorded stamp (stat'ed in parallel). `None` means:
/// build normally.
pub(crate) fn check(file: &Path, key: &Digest) -> Option<Vec<String>> {
    let bytes = fs_err::read(file).ok()?;
    let mut r = Reader::open(&bytes, MAGIC)?;
    if r.digest()? != *key {
        return None;
    }
    let n = r.count()?;
    let mut entries = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let path = r.bytes()?;
        let follow = r.bool()?;
        let stamp = if r.bool()? {
            Some(Stamp::decode(&mut r)?)
        } else {
            None
        };
        entries.push(Entry {
            path,
            follow,
            stamp,
        });
    }
    let n = r.count()?;
    let mut ids = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        ids.push(r.str()?.to_string());
    }
    if !r.is_empty() {
        return None;
    }
    entries
        .par_iter()
        .with_min_len(256)
        .all(|e| e.holds())
        .then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_holds_until_a_stamp_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let f = dir.join("f");
        fs_err::write(&f, "one").unwrap();
        let witness = dir.join("w");
        let key = Digest::of(b"sel");
        let mut t = Trace::default();
        assert!(t.stat_now(&f, false, false));
        assert!(t.stat_now(&dir.join("missing"), false, false));
        let ids = ["step:a", "step:b"];
        // Just written: racy, refused.
        assert!(!write(
            &witness,
            dir,
            &key,
            SystemTime::now(),
            &t,
            ids.iter().copied()
        ));
        let later = SystemTime::now() + std::time::Duration::from_secs(3);
        assert!(write(&witness, dir, &key, later, &t, ids.iter().copied()));
        assert_eq!(check(&witness, &key).unwrap(), ids);
        assert!(
            check(&witness, &Digest::of(b"other")).is_none(),
            "other key"
        );
        fs_err::write(dir.join("missing"), "").unwrap();
        assert!(check(&witness, &key).is_none(), "a missing path appeared");
        fs_err::remove_file(dir.join("missing")).unwrap();
        assert!(check(&witness, &key).is_some());
        fs_err::write(&f, "three").unwrap();
        assert!(check(&witness, &key).is_none(), "a stamp changed");
    }
}
