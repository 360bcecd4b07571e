//! What a traced step saw of the host's file system, as digests recomputed on the next check:
//! a path lookup (each component passed, symlinks followed, a missing one included) and a
//! directory listing. The host's files are judged by their stamp (inode, size, mode, mtime,
//! ctime), not their content: a package upgrade or an edit changes the stamp, and hashing the
//! hundreds of libraries and modules an interpreter opens on every check would cost more than
//! most steps.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nosa_cache::Digest;
use nosa_cache::stamp::Stamp;

/// The top-level directories a traced step's sandbox mounts over the host's: its own `/dev`
/// and `/proc`, and empty `/sys` and `/tmp`.
pub const STEP_PRIVATE: [&str; 4] = ["dev", "proc", "sys", "tmp"];

/// Symlinks followed in one lookup before it counts as a loop (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Where a host lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// At an existing path, or a missing one.
    Path(String),
    /// Under one of the sandbox's own mounts ([`STEP_PRIVATE`]), path without the leading
    /// `/`: not the host's.
    Sandbox(String),
    /// Through a non-directory or a symlink loop.
    Invalid,
}

/// The digest of looking up absolute `path` on the host, and where it ended. `not_after_ns`:
/// a file or directory changed at or after this time (within the stamp's racy window) makes
/// the digest one that no later lookup gives, so that the next check runs the step again.
pub fn lookup(path: &str, not_after_ns: i64) -> (Digest, HostEnd) {
    let mut h = blake3::Hasher::new();
    h.update(b"nosa-host-lookup-v1\0");
    let end = resolve(path, not_after_ns, &mut h);
    (h.finalize().into(), end)
}

/// The digest of listing host directory `path`: the lookup, then each entry's name and kind.
pub fn listing(path: &str, not_after_ns: i64) -> (Digest, HostEnd) {
    let mut h = blake3::Hasher::new();
    h.update(b"nosa-host-listing-v1\0");
    let end = resolve(path, not_after_ns, &mut h);
    if let HostEnd::Path(p) = &end
        && let Ok(rd) = std::fs::read_dir(p)
    {
        // A directory's times change with its entries.
        if std::fs::metadata(p).is_ok_and(|m| Stamp::of(&m).racy_at(not_after_ns)) {
            racy(&mut h, not_after_ns);
        }
        let mut names: Vec<(Vec<u8>, u8)> = rd
            .filter_map(Result::ok)
            .map(|e| {
                use std::os::unix::ffi::OsStrExt;
                let kind = match e.file_type() {
                    Ok(t) if t.is_dir() => b'd',
                    Ok(t) if t.is_symlink() => b'l',
                    Ok(t) if t.is_file() => b'f',
                    _ => b'o',
                };
                (e.file_name().as_bytes().to_vec(), kind)
            })
            .collect();
        names.sort();
        h.update(&(names.len() as u64).to_le_bytes());
        for (n, k) in names {
            h.update(&[k]);
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(&n);
        }
    } else {
        h.update(b"not a readable directory");
    }
    (h.finalize().into(), end)
}

/// Marks a digest as one no later lookup gives: the path changed too close to the run for its
/// stamp to prove anything afterwards.
fn racy(h: &mut blake3::Hasher, not_after_ns: i64) {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.update(b"racy\0");
    h.update(&not_after_ns.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    h.update(&n.to_le_bytes());
    h.update(&nosa_cache::stamp::epoch_ns(std::time::SystemTime::now()).to_le_bytes());
}

fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

fn resolve(path: &str, not_after_ns: i64, h: &mut blake3::Hasher) -> HostEnd {
    let mut todo: Vec<String> = components(path).rev().map(str::to_string).collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            at.pop();
            h.update(b"..\0");
            continue;
        }
        if at.is_empty() && STEP_PRIVATE.contains(&c.as_str()) {
            let mut rest = vec![c];
            rest.extend(todo.into_iter().rev());
            let p = rest.join("/");
            h.update(b"sandbox\0");
            h.update(p.as_bytes());
            return HostEnd::Sandbox(p);
        }
        at.push(c);
        let here = format!("/{}", at.join("/"));
        let m = match std::fs::symlink_metadata(&here) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                h.update(b"missing\0");
                h.update(here.as_bytes());
                return HostEnd::Path(here);
            }
            Err(e) => {
                h.update(b"error\0");
                h.update(here.as_bytes());
                h.update(e.to_string().as_bytes());
                return HostEnd::Path(here);
            }
        };
        let stamp = Stamp::of(&m);
        let ft = m.file_type();
        if !ft.is_dir() && stamp.racy_at(not_after_ns) {
            racy(h, not_after_ns);
        }
        if ft.is_dir() {
            h.update(b"d");
            h.update(&m.mode().to_le_bytes());
        } else if ft.is_symlink() {
            links += 1;
            let target = match std::fs::read_link(&here) {
                Ok(t) => t.to_string_lossy().into_owned(),
                Err(_) => String::new(),
            };
            h.update(b"l");
            h.update(&(target.len() as u64).to_le_bytes());
            h.update(target.as_bytes());
            if links > MAX_LINKS {
                h.update(b"loop");
                return HostEnd::Invalid;
            }
            at.pop();
            if target.starts_with('/') {
                at.clear();
            }
            todo.extend(components(&target).rev().map(str::to_string));
        } else {
            h.update(if ft.is_file() { b"f" } else { b"o" });
            h.update(&stamp.mode.to_le_bytes());
            h.update(&stamp.size.to_le_bytes());
            h.update(&stamp.ino.to_le_bytes());
            h.update(&stamp.dev.to_le_bytes());
            h.update(&stamp.mtime_ns.to_le_bytes());
            h.update(&stamp.ctime_ns.to_le_bytes());
            if ft.is_block_device() || ft.is_char_device() {
                h.update(&m.rdev().to_le_bytes());
            }
            if !todo.is_empty() {
                h.update(b"notdir");
                return HostEnd::Invalid;
            }
        }
    }
    HostEnd::Path(format!("/{}", at.join("/")))
}

