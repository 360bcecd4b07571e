//! `nosa runc`'s root filesystem and sandbox: a build's ostree commit checked out under
//! `tmp/runc/<commit>/` and the bubblewrap command that runs a program with it as `/`.
//!
//! The build keeps its commit in an archive repository, whose objects are compressed and
//! cannot be linked; so the commit is first pulled into `tmp/runc/repo` (bare-user, kept:
//! the next build's commit shares most objects) and checked out from there with hardlinks
//! (`ostree checkout -U -H`), then renamed into place: a checkout that was killed half way is
//! a `.partial-*` directory nobody uses, removed by a later run. A checkout is reused as long
//! as a build in builds.json has its commit; checkouts of commits no build has any more are
//! removed (and their objects pruned from the repository) when another is made.
//!
//! The sandbox is the commit's tree, not a booted system: `/` (so `/usr`) read-only, `/etc`
//! a writable copy of the tree's `/usr/etc` (as ostree deploys it; a copy, because the
//! checkout's files are the repository's objects), `/var`, `/tmp` and `/run` empty tmpfs,
//! `/proc`, `/dev`, no systemd.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::builds::{BuildsDir, COMMIT_DIR};

/// `tmp/runc/` of a workdir.
pub fn runc_dir(workdir: &Path) -> PathBuf {
    workdir.join("tmp/runc")
}

