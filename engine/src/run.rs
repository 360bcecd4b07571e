//! Running one node: a fresh directory under the store's tmp/, the rule on a worker thread
//! (a panic is a failure, not a crash), and the commit of its output: blobs, tree, log, then
//! the action record (the commit point).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nosa_cache::{Digest, Store, Tree};

use crate::exec::{Engine, EngineError};
use crate::key::{ActionRecord, Component, ComponentKind, key_of_parts};
use crate::node::{DepOutput, InputFile, Produced, Rule, RunContext, RunError};
use crate::remote::RemoteLookup;

/// A node the scheduler sent to a worker.
pub(crate) struct Job {
    pub local: usize,
    pub id: String,
    pub rule: Arc<dyn Rule>,
    pub inputs: Vec<InputFile>,
    pub deps: Vec<DepOutput>,
    pub key: Digest,
    pub components: Vec<Component>,
    /// The node's last good output tree (a hint, see [`RunContext::previous`]).
    pub previous: Option<Digest>,
    /// The key of that output's record (its memo is handed to the rule).
    pub previous_key: Option<Digest>,
    /// Whether the remote cache may answer for it (not when the run was forced).
    pub remote_ok: bool,
}

/// A worker's answer for a [`Job`].
pub(crate) struct JobDone {
    pub local: usize,
    pub result: Result<ActionRecord, String>,
    pub log: PathBuf,
    /// The milliseconds the remote cache took to give the result, when it did.
    pub remote_ms: Option<u64>,
    /// Why the remote cache could not give it, when it was asked.
    pub remote_miss: Option<crate::reason::Reason>,
}

