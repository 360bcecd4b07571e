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
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nosa_cache::Digest;
use nosa_cache::codec::{Reader, Writer};
use nosa_cache::stamp::{Stamp, epoch_ns};
use rayon::prelude::*;

/// Names the witness encoding; bump the digit when it changes.
const MAGIC: &[u8; 8] = b"nosanw02";

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
    /// Appends `other`'s observations.
    pub(crate) fn extend(&mut self, other: Trace) {
        self.seen.extend(other.seen);
    }

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

/// The observations of one invocation for its no-op witness, gathered over the builds it runs
/// (a staged build runs several, an OS build four) and from the caller, then sealed once with
/// [`crate::Engine::seal_witness`]. Each build adds what its decisions rested on when every
/// node of it was cached, and spoils the draft otherwise. The caller adds what it read
/// outside the engine (the build file, a config tree, records it compared); it vouches that
/// the graph, the selection and its own output are a function of those paths and of the
/// witness key alone. Clones share one draft.
#[derive(Clone, Debug, Default)]
pub struct WitnessDraft(Arc<Mutex<Draft>>);

#[derive(Debug, Default)]
struct Draft {
    trace: Trace,
    /// First bytes of the action keys the builds' hits came from: their shard directories.
    shards: Vec<u8>,
    spoiled: bool,
}

impl WitnessDraft {
    fn with<T>(&self, f: impl FnOnce(&mut Draft) -> T) -> T {
        f(&mut self.0.lock().expect("witness draft"))
    }

    /// `path` was read after its metadata `meta` was taken (`follow`: through symlinks).
    pub fn observe(&self, path: &Path, meta: &std::fs::Metadata, follow: bool) {
        self.with(|d| d.trace.stamp(path, meta, follow));
    }

    /// Stats `path` now and records its stamp, or that it is missing. Call before reading it
    /// or after: a change in between leaves a stamp newer than the invocation's start, which
    /// sealing refuses (the racy rule). Any other error spoils the draft.
    pub fn observe_now(&self, path: &Path, follow: bool) {
        self.with(|d| {
            if !d.trace.stat_now(path, follow, false) {
                d.spoiled = true;
            }
        });
    }

    /// Observes `root` and everything under it: each entry as it is and each symlink also
    /// through (into a directory: listed, each directory once). A file's content, mode or
    /// existence under `root` cannot change without a stamp changing. Directories named in
    /// `skip` (relative to `root`) are left out. A missing `root` is observed missing.
    pub fn observe_tree(&self, root: &Path, skip: &[&str]) {
        let mut seen_dirs = std::collections::HashSet::new();
        let mut todo = vec![root.to_path_buf()];
        let mut trace = Trace::default();
        let mut ok = true;
        while let Some(dir) = todo.pop() {
            let Ok(meta) = fs_err::metadata(&dir) else {
                ok &= trace.stat_now(&dir, true, false);
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            if !meta.is_dir() || !seen_dirs.insert((meta.dev(), meta.ino())) {
                trace.stamp(&dir, &meta, true);
                continue;
            }
            trace.stamp(&dir, &meta, true);
            let Ok(rd) = fs_err::read_dir(&dir) else {
                ok = false;
                continue;
            };
            for e in rd {
                let Ok(e) = e else {
                    ok = false;
                    break;
                };
                let path = e.path();
                if dir == root
                    && skip
                        .iter()
                        .any(|s| e.file_name().as_bytes() == s.as_bytes())
                {
                    continue;
                }
                match fs_err::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => todo.push(path),
                    Ok(m) => {
                        trace.stamp(&path, &m, false);
                        // A symlink is also observed through (a dangling one as missing),
                        // and one to a directory is listed through.
                        if m.file_type().is_symlink() {
                            match fs_err::metadata(&path) {
                                Ok(t) if t.is_dir() => todo.push(path),
                                Ok(t) => trace.stamp(&path, &t, true),
                                Err(_) => ok &= trace.stat_now(&path, true, false),
                            }
                        }
                    }
                    Err(_) => ok = false,
                }
            }
        }
        self.with(|d| {
            d.trace.extend(trace);
            d.spoiled |= !ok;
        });
    }

    /// Marks the invocation as not a no-op: sealing the draft writes nothing.
    pub fn spoil(&self) {
        self.with(|d| d.spoiled = true);
    }

