//! The no-op witness around a build command (`nosa graph build`, `nosa build`): checked under
//! the workdir lock before anything else is loaded, drafted while the build runs, sealed after
//! it when every node was cached (`nosa_engine::WitnessDraft`; for `[nestos]` workdirs,
//! `nosa_build::noop` says what else is watched).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nosa_build::Session;
use nosa_cache::Digest;
use nosa_engine::{BuildReport, Engine, WitnessDraft, Witnessed};

/// One invocation's witness: its key, when it started, its draft.
pub struct Noop {
    key: Option<Digest>,
    since: SystemTime,
    file: PathBuf,
    /// The build file's metadata, taken before it was read.
    file_meta: Option<std::fs::Metadata>,
    draft: Option<WitnessDraft>,
}

impl Noop {
    /// Starts observing build `command` of `targets` for `arch` with build file `file`.
    /// `since`: when the invocation started, before it looked for the workdir.
    pub fn begin(
        since: SystemTime,
        file: &Path,
        command: &str,
        targets: &[String],
        arch: Option<&str>,
    ) -> Noop {
        Noop {
            key: witness_key(file, command, targets, arch),
            since,
            file: file.to_path_buf(),
            file_meta: fs_err::metadata(file).ok(),
            draft: None,
        }
    }

    /// What the last witnessed build of this selection reported, if its witness holds and the
    /// front program did not already find that it does not.
    pub fn check(&self, engine: &Engine) -> Option<Witnessed> {
        if std::env::var_os(nosa_engine::key::WITNESS_CHECKED_ENV).is_some() {
            return None;
        }
        engine.check_witness(self.key.as_ref()?)
    }

    /// A draft for the builds of `s` to add to, observing the build file. `None` (no
    /// witness) when the programs cannot be identified, and when the workdir has warnings to
    /// print (a witnessed no-op prints only the build's lines).
    pub fn draft(&mut self, s: &Session) -> Option<WitnessDraft> {
        let (Some(_), Some(meta)) = (&self.key, &self.file_meta) else {
            return None;
        };
        if !s.ws.warnings().is_empty() {
            return None;
        }
        let d = WitnessDraft::default();
        d.observe(&self.file, meta, true);
        self.draft = Some(d.clone());
        Some(d)
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
pub fn since_instant(t: SystemTime) -> std::time::Instant {
    std::time::Instant::now() - t.elapsed().unwrap_or_default()
}
