//! `nosa`, the front program: answers a no-op `nosa graph build` or `nosa build` from its
//! witness, and runs `nosa-core` (installed beside it) for everything else.
//!
//! The full program links libostree, libsolv and their closure (about 70 shared objects).
//! Loading them costs ~19 ms on these machines, about half a 5,000-step no-op build. This
//! program links none of them. It accepts only the plain forms of the two commands' options;
//! anything else, a missing or stale witness, or a held lock goes to `nosa-core` with the same
//! arguments. The witness key covers both programs (`nosa_engine::key::noop_witness_key`), and
//! `nosa-core` learns this program's path from `NOSA_FRONT_EXE`.

#[path = "render.rs"]
#[allow(dead_code)]
mod render;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nosa_build::session;
use nosa_cache::Store;
use nosa_engine::Engine;
use nosa_engine::key::{FRONT_EXE_ENV, WITNESS_CHECKED_ENV, noop_witness_key};

/// The core program's file name, beside this one.
const CORE: &str = "nosa-core";

/// A `nosa graph build` or `nosa build` this program may answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct NoopRequest {
    /// `graph build` or `build`, as the witness key names it.
    command: &'static str,
    workdir: Option<PathBuf>,
    json: bool,
    targets: Vec<String>,
    arch: Option<String>,
}

/// `args` (after the program name) as a build this program may answer: `graph build` with the
/// options `-C DIR`/`--workdir DIR`, `--no-wait`, `--json`, `-j N`/`--jobs N`, `--keep-going`,
/// `--arch ARCH` and target names, or `build` with the same but `--keep-going`. Anything else
/// (`--force`, `--version`, `--help`, `--opt=value`, `--`, another command) is `None`:
/// `nosa-core` parses it.
fn parse(args: &[OsString]) -> Option<NoopRequest> {
    let mut r = NoopRequest::default();
    let mut it = args.iter().map(|a| a.to_str());
    let mut words = Vec::new();
    let mut keep_going = false;
    while let Some(a) = it.next() {
        let a = a?;
        match a {
            "-C" | "--workdir" => r.workdir = Some(PathBuf::from(it.next()??)),
            "--json" => r.json = true,
            // The front never waits for the lock; a no-op is the same build either way.
            "--no-wait" => {}
            "--keep-going" => keep_going = true,
            "-j" | "--jobs" => {
                it.next()??.parse::<usize>().ok()?;
            }
            "--arch" => r.arch = Some(it.next()??.to_string()),
            _ if a.starts_with('-') || a.is_empty() => return None,
            _ => words.push(a.to_string()),
        }
    }
    let rest = match words.first().map(String::as_str) {
        Some("graph") if words.get(1).is_some_and(|w| w == "build") => {
            r.command = "graph build";
            2
        }
        Some("build") if !keep_going => {
            r.command = "build";
            1
        }
        _ => return None,
    };
    r.targets = words.split_off(rest);
    Some(r)
}

/// What the front did with a build.
enum Outcome {
    /// The witness held: the build is reported.
    Answered,
    /// The witness was checked under the workdir lock and does not hold: `nosa-core` need not
    /// check it again.
    Missed,
    /// Not checked (no workdir, the lock held, a program not identified).
    Unchecked,
}

/// Answers `req` from the witness, if it holds.
fn answer(req: &NoopRequest, front: &Path, core: &Path) -> Outcome {
    let since = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let start = match &req.workdir {
        Some(d) => std::path::absolute(d).ok(),
        None => std::env::current_dir().ok(),
    };
    let Some((workdir, file)) = start.and_then(|s| session::find_workdir(&s).ok()) else {
        return Outcome::Unchecked;
    };
    // Never wait here: a held lock is `nosa-core`'s to report and wait for.
    let lock = session::lock(
        &workdir,
        session::LockRequest {
            what: if req.command == "build" {
                "nosa build"
            } else {
                "nosa graph build"
            },
            wait: false,
            on_wait: &mut |_| {},
        },
    );
    let key = noop_witness_key(
        Some(front),
        core,
        &file,
        req.command,
        &req.targets,
        req.arch.as_deref(),
    );
    let store = Store::open(session::store_dir(&workdir));
    let (Ok(lock), Some(key), Ok(store)) = (lock, key, store) else {
        return Outcome::Unchecked;
    };
    let engine = Engine::new(workdir, store);
    let Some(w) = engine.check_witness(&key) else {
        return Outcome::Missed;
    };
    nosa_engine::timing(FRONT_HOLDS, t0);
    render::witnessed(req.json, engine.workdir(), w, since);
    // Exiting next; the lock is released at exit.
    std::mem::forget(lock);
    Outcome::Answered
}

/// The `NOSA_TIMINGS` line of a no-op the front answered (`nosa-core` prints
/// `build: witness holds`).
const FRONT_HOLDS: &str = "build: witness holds (front)";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let front = std::env::current_exe().ok();
    let core = front
        .as_deref()
        .and_then(Path::parent)
        .map(|d| d.join(CORE))
        .unwrap_or_else(|| PathBuf::from(CORE));
    let outcome = match (parse(&args), &front) {
        (Some(req), Some(front)) => answer(&req, front, &core),
        _ => Outcome::Unchecked,
    };
    let mut cmd = std::process::Command::new(&core);
    match outcome {
        Outcome::Answered => return ExitCode::SUCCESS,
        Outcome::Missed => {
            cmd.env(WITNESS_CHECKED_ENV, "1");
        }
        Outcome::Unchecked => {}
    }
    cmd.arg0("nosa").args(&args);
    if let Some(front) = &front {
        cmd.env(FRONT_EXE_ENV, front);
    }
    let e = cmd.exec();
    eprintln!(
        "nosa: cannot run {} ({e}); nosa-core is built and installed beside nosa (cargo build)",
        core.display()
    );
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Option<NoopRequest> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn only_plain_builds_are_answered_here() {
        let r = p(&[
            "-C", "w", "graph", "build", "--json", "-j", "2", "qemu", "oci",
        ])
        .unwrap();
        assert_eq!(r.command, "graph build");
        assert_eq!(r.workdir, Some(PathBuf::from("w")));
        assert!(r.json);
        assert_eq!(r.targets, ["qemu", "oci"]);
        let r = p(&["graph", "build", "--arch", "aarch64"]).unwrap();
        assert_eq!(r.arch.as_deref(), Some("aarch64"));
        assert!(r.targets.is_empty());
        let r = p(&["build", "qemu", "--json"]).unwrap();
        assert_eq!(
            (r.command, r.targets.as_slice()),
            ("build", &["qemu".to_string()][..])
        );
        assert_eq!(p(&["build"]).unwrap().command, "build");
        for other in [
            &["graph", "build", "--force"][..],
            &["graph", "build", "--json=true"],
            &["graph", "build", "-j", "x"],
            &["graph", "build", "--", "a"],
            &["graph", "build", "--help"],
            &["graph", "plan"],
            &["build", "--keep-going"],
            &["build", "--version", "1"],
            &["build", "--force"],
            &["build-fast"],
            &["graph"],
            &["--version"],
            &[],
        ] {
            assert_eq!(p(other), None, "{other:?}");
        }
    }
}
