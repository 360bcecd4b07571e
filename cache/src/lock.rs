//! One lock per workdir: an advisory `flock` on `<workdir>/.nosa.lock`, whose content names the
//! holder so that a second invocation can say who it is waiting for.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Held while a command mutates the workdir; released on drop (or when the process dies).
#[derive(Debug)]
pub struct WorkdirLock {
    _file: File,
    path: PathBuf,
}

impl WorkdirLock {
    /// Takes the lock at `path`. When another process holds it: with `wait`, calls `on_wait`
    /// with the holder's description and blocks; without, fails with [`Error::Locked`].
    pub fn acquire(
        path: &Path,
        wait: bool,
        what: &str,
        on_wait: impl FnOnce(&str),
    ) -> Result<WorkdirLock> {
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?
            .into_parts()
            .0;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                if !wait {
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                on_wait(&holder);
                file.lock().map_err(|e| annotate(e, path))?;
            }
            Err(TryLockError::Error(e)) => return Err(annotate(e, path)),
        }
        file.set_len(0).map_err(|e| annotate(e, path))?;
        file.rewind().map_err(|e| annotate(e, path))?;
        writeln!(file, "pid {} ({what})", std::process::id()).map_err(|e| annotate(e, path))?;
        file.flush().map_err(|e| annotate(e, path))?;
        Ok(WorkdirLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another process".to_string()
    } else {
        s.to_string()
    }
}

fn annotate(e: std::io::Error, path: &Path) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join(".nosa.lock");
        let held = WorkdirLock::acquire(&p, false, "first", |_| {}).unwrap();
        match WorkdirLock::acquire(&p, false, "second", |_| {}) {
            Err(Error::Locked { holder, .. }) => {
                assert!(holder.contains("first"), "{holder}");
                assert!(holder.contains(&std::process::id().to_string()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        WorkdirLock::acquire(&p, false, "third", |_| {}).unwrap();
    }
}
