//! One function per command; each is a thin front on the engine and the rules.

pub mod config;
pub mod graph;
pub mod store;

use std::path::{Path, PathBuf};

use nosa_cache::{Store, WorkdirLock};
use nosa_engine::Engine;
use nosa_rules::{BUILD_FILE, BuildFile, Workspace};

use crate::cli::Cli;
use crate::exit::{Failure, runtime};

/// A loaded workdir: its graph, store and engine.
pub struct Session {
    pub ws: Workspace,
    pub engine: Engine,
    _lock: Option<WorkdirLock>,
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
    let start = start_dir(cli)?;
    match BuildFile::find(&start) {
        Some(file) => Ok((file.parent().expect("file in a dir").to_path_buf(), file)),
        None => Err(Failure::Config(miette::miette!(
            help = "run `nosa init <config>` to make a workdir, or pass -C DIR",
            "no {BUILD_FILE} in {} or any parent directory",
            start.display()
        ))),
    }
}

/// The store of workdir `w`.
pub fn store_dir(w: &Path) -> PathBuf {
    w.join("cache").join("store")
}

/// Takes the workdir lock, saying on stderr who holds it while waiting.
pub fn lock(cli: &Cli, workdir: &Path, what: &str) -> Result<WorkdirLock, Failure> {
    WorkdirLock::acquire(&workdir.join(".nosa.lock"), !cli.no_wait, what, |holder| {
        eprintln!("waiting for the workdir lock, held by {holder}");
    })
    .map_err(|e| match e {
        nosa_cache::Error::Locked { holder, .. } => Failure::Build(Some(miette::miette!(
            help = "wait for it to finish, or drop --no-wait to wait",
            "the workdir {} is locked by {holder}",
            workdir.display()
        ))),
        other => runtime(other),
    })
}

impl Session {
    /// Loads the workdir for `arch` (all configured arches if `None`); with `locked`, takes
    /// its lock first. Configuration warnings go to stderr.
    pub fn open(cli: &Cli, locked: Option<&str>, arch: Option<&str>) -> Result<Session, Failure> {
        Self::open_with(cli, locked, arch, true)
    }

    /// [`Session::open`], with the config's repo check relaxed to warnings when not `strict`.
    pub fn open_with(
        cli: &Cli,
        locked: Option<&str>,
        arch: Option<&str>,
        strict: bool,
    ) -> Result<Session, Failure> {
        let (workdir, file) = find_workdir(cli)?;
        let lock = match locked {
            Some(what) => Some(lock(cli, &workdir, what)?),
            None => None,
        };
        let bf = BuildFile::load(&file).map_err(|e| Failure::Config((*e).into()))?;
        let ws = Workspace::with_options(bf, arch, strict).map_err(|e| Failure::Config(e.into()))?;
        for w in ws.warnings() {
            eprint!("{}", crate::render::diagnostic(w));
        }
        let store = Store::open(store_dir(&workdir)).map_err(runtime)?;
        Ok(Session {
            ws,
            engine: Engine::new(workdir, store),
            _lock: lock,
        })
    }

    /// Node indices for the named targets (default set when empty).
    pub fn targets(&self, names: &[String]) -> Result<Vec<usize>, Failure> {
        self.ws
            .resolve_targets(names)
            .map_err(|e| Failure::Config(e.into()))
    }
}
