//! One function per command; each is a thin front on `nosa-build` and the engine: it parses
//! nothing (clap did), decides nothing about a build, and renders the outcome.

pub mod build;
pub mod compress;
pub mod config;
pub mod fetch;
pub mod graph;
pub mod kola;
pub mod meta;
pub mod noop;
pub mod push;
pub mod run;
pub mod runc;
pub mod store;

use std::path::{Path, PathBuf};

use nosa_build::session::LockRequest;
pub use nosa_build::session::store_dir;
use nosa_build::{Error, Session};
use nosa_cache::WorkdirLock;

use crate::cli::Cli;
use crate::exit::{Failure, runtime};

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if e.is_usage() {
            Failure::Config(e.into())
        } else {
            Failure::Build(Some(e.into()))
        }
    }
}

/// The directory the command runs in.
pub fn start_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    let dir = match &cli.workdir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(runtime)?,
    };
    std::path::absolute(&dir).map_err(runtime)
}

/// The workdir: the nearest directory at or above the start that has `nestos.build.toml`.
pub fn find_workdir(cli: &Cli) -> Result<(PathBuf, PathBuf), Failure> {
    Ok(nosa_build::session::find_workdir(&start_dir(cli)?)?)
}

/// Prints who holds the lock, once, while waiting for it.
fn say_waiting(holder: &str) {
    eprintln!("waiting for the workdir lock, held by {holder}");
}

/// Takes the workdir lock, saying on stderr who holds it while waiting.
pub fn lock(cli: &Cli, workdir: &Path, what: &str) -> Result<WorkdirLock, Failure> {
    Ok(nosa_build::session::lock(
        workdir,
        LockRequest {
            what,
            wait: !cli.no_wait,
            on_wait: &mut say_waiting,
        },
    )?)
}

/// Loads the workdir for `arch` (all configured arches if `None`); with `locked`, takes its
/// lock first. Configuration warnings go to stderr.
pub fn open(cli: &Cli, locked: Option<&str>, arch: Option<&str>) -> Result<Session, Failure> {
    open_with(cli, locked, arch, true)
}

/// [`open`], with the config's repo check relaxed to warnings when not `strict`.
pub fn open_with(
    cli: &Cli,
    locked: Option<&str>,
    arch: Option<&str>,
    strict: bool,
) -> Result<Session, Failure> {
    let start = start_dir(cli)?;
    let mut wait = say_waiting;
    let req = locked.map(|what| LockRequest {
        what,
        wait: !cli.no_wait,
        on_wait: &mut wait,
    });
    let s = Session::open(&start, req, arch, strict)?;
    warn(&s);
    Ok(s)
}

/// Prints the configuration warnings of `s`.
pub fn warn(s: &Session) {
    for w in s.ws.warnings() {
        eprint!("{}", crate::render::diagnostic(w));
    }
}

/// Gives `s`'s engine the remote cache that `--remote-cache` or the build file's `[cache]`
/// names (none with `--no-remote`), returned so the caller can report what it moved.
pub fn attach_remote(
    s: &mut Session,
    a: &crate::cli::RemoteArgs,
) -> Result<Option<std::sync::Arc<nosa_remote::Remote>>, Failure> {
    use nosa_remote::RemoteConfig;
    if a.no_remote {
        return Ok(None);
    }
    let file = s.ws.file.cache.as_ref();
    let grpc = |url: &str| nosa_remote::check_url(url) == Ok(nosa_remote::Protocol::Grpc);
    let tls_roots = |c: &nosa_build::buildfile::RawCache| {
        c.tls_roots.as_ref().map(|p| s.workdir().join(p.get_ref()))
    };
    let mut cfg = match (&a.remote_cache, file) {
        (Some(url), _) => RemoteConfig {
            url: url.clone(),
            read_only: false,
            auth_env: file.and_then(|c| c.auth_env.clone()),
            // The file's gRPC settings go with a gRPC URL given on the command line.
            instance: file
                .filter(|_| grpc(url))
                .and_then(|c| c.instance.as_ref().map(|i| i.get_ref().clone())),
            tls_roots: file
                .filter(|_| url.starts_with("grpcs://"))
                .and_then(tls_roots),
        },
        (None, Some(c)) => RemoteConfig {
            url: c.remote.get_ref().clone(),
            read_only: c.read_only,
            auth_env: c.auth_env.clone(),
            instance: c.instance.as_ref().map(|i| i.get_ref().clone()),
            tls_roots: tls_roots(c),
        },
        (None, None) => return Ok(None),
    };
    if let Some(i) = &a.remote_instance {
        cfg.instance = Some(i.clone());
    }
    let config =
        |m: String| Failure::Config(miette::miette!(help = "see docs/remote-cache.md", "{m}"));
    let execute = a.remote_execute
        || (a.remote_cache.is_none()
            && file.is_some_and(|c| c.execute.as_ref().is_some_and(|e| *e.get_ref())));
    let (cache, farm) = nosa_remote::open(&cfg, execute).map_err(config)?;
    if let Some(farm) = farm {
        s.engine.set_executor(Some(std::sync::Arc::new(farm)));
        // The nodes that can run on the farm go there as this program's `exec-node`.
        let program = std::env::current_exe()
            .map_err(|e| Failure::Config(miette::miette!("where is this program? {e}")))?;
        s.engine.set_farm_program(Some(program));
    }
    let cache = std::sync::Arc::new(cache);
    s.engine.set_remote(Some(cache.clone()));
    Ok(Some(cache))
}

/// Prints what the remote cache moved in this build, if it did anything.
pub fn report_remote(remote: Option<&nosa_remote::Remote>) {
    if let Some(r) = remote.filter(|r| r.active()) {
        eprintln!("{}", r.summary());
    }
}