/// The digest of a fact of the build host at `path` (under `/proc`, see
/// [`super::strace::HostRead::Fact`]), by content: a directory by its entries' names, a file
/// by its bytes (read whole: procfs files report no size), a link by its target; a path that
/// cannot be read digests as the error. Files whose content changes with every read
/// (`/proc/uptime`) give a digest that no later check matches.
pub fn fact(path: &str) -> Digest {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let mut h = blake3::Hasher::new();
    h.update(b"nosa-host-fact-v1\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    match std::fs::symlink_metadata(path) {
        Err(e) => {
            h.update(b"error\0");
            h.update(e.kind().to_string().as_bytes());
        }
        Ok(m) if m.is_dir() => {
            h.update(b"d");
            let mut names: Vec<Vec<u8>> = fs_err::read_dir(path)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.file_name().as_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            for n in names {
                h.update(&(n.len() as u64).to_le_bytes());
                h.update(&n);
            }
        }
        Ok(m) if m.file_type().is_symlink() => {
            h.update(b"l");
            if let Ok(t) = fs_err::read_link(path) {
                h.update(t.as_os_str().as_bytes());
            }
        }
        Ok(_) => {
            h.update(b"f");
            let mut bytes = Vec::new();
            match fs_err::File::open(path).and_then(|f| f.take(16 << 20).read_to_end(&mut bytes)) {
                Ok(_) => h.update(&bytes),
                Err(e) => h.update(e.to_string().as_bytes()),
            };
        }
    }
    h.finalize().into()
}

/// The interpreter of the host file at `path` (a `#!` line or an ELF loader), if any. A file
/// that cannot be opened has none: the program's own lookup of it, which the trace holds,
/// failed too (a `PATH` search tries several).
pub fn interpreter(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    let mut head = Vec::new();
    let Ok(f) = fs_err::File::open(path) else {
        return Ok(None);
    };
    // An ELF file's program headers are near its start; a `#!` line is its first line.
    f.take(64 << 10)
        .read_to_end(&mut head)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    super::probe::interpreter(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory outside `/tmp`, which a step's sandbox hides.
    fn host_dir() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").expect("/var/tmp is writable")
    }

    #[test]
    fn host_lookups_follow_links_and_see_changes() {
        let dir = host_dir();
        let d = dir.path();
        fs_err::write(d.join("a"), "one").unwrap();
        std::os::unix::fs::symlink("a", d.join("l")).unwrap();
        let p = |n: &str| format!("{}/{n}", d.display());
        let late = i64::MAX;
        // Long after the files were written: stable.
        let (d1, end) = lookup(&p("l"), late);
        assert_eq!(end, HostEnd::Path(p("a")));
        assert_eq!(lookup(&p("l"), late).0, d1);
        let (missing, _) = lookup(&p("nope"), late);
        fs_err::write(d.join("a"), "two").unwrap();
        assert_ne!(lookup(&p("l"), late).0, d1, "a rewrite changes the stamp");
        fs_err::write(d.join("nope"), "").unwrap();
        assert_ne!(
            lookup(&p("nope"), late).0,
            missing,
            "a missing path appearing"
        );
        let (l1, _) = listing(&d.display().to_string(), late);
        fs_err::write(d.join("b"), "").unwrap();
        assert_ne!(listing(&d.display().to_string(), late).0, l1);
        assert!(matches!(
            lookup("/proc/self/status", late).1,
            HostEnd::Sandbox(_)
        ));
        assert_eq!(lookup(&format!("{}/x", p("a")), late).1, HostEnd::Invalid);
    }

    #[test]
    fn host_facts_digest_content() {
        assert_eq!(
            fact("/proc/sys/kernel/ostype"),
            fact("/proc/sys/kernel/ostype")
        );
        assert_ne!(
            fact("/proc/sys/kernel/ostype"),
            fact("/proc/sys/kernel/osrelease")
        );
        assert_eq!(
            fact("/proc/sys"),
            fact("/proc/sys"),
            "a directory by its names"
        );
        // A fact that changes with every read never matches.
        assert_ne!(
            fact("/proc/sys/kernel/random/uuid"),
            fact("/proc/sys/kernel/random/uuid")
        );
    }

    #[test]
    fn a_file_changed_during_the_run_never_matches() {
        let dir = host_dir();
        let f = dir.path().join("f");
        fs_err::write(&f, "x").unwrap();
        let now = nosa_cache::stamp::epoch_ns(std::time::SystemTime::now());
        let p = f.display().to_string();
        assert_ne!(lookup(&p, now).0, lookup(&p, now).0);
    }
}