/// File name for a node id (`:` and `/` replaced).
pub fn file_name_for(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Stores a tree a rule made by hand (in `store`, the build's or a farm worker's), refusing
/// one that names a blob the store lacks.
pub(crate) fn put_complete_tree(store: &Store, t: &Tree) -> Result<Digest, RunError> {
    if let Some(missing) = t.blobs().find(|b| !store.has_blob(b)) {
        return Err(RunError::msg(format!(
            "the rule's tree names blob {} which the store lacks",
            missing.short()
        )));
    }
    Ok(store.put_tree(t)?)
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

impl Engine {
    /// Runs one node in a fresh directory and commits its output to the store. A panic on
    /// the way (in the remote cache, say; a rule's own is caught around its run) fails the
    /// node: the worker lives on and the build gets its answer.
    pub(crate) fn run_job(&self, job: Job) -> JobDone {
        let log = self
            .store
            .logs_dir()
            .join(format!("{}.log", file_name_for(&job.id)));
        let local = job.local;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_job_unguarded(job, log.clone())
        }))
        .unwrap_or_else(|p| JobDone {
            local,
            result: Err(format!("nosa bug: the run panicked: {}", panic_text(&*p))),
            log,
            remote_ms: None,
            remote_miss: None,
        })
    }

    fn run_job_unguarded(&self, job: Job, log: PathBuf) -> JobDone {
        let mut remote_miss = None;
        let shared = job.rule.shareable();
        if let Some(remote) = self.remote.as_ref().filter(|_| job.remote_ok && shared) {
            let t = Instant::now();
            let unusable = match remote.fetch(&self.store, &job.key) {
                // A record for another key would be a wrong result, whatever the remote; that
                // its tree is whole in the store the implementation checked before it wrote
                // the record (the store's commit order), and the store's readers check again.
                RemoteLookup::Hit(rec) if rec.key != job.key => Some(Some(format!(
                    "it answered key {} with a record for key {}",
                    job.key.short(),
                    rec.key.short()
                ))),
                RemoteLookup::Hit(rec) => {
                    // The log of the run that made it, where this node's log would be.
                    let copied = rec
                        .log
                        .filter(|l| self.store.has_blob(l))
                        .and_then(|l| fs_err::read(self.store.blob_path(&l)).ok())
                        .is_some_and(|bytes| fs_err::write(&log, bytes).is_ok());
                    if !copied {
                        let _ = fs_err::write(
                            &log,
                            format!("# nosa: {} from the remote cache (no log)\n", job.id),
                        );
                    }
                    return JobDone {
                        local: job.local,
                        result: Ok(*rec),
                        log,
                        remote_ms: Some(t.elapsed().as_millis() as u64),
                        remote_miss: None,
                    };
                }
                RemoteLookup::Off => None,
                RemoteLookup::Missing => Some(None),
                RemoteLookup::Unusable(why) => Some(Some(why)),
            };
            remote_miss = unusable.map(|unusable| crate::reason::Reason::RemoteMiss {
                remote: remote.describe(),
                unusable,
            });
        }
        let result = self.run_job_inner(&job, &log);
        if let (Ok(rec), Some(remote), true) = (&result, &self.remote, shared) {
            remote.upload(&self.store, rec);
        }
        JobDone {
            local: job.local,
            result: result.map_err(|e| e.to_string()),
            log,
            remote_ms: None,
            remote_miss,
        }
    }

    fn run_job_inner(&self, job: &Job, log_path: &Path) -> Result<ActionRecord, RunError> {
        let base = nosa_cache::atomic::temp_name(
            &self.store.tmp_dir(),
            &format!("x{}", file_name_for(&job.id)),
        );
        let base = base.with_file_name(format!(
            "run-{}",
            base.file_name().expect("temp name").to_string_lossy()
        ));
        let out = base.join("out");
        let scratch = base.join("scratch");
        fs_err::create_dir_all(&out)?;
        fs_err::create_dir_all(&scratch)?;
        let memory = self
            .memory
            .as_ref()
            .map(|d| d.join(base.file_name().expect("run dir name")));
        // Emptied, then opened for appending: a rule's tool that writes to the same file
        // (a step's shell) appends too, and the engine's lines after it never overwrite its
        // output.
        fs_err::File::create(log_path)?;
        let mut log = fs_err::OpenOptions::new().append(true).open(log_path)?;
        writeln!(log, "# nosa: {} (key {})", job.id, job.key.short())?;
        let t0 = Instant::now();
        let own: Vec<(ComponentKind, &str, Digest)> = job
            .components
            .iter()
            .filter(|c| c.kind != ComponentKind::Dep)
            .map(|c| (c.kind, c.name.as_str(), c.digest))
            .collect();
        let own_key = key_of_parts(&own);
        let mut produced = Produced::default();
        let run = match self.run_on_farm(job, own_key, &base, &mut log) {
            Ok(Some(farmed)) => {
                produced = farmed;
                Ok(())
            }
            Err(e) => Err(e),
            Ok(None) => {
                let mut ctx = RunContext {
                    node: &job.id,
                    inputs: &job.inputs,
                    deps: &job.deps,
                    out: out.clone(),
                    scratch: scratch.clone(),
                    log: &mut log,
                    previous: job.previous,
                    own_key,
                    previous_key: job.previous_key,
                    store: &self.store,
                    log_path: log_path.to_path_buf(),
                    produced: Produced::default(),
                    memory: memory.clone(),
                    held: Vec::new(),
                    executor: self.executor.as_deref(),
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    job.rule.run(&mut ctx)
                }));
                produced = std::mem::take(&mut ctx.produced);
                r.unwrap_or_else(|p| {
                    Err(RunError::msg(format!("rule panicked: {}", panic_text(&*p))))
                })
            }
        };
        let ms = t0.elapsed().as_millis() as u64;
        if let Some(m) = memory.filter(|m| m.exists()) {
            // At once (tmpfs frees it in a few ms), and the store's directory with it when no
            // other run uses it, so that stores that are gone leave nothing in /dev/shm.
            let _ = fs_err::remove_dir_all(&m);
            if let Some(parent) = m.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        if let Err(e) = run {
            let _ = writeln!(log, "# nosa: failed: {e}");
            let _ = fs_err::remove_dir_all(&base);
            return Err(e);
        }
        let t_commit = Instant::now();
        // A farm's run left `out` empty: its equivalence digest came with its tree.
        let equivalence = match produced.farm {
            Some(_) => produced.equivalence,
            None => job.rule.equivalence_digest(&out).or(produced.equivalence),
        };
        let tree = match produced.tree {
            None => {
                // Files the run linked in from its previous output are not read again.
                let previous = job.previous.and_then(|d| self.store.get_tree(&d).ok());
                self.store
                    .ingest_dir_hinted(&out, true, previous.as_ref())?
                    .0
            }
            Some(mut t) => {
                if fs_err::read_dir(&out)?.next().is_some() {
                    return Err(RunError::msg(
                        "the rule handed its output as a tree and also wrote files to out/",
                    ));
                }
                t.normalize();
                put_complete_tree(&self.store, &t)?
            }
        };
        let memo = match produced.memo {
            None => None,
            Some(mut m) => {
                m.normalize();
                Some(put_complete_tree(&self.store, &m)?)
            }
        };
        if let Some(n) = &produced.note {
            writeln!(log, "# nosa: {n}")?;
        }
        writeln!(log, "# nosa: done in {ms} ms, output tree {}", tree.short())?;
        log.sync_all()?;
        drop(log);
        let log_blob = self.store.put_bytes(&fs_err::read(log_path)?)?;
        let rec = ActionRecord {
            node: job.id.clone(),
            key: job.key,
            components: job.components.clone(),
            tree,
            output: equivalence.unwrap_or(tree),
            log: Some(log_blob),
            memo,
            note: produced.note,
            reused: produced.reused,
            farm: produced.farm,
            ms,
            finished: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.store.put_action(&rec)?;
        crate::exec::timing(&format!("{}: store output", job.id), t_commit);
        self.remove_later(base);
        Ok(rec)
    }

    /// Removes run directories a killed build left behind.
    pub(crate) fn clear_stale_runs(&self) -> Result<(), EngineError> {
        for e in fs_err::read_dir(self.store.tmp_dir())? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("run-") {
                let _ = fs_err::remove_dir_all(e.path());
            }
        }
        // And their directories in memory (a killed build's sysroot would hold RAM).
        if let Some(mem) = &self.memory
            && let Ok(entries) = fs_err::read_dir(mem)
        {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("run-") {
                    let _ = fs_err::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}