    /// Adds a build's observations and the shards of its hits.
    pub(crate) fn absorb(&self, trace: Trace, shards: impl Iterator<Item = u8>) {
        self.with(|d| {
            d.trace.extend(trace);
            d.shards.extend(shards);
        });
    }

    /// The observations and shard bytes (sorted, unique), unless spoiled.
    pub(crate) fn take(&self) -> Option<(Trace, Vec<u8>)> {
        self.with(|d| {
            if d.spoiled {
                return None;
            }
            let mut shards = std::mem::take(&mut d.shards);
            shards.sort_unstable();
            shards.dedup();
            Some((std::mem::take(&mut d.trace), shards))
        })
    }
}

/// What a witness that holds says of the build it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The ids of the nodes it reported cached, in report order.
    pub ids: Vec<String>,
    /// A line it printed on stderr before its summary, to print again (`unchanged: ...`).
    pub note: Option<String>,
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
    note: Option<&str>,
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
    w.bool(note.is_some());
    w.str(note.unwrap_or_default());
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

/// What the witnessed build reported, if `file` is a witness for `key` and every path it
/// recorded still has its recorded stamp (stat'ed in parallel). `None` means: build normally.
pub(crate) fn check(file: &Path, key: &Digest) -> Option<Witnessed> {
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
    let has_note = r.bool()?;
    let note = r.str()?.to_string();
    if !r.is_empty() {
        return None;
    }
    let holds = entries.par_iter().with_min_len(256).all(|e| e.holds());
    if !holds && crate::exec::timings_on() {
        // Which observation broke the witness: the first way to tell why a no-op was not
        // answered from it.
        if let Some(e) = entries.iter().find(|e| !e.holds()) {
            eprintln!(
                "nosa-timing: witness broken by {}",
                Path::new(OsStr::from_bytes(e.path)).display()
            );
        }
    }
    holds.then_some(Witnessed {
        ids,
        note: has_note.then_some(note),
    })
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
            ids.iter().copied(),
            None
        ));
        let later = SystemTime::now() + std::time::Duration::from_secs(3);
        assert!(write(
            &witness,
            dir,
            &key,
            later,
            &t,
            ids.iter().copied(),
            Some("unchanged")
        ));
        let held = check(&witness, &key).unwrap();
        assert_eq!(held.ids, ids);
        assert_eq!(held.note.as_deref(), Some("unchanged"));
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

    #[test]
    fn a_tree_observation_sees_content_mode_and_entries_below_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("config");
        let elsewhere = tmp.path().join("elsewhere");
        fs_err::create_dir_all(root.join("overlay.d/a/etc")).unwrap();
        fs_err::create_dir_all(root.join(".git/objects")).unwrap();
        fs_err::create_dir_all(&elsewhere).unwrap();
        fs_err::write(root.join("overlay.d/a/etc/f"), "one").unwrap();
        fs_err::write(elsewhere.join("g"), "two").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("linked")).unwrap();
        // A symlink loop is listed once.
        std::os::unix::fs::symlink(&root, root.join("overlay.d/loop")).unwrap();
        let witness = tmp.path().join("w");
        let key = Digest::of(b"sel");
        let seal = || {
            let d = WitnessDraft::default();
            d.observe_tree(&root, &[".git"]);
            let (t, _) = d.take().expect("not spoiled");
            let later = SystemTime::now() + std::time::Duration::from_secs(3);
            assert!(write(
                &witness,
                tmp.path(),
                &key,
                later,
                &t,
                [].into_iter(),
                None
            ));
            assert!(check(&witness, &key).is_some());
            // Later changes get other timestamps than the coarse clock gave the stamps.
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        seal();
        fs_err::write(root.join("overlay.d/a/etc/f"), "One").unwrap();
        assert!(check(&witness, &key).is_none(), "content");
        seal();
        let f = root.join("overlay.d/a/etc/f");
        fs_err::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check(&witness, &key).is_none(), "mode");
        seal();
        fs_err::write(root.join("overlay.d/a/etc/new"), "").unwrap();
        assert!(check(&witness, &key).is_none(), "a new file");
        seal();
        fs_err::write(elsewhere.join("g"), "TWO").unwrap();
        assert!(
            check(&witness, &key).is_none(),
            "through a symlinked directory"
        );
        seal();
        fs_err::write(root.join(".git/objects/x"), "").unwrap();
        assert!(check(&witness, &key).is_some(), "a skipped directory");
    }
}
