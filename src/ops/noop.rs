//! The no-op witness around a build command (`nosa graph build`, `nosa build`): checked under
//! the workdir lock before anything else is loaded, drafted while the build runs, sealed after
//! it when every node was cached (`nosa_engine::WitnessDraft`; for `[nestos]` workdirs,
//! `nosa_build::noop` says what else is watched).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nosa_build::Session;
use nosa_build::os::{OsBuild, Recorded};
use nosa_cache::{Digest, Store};
use nosa_engine::{BuildReport, Engine, WitnessDraft};

use crate::cli::Cli;
use crate::exit::{Failure, runtime};
use crate::ops::{find_workdir, lock, store_dir};

/// A build command after its witness check.
pub enum Begun {
    /// Answered from the witness (and printed): the command is done.
    Answered,
    /// The workdir is locked and loaded, its warnings printed: build it.
    Load(Box<Session>, Noop),
}

/// One invocation's witness: its key, when it started, its draft.
pub struct Noop {
    key: Option<Digest>,
    since: SystemTime,
    draft: Option<WitnessDraft>,
}

impl Noop {
    /// Starts build command `command` (`what` names it to whoever waits for the lock) of
    /// `targets` for `arch`: takes the workdir lock, answers from the witness if it holds
    /// (printing as `json` says), else loads the workdir. With `witnessed` false (`--force`,
    /// `--version`) the witness is neither checked nor drafted.
    pub fn begin(
        cli: &Cli,
        what: &str,
        command: &str,
        targets: &[String],
        arch: Option<&str>,
        json: bool,
        witnessed: bool,
    ) -> Result<Begun, Failure> {
        // Before anything the witness records is read.
        let since = SystemTime::now();
        let (workdir, file) = find_workdir(cli)?;
        let lock = lock(cli, &workdir, what)?;
        let key = witness_key(&file, command, targets, arch).filter(|_| witnessed);
        // Taken before the build file is read.
        let file_meta = fs_err::metadata(&file).ok();
        let store = Store::open(store_dir(&workdir)).map_err(runtime)?;
        let engine = Engine::new(workdir, store);
        // The front program says when it already found that the witness does not hold.
        let checked = std::env::var_os(nosa_engine::key::WITNESS_CHECKED_ENV).is_some();
        if !checked
            && let Some(k) = &key
            && let Some(w) = engine.check_witness(k)
        {
            nosa_engine::timing("build: witness holds", since_instant(since));
            crate::render::witnessed(json, engine.workdir(), w, since);
            // Exiting next; the lock is released at exit.
            std::mem::forget(lock);
            return Ok(Begun::Answered);
        }
        let s = Session::load(engine, &file, Some(lock), arch, true)?;
        crate::ops::warn(&s);
        // No witness when there are warnings: a witnessed no-op prints only the build's lines.
        let draft = match (&key, file_meta) {
            (Some(_), Some(meta)) if s.ws.warnings().is_empty() => {
                let d = WitnessDraft::default();
                d.observe(&file, &meta, true);
                if s.ws.file.nestos.is_some() {
                    nosa_build::noop::observe_graph(&s, &d);
                }
                Some(d)
            }
            _ => None,
        };
        Ok(Begun::Load(Box::new(s), Noop { key, since, draft }))
    }

    /// The draft for the builds to add to (`BuildOptions::witness`), if there is one.
    pub fn draft(&self) -> Option<WitnessDraft> {
        self.draft.clone()
    }

    /// Says which build an OS build recorded, then seals its witness (see [`Noop::seal`]).
    pub fn recorded(&self, s: &Session, out: &OsBuild) {
        let note = out.recorded.as_ref().map(Recorded::message);
        if let Some(n) = &note {
            eprintln!("{n}");
        }
        self.seal(s, &out.report, note.as_deref());
    }

    /// Writes the witness of a build of `s` that reported `report` and printed `note` before
    /// its summary, if every node was cached and nothing spoiled the draft.
    pub fn seal(&self, s: &Session, report: &BuildReport, note: Option<&str>) {
        if let (Some(key), Some(d)) = (&self.key, &self.draft) {
            s.engine.seal_witness(
                d,
                key,
                self.since,
                report.nodes.iter().map(|n| n.id.as_str()),
                note,
            );
        }
    }
}

/// Names what a build command selects, for the no-op witness: the programs (the `nosa` front
/// that ran this one, named by [`nosa_engine::key::FRONT_EXE_ENV`], and this one: a rebuilt
/// nosa may decide differently), the build file's path, the command and the selection
/// arguments ([`nosa_engine::key::noop_witness_key`], which the front computes the same way).
/// `None` when this executable cannot be identified.
fn witness_key(
    file: &Path,
    command: &str,
    targets: &[String],
    arch: Option<&str>,
) -> Option<Digest> {
    let core = std::env::current_exe().ok()?;
    let front = std::env::var_os(nosa_engine::key::FRONT_EXE_ENV).map(PathBuf::from);
    nosa_engine::key::noop_witness_key(front.as_deref(), &core, file, command, targets, arch)
}

/// An `Instant` about as old as `t` (for timing output only).
fn since_instant(t: SystemTime) -> std::time::Instant {
    std::time::Instant::now() - t.elapsed().unwrap_or_default()
}