/// Runs `ostree` with `args`, failing with its stderr.
fn ostree(args: &[&std::ffi::OsStr]) -> Result<(), Error> {
    let out = Command::new("ostree").args(args).output().map_err(|e| {
        Error::refused(
            format!("cannot run ostree: {e}"),
            "install Debian's ostree (the README's install-deps does)",
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        Err(Error::refused(
            format!(
                "ostree {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "`nosa clean` removes tmp/ (the next runc makes its checkout again)",
        ))
    }
}

/// Whether process `pid` is alive.
fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Removes what runs that are no longer alive left in `base`: half-made checkouts and
/// repositories, `/etc` copies.
fn remove_leftovers(base: &Path) -> Result<(), Error> {
    let Ok(rd) = fs_err::read_dir(base) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover = (name.starts_with(".partial-")
            || name.starts_with(".repo-")
            || name.starts_with("run-"))
            && name.rsplit('-').next().is_some_and(|pid| !alive(pid));
        if leftover {
            fs_err::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// Renames `from` to `to`, unless another run made `to` first (then `from` goes).
fn rename_or_lose(from: &Path, to: &Path) -> Result<(), Error> {
    if let Err(e) = fs_err::rename(from, to) {
        if !to.exists() {
            return Err(e.into());
        }
        fs_err::remove_dir_all(from)?;
    }
    Ok(())
}

/// The commit of build `id` for `arch` checked out for `nosa runc`: its directory, made
/// when missing.
pub fn checkout(workdir: &Path, id: &str, arch: &str) -> Result<PathBuf, Error> {
    let builds = BuildsDir::of(workdir);
    let record = builds.commit_record(id, arch).ok_or_else(|| {
        Error::refused(
            format!("build {id} has no ostree commit for {arch} (builds/{id}/{arch}/{COMMIT_DIR}/commit.json)"),
            "`nosa build` makes one",
        )
    })?;
    let checksum = record.checksum;
    if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::refused(
            format!("build {id}'s commit.json names no commit checksum ({checksum:?})"),
            "`nosa build` records the build again",
        ));
    }
    let base = runc_dir(workdir);
    fs_err::create_dir_all(&base)?;
    remove_leftovers(&base)?;
    let target = base.join(&checksum);
    if target.is_dir() {
        return Ok(target);
    }
    let pid = std::process::id();
    let repo = base.join("repo");
    if !repo.join("config").is_file() {
        let tmp = base.join(format!(".repo-{pid}"));
        ostree(&[
            "init".as_ref(),
            "--mode=bare-user".as_ref(),
            format!("--repo={}", tmp.display()).as_ref(),
        ])?;
        rename_or_lose(&tmp, &repo)?;
    }
    let repo_arg = format!("--repo={}", repo.display());
    let source = builds.arch_dir(id, arch).join(COMMIT_DIR).join("repo");
    ostree(&[
        "pull-local".as_ref(),
        repo_arg.as_ref(),
        source.as_os_str(),
        checksum.as_ref(),
    ])?;
    let ref_name = format!("nosa-runc/{checksum}");
    if !repo.join("refs/heads").join(&ref_name).exists() {
        ostree(&[
            "refs".as_ref(),
            repo_arg.as_ref(),
            format!("--create={ref_name}").as_ref(),
            checksum.as_ref(),
        ])
        .or_else(|e| {
            // Another run made the ref meanwhile.
            if repo.join("refs/heads").join(&ref_name).exists() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    let partial = base.join(format!(".partial-{checksum}-{pid}"));
    ostree(&[
        "checkout".as_ref(),
        repo_arg.as_ref(),
        "-U".as_ref(),
        "-H".as_ref(),
        checksum.as_ref(),
        partial.as_os_str(),
    ])?;
    // The mount points the sandbox needs (an ostree commit has /usr/etc, not /etc).
    for d in ["etc", "proc", "dev", "sys", "tmp", "var", "run"] {
        let p = partial.join(d);
        if p.symlink_metadata().is_err() {
            fs_err::create_dir(&p)?;
        }
    }
    rename_or_lose(&partial, &target)?;
    forget_old(&builds, &base, &repo_arg)?;
    Ok(target)
}

/// Removes the checkouts (and their refs and objects) of commits that no build in
/// builds.json has any more.
fn forget_old(builds: &BuildsDir, base: &Path, repo_arg: &str) -> Result<(), Error> {
    let mut kept = std::collections::HashSet::new();
    for b in builds.index().map(|i| i.builds).unwrap_or_default() {
        for a in &b.arches {
            if let Some(r) = builds.commit_record(&b.id, a) {
                kept.insert(r.checksum);
            }
        }
    }
    let mut removed = false;
    for e in fs_err::read_dir(base)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && !kept.contains(&name)
        {
            fs_err::remove_dir_all(e.path())?;
            let _ = ostree(&[
                "refs".as_ref(),
                repo_arg.as_ref(),
                "--delete".as_ref(),
                format!("nosa-runc/{name}").as_ref(),
            ]);
            removed = true;
        }
    }
    if removed {
        ostree(&["prune".as_ref(), repo_arg.as_ref(), "--refs-only".as_ref()])?;
    }
    Ok(())
}

/// A run's own directory under `tmp/runc/` (`run-<pid>`), with the writable `/etc` copy;
/// removed when dropped (or, after a kill, by a later run).
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// Copies `root`'s `usr/etc` to a new `run-<pid>/etc` beside it.
    pub fn new(root: &Path) -> Result<RunDir, Error> {
        let base = root.parent().expect("a checkout is in tmp/runc");
        let dir = base.join(format!("run-{}", std::process::id()));
        if dir.exists() {
            fs_err::remove_dir_all(&dir)?;
        }
        fs_err::create_dir(&dir)?;
        let run = RunDir { dir };
        let from = root.join("usr/etc");
        if from.is_dir() {
            let out = Command::new("cp")
                .arg("-a")
                .arg(&from)
                .arg(run.etc())
                .output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "cp -a {} {}: {}",
                    from.display(),
                    run.etc().display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
                .into());
            }
        } else {
            fs_err::create_dir(run.etc())?;
        }
        Ok(run)
    }

    /// The `/etc` copy.
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs_err::remove_dir_all(&self.dir);
    }
}

/// The shell a `nosa runc` without a command starts: the tree's bash, else its sh.
pub fn default_shell(root: &Path) -> String {
    // symlink_metadata: the tree's links point into the tree, not the host.
    if root.join("usr/bin/bash").symlink_metadata().is_ok() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// The bubblewrap command that runs `argv` with `root` as `/` and `etc` as `/etc` (see the
/// module documentation); stdin, stdout and stderr are the caller's.
pub fn command(root: &Path, etc: &Path, argv: &[String]) -> Command {
    let mut c = Command::new("bwrap");
    c.args([
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "nosa-runc",
    ]);
    c.arg("--ro-bind").arg(root).arg("/");
    c.args([
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--ro-bind",
        "/sys",
        "/sys",
    ]);
    c.args(["--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/var"]);
    // What ostree's tmpfiles make in /var; /root and /home point there.
    for d in ["roothome", "home", "tmp", "opt", "srv", "mnt", "log"] {
        c.arg("--dir").arg(format!("/var/{d}"));
    }
    c.arg("--bind").arg(etc).arg("/etc");
    c.args(["--chdir", "/", "--clearenv"]);
    c.args([
        "--setenv",
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]);
    c.args(["--setenv", "HOME", "/root", "--setenv", "USER", "root"]);
    if let Ok(term) = std::env::var("TERM") {
        c.args(["--setenv", "TERM", &term]);
    }
    c.arg("--").args(argv);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_runs_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // A pid no process has: beyond the kernel's pid_max.
        let dead = 1u64 << 23;
        let names = [
            format!(".partial-{}-{dead}", "a".repeat(64)),
            format!(".repo-{dead}"),
            format!("run-{dead}"),
            format!(".partial-{}-{me}", "b".repeat(64)),
            format!("run-{me}"),
            "c".repeat(64),
        ];
        for n in &names {
            fs_err::create_dir_all(dir.path().join(n).join("x")).unwrap();
        }
        remove_leftovers(dir.path()).unwrap();
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, false, false, true, true, true]);
    }

    #[test]
    fn the_sandbox_mounts_the_tree_read_only() {
        let c = command(
            Path::new("/r"),
            Path::new("/e"),
            &["cat".into(), "/x".into()],
        );
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind /r /"), "{joined}");
        assert!(joined.contains("--bind /e /etc"), "{joined}");
        assert!(joined.contains("--tmpfs /var"), "{joined}");
        assert!(joined.ends_with("-- cat /x"), "{joined}");
    }
}
