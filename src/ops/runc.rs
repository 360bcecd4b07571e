//! `nosa runc` and `nosa shell`: a command inside the build's root filesystem, or in the
//! build environment. Both pass the command's exit status through (128 + N when a signal N
//! ended it), like a shell does.

use std::path::PathBuf;
use std::process::Command;

use nosa_build::{BuildsDir, meta_edit, runc};

use crate::cli::{Cli, RuncArgs, ShellArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::find_workdir;

/// `nosa runc`: the build's commit checked out under tmp/runc/ (made once per commit) and
/// the command run in it under bubblewrap. No workdir lock: it reads builds/ and writes only
/// tmp/runc/, so it works while a build runs.
pub fn runc(cli: &Cli, a: &RuncArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let builds = BuildsDir::of(&workdir);
    let host = nosa_config::Arch::host().map(|h| h.to_string());
    let (id, arch) = meta_edit::select(
        &builds,
        a.build.as_deref(),
        a.arch.as_deref(),
        host.as_deref(),
    )?;
    let root = runc::checkout(&workdir, &id, &arch)?;
    let run = runc::RunDir::new(&root)?;
    let argv = if a.command.is_empty() {
        vec![runc::default_shell(&root)]
    } else {
        a.command.clone()
    };
    let status = wait_passing_signals(runc::command(&root, &run.etc(), &argv), "bwrap")?;
    drop(run);
    std::process::exit(status)
}

/// `nosa shell`: `$SHELL` (or /bin/bash), or the command, in the workdir with nosa's own
/// directory first on PATH and `NOSA_WORKDIR` set.
pub fn shell(cli: &Cli, a: &ShellArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let argv = if a.command.is_empty() {
        vec![
            std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/bash".into()),
        ]
    } else {
        a.command.clone()
    };
    let own = own_dir()?;
    let mut path = vec![own];
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&p));
    }
    let path = std::env::join_paths(path).map_err(runtime)?;
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .current_dir(&workdir)
        .env("PATH", path)
        .env("NOSA_WORKDIR", &workdir)
        // The front program's notes to this one are not the shell's.
        .env_remove(nosa_engine::key::FRONT_EXE_ENV)
        .env_remove(nosa_engine::key::WITNESS_CHECKED_ENV);
    let status = wait_passing_signals(c, &argv[0])?;
    std::process::exit(status)
}

/// The directory of the `nosa` the user ran: the front program's when it started this one,
/// else this program's.
fn own_dir() -> Result<PathBuf, Failure> {
    let exe = match std::env::var_os(nosa_engine::key::FRONT_EXE_ENV) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(runtime)?,
    };
    Ok(exe
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/")))
}

/// Sets the disposition of SIGINT and SIGQUIT (`SIG_IGN` or `SIG_DFL`).
#[allow(unsafe_code)]
fn interrupt_signals(action: libc::sighandler_t) {
    // SAFETY: signal(2) with SIG_IGN or SIG_DFL installs no handler code; the previous
    // dispositions are not needed (nosa never changes them elsewhere).
    unsafe {
        libc::signal(libc::SIGINT, action);
        libc::signal(libc::SIGQUIT, action);
    }
}

/// Runs `c` with the terminal's stdin/stdout/stderr and returns its exit status as a shell
/// gives it. While it runs nosa ignores SIGINT and SIGQUIT, as system(3) does: ^C goes to
/// the command (an interactive shell keeps running), not to nosa.
fn wait_passing_signals(mut c: Command, what: &str) -> Result<i32, Failure> {
    use std::os::unix::process::ExitStatusExt;
    let mut child = c.spawn().map_err(|e| {
        let hint = if what == "bwrap" {
            "install Debian's bubblewrap (the README's install-deps does)"
        } else {
            "is it installed and on PATH?"
        };
        Failure::Build(Some(miette::miette!(help = hint, "cannot run {what}: {e}")))
    })?;
    interrupt_signals(libc::SIG_IGN);
    let status = child.wait();
    interrupt_signals(libc::SIG_DFL);
    let status = status.map_err(runtime)?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
