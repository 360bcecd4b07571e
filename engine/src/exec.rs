//! The executor: computes each node's key when its dependencies are done, reuses cached outputs,
//! runs the rest on a pool of worker threads, stops propagation when an output is unchanged
//! (early cutoff), and records state, logs and materialized outputs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nosa_cache::{Digest, StatCache, Store};
use rayon::prelude::*;

use crate::decide::Selection;
use crate::graph::Graph;
use crate::inputs::resolve_inputs_traced;
use crate::reason::Reason;
use crate::record::Leftovers;
use crate::schedule::Scheduler;
use crate::state::{BuildState, Status};
use crate::witness::{self, Trace, WitnessDraft, Witnessed};

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Worker threads (nodes run at once).
    pub jobs: usize,
    /// Finish independent nodes after a failure.
    pub keep_going: bool,
    /// Node ids to run even if cached.
    pub force: HashSet<String>,
    /// This build continues the previous one in the same invocation (a staged build): it
    /// keeps its build number, and a node it finds cached that already ran (or came from the
    /// remote cache) in that build keeps the status and reasons recorded then, so `why` still
    /// explains the run.
    pub continue_build: bool,
    /// Add this build's observations to a no-op witness draft if every node turns out cached,
    /// and spoil it otherwise (see [`WitnessDraft`]).
    pub witness: Option<WitnessDraft>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            keep_going: false,
            force: HashSet::new(),
            continue_build: false,
            witness: None,
        }
    }
}

/// Progress events, for the command line to render.
#[derive(Debug)]
pub enum Event<'a> {
    /// The build starts with this many nodes.
    Start {
        /// Nodes in the build.
        total: usize,
    },
    /// A node starts running.
    Started {
        /// Node id.
        id: &'a str,
    },
    /// A node is done (any status).
    Finished(&'a NodeResult),
}

/// Receives [`Event`]s.
pub trait Observer {
    /// Called on the coordinating thread, in order.
    fn event(&mut self, e: &Event<'_>);
}

impl<F: FnMut(&Event<'_>)> Observer for F {
    fn event(&mut self, e: &Event<'_>) {
        self(e)
    }
}

/// The result of one node in a build.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeResult {
    /// Node id.
    pub id: String,
    /// How it fared.
    pub status: Status,
    /// Run time (0 unless it ran).
    pub ms: u64,
    /// Why it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// The failure, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its log file, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// How it produced its output when it did not simply run (`reused by trace (...)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether it replayed a recorded effect instead of running.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// The build farm its command ran on, when it ran remotely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub farm: Option<String>,
}

/// The result of a build, nodes in completion order.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    /// One entry per node of the build.
    pub nodes: Vec<NodeResult>,
    /// Wall time.
    pub ms: u64,
}

impl BuildReport {
    /// Number of nodes with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.nodes.iter().filter(|n| n.status == status).count()
    }

    /// Whether every node succeeded.
    pub fn ok(&self) -> bool {
        self.count(Status::Failed) == 0 && self.count(Status::Skipped) == 0
    }

    /// Ids of the nodes with `status`, sorted.
    pub fn ids(&self, status: Status) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.status == status)
            .map(|n| n.id.clone())
            .collect();
        v.sort();
        v
    }
}

/// Engine errors (not node failures, which are in the report).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] nosa_cache::Error),
    /// IO outside the store.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The state and stat cache being loaded on a background thread.
type Prefetch = std::thread::JoinHandle<(BuildState, StatCache)>;

/// The engine for one workdir.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) workdir: PathBuf,
    pub(crate) store: Store,
    /// The state and stat cache, being read ahead by [`Engine::prefetch`].
    prefetched: Arc<Mutex<Option<Prefetch>>>,
    /// Run directories of finished nodes, removed by one background thread (a deployed
    /// sysroot takes ~0.3 s to delete) that [`Engine::build`] waits for before it returns.
    removals: Arc<Mutex<Option<Remover>>>,
    /// This store's directory for `RunContext::memory_scratch` (see `memtmp.rs`), if any.
    pub(crate) memory: Option<PathBuf>,
    /// The remote cache asked before a node runs and given its result after, if any.
    pub(crate) remote: Option<Arc<dyn crate::remote::RemoteCache>>,
    pub(crate) executor: Option<Arc<dyn crate::remote::RemoteExecutor>>,
    /// How nodes whose rules can run on the farm go there (the program it ships), if any.
    pub(crate) farm: Option<Arc<crate::farm::FarmNodes>>,
}

/// The background thread that removes finished run directories, and its queue.
#[derive(Debug)]
struct Remover {
    tx: std::sync::mpsc::Sender<PathBuf>,
    thread: std::thread::JoinHandle<()>,
}

/// Whether `NOSA_TIMINGS` is set.
pub(crate) fn timings_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NOSA_TIMINGS").is_some())
}

/// Prints how long a phase took (since `since`) on stderr when `NOSA_TIMINGS` is set: a cheap
/// profile of the no-op path, left in on purpose.
pub fn timing(phase: &str, since: Instant) {
    if timings_on() {
        // Resident memory after the phase: allocation (page faults) is a cost of its own.
        let rss_mib = fs_err::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| (pages * 4096) >> 20);
        eprintln!(
            "nosa-timing: {phase:<26} {:9.2} ms  rss {rss_mib:>5} MiB",
            since.elapsed().as_secs_f64() * 1e3
        );
    }
}

impl Engine {
    /// The engine for `workdir`, with its store at `store`.
    pub fn new(workdir: impl Into<PathBuf>, store: Store) -> Engine {
        let memory = crate::memtmp::default_base()
            .map(|base| crate::memtmp::store_dir_in(base, store.root()));
        Engine {
            workdir: workdir.into(),
            store,
            prefetched: Arc::default(),
            removals: Arc::default(),
            memory,
            remote: None,
            executor: None,
            farm: None,
        }
    }

    /// Asks `remote` before running a node, and hands it each node that ran.
    pub fn set_remote(&mut self, remote: Option<Arc<dyn crate::remote::RemoteCache>>) {
        self.remote = remote;
    }

    /// Hands the commands of rules that can run remotely to `executor` (a build farm).
    pub fn set_executor(&mut self, executor: Option<Arc<dyn crate::remote::RemoteExecutor>>) {
        self.executor = executor;
    }

    /// With an executor, also sends the nodes whose rules can run elsewhere
    /// ([`crate::Rule::portable`]) to the farm, as `program exec-node` (`program`: nosa's
    /// own binary, shipped in each input root; the worker must have the shared libraries it
    /// links).
    pub fn set_farm_program(&mut self, program: Option<PathBuf>) {
        self.farm = program.map(|p| Arc::new(crate::farm::FarmNodes::new(p)));
    }

    /// Puts memory scratch directories under `base` (a tmpfs, normally), or on disk under
    /// each run's scratch with `None`, instead of what `NOSA_MEMORY_TMP` or `/dev/shm` gave.
    pub fn with_memory_dir(mut self, base: Option<&Path>) -> Engine {
        self.memory = base.map(|b| crate::memtmp::store_dir_in(b, self.store.root()));
        self
    }

    /// Removes `dir` (a finished node's run directory) on the background remover thread
    /// (started on first use): the next node need not wait for it. One thread for all of
    /// them: a thread per node would keep 30,000 finished stacks mapped until joined, and
    /// every step's fork would copy their page tables. A build that dies first leaves the
    /// directories to `clear_stale_runs`.
    pub(crate) fn remove_later(&self, dir: PathBuf) {
        let mut slot = self.removals.lock().expect("removals");
        let r = slot.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
            let thread = std::thread::spawn(move || {
                for d in rx {
                    let _ = fs_err::remove_dir_all(&d);
                }
            });
            Remover { tx, thread }
        });
        if let Err(std::sync::mpsc::SendError(d)) = r.tx.send(dir) {
            let _ = fs_err::remove_dir_all(&d);
        }
    }

    /// Waits for every [`Engine::remove_later`] so far.
    fn finish_removals(&self) {
        let pending = self.removals.lock().expect("removals").take();
        if let Some(Remover { tx, thread }) = pending {
            drop(tx);
            let _ = thread.join();
        }
    }

    /// Starts reading the remembered state and the stat cache on a background thread, so
    /// that the next [`Engine::build`] finds them loaded (the caller meanwhile loads the
    /// graph). Call with the workdir lock held; the build that uses them holds it too, so
    /// nothing can change them in between.
    pub fn prefetch(&self) {
        let (state, stat) = (self.state_path(), self.stat_path());
        let handle = std::thread::spawn(move || (BuildState::load(&state), StatCache::load(&stat)));
        *self.prefetched.lock().expect("prefetch slot") = Some(handle);
    }

    /// The prefetched state and stat cache, or freshly loaded ones.
    fn state_and_stat(&self) -> (BuildState, StatCache) {
        let pending = self.prefetched.lock().expect("prefetch slot").take();
        match pending.map(std::thread::JoinHandle::join) {
            Some(Ok(loaded)) => loaded,
            _ => rayon::join(|| self.state(), || StatCache::load(&self.stat_path())),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The workdir.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.store.state_dir().join("graph.bin")
    }

    pub(crate) fn stat_path(&self) -> PathBuf {
        self.store.state_dir().join("stat.bin")
    }

    pub(crate) fn witness_path(&self) -> PathBuf {
        self.store.state_dir().join("noop.bin")
    }

    /// If the no-op witness recorded for selection `key` still holds (every path it observed
    /// has its recorded stamp), what the build it stands for reported: the ids of the nodes a
    /// build would now report cached, in the order it would report them, and its note.
    /// `None`: build normally. Call with the workdir lock held.
    pub fn check_witness(&self, key: &Digest) -> Option<Witnessed> {
        witness::check(&self.witness_path(), key)
    }

    /// Writes the no-op witness for selection `key` from `draft`, unless it was spoiled or
    /// an observed path changed within the racy window of `since` (when observation started:
    /// before anything observed was read) or later. `ids`: the nodes the invocation reported,
    /// in report order; `note`: a line it printed before its summary. Call last, after every
    /// build and write of the invocation, with the workdir lock held. Returns whether a
    /// witness was written.
    pub fn seal_witness<'a>(
        &self,
        draft: &WitnessDraft,
        key: &Digest,
        since: std::time::SystemTime,
        ids: impl ExactSizeIterator<Item = &'a str>,
        note: Option<&str>,
    ) -> bool {
        let Some((mut trace, shards)) = draft.take() else {
            return false;
        };
        let t = Instant::now();
        // A hit needs its action record. Records are only added or removed, each changing its
        // shard directory's stamp.
        for s in shards {
            if !trace.stat_now(&self.store.action_shard_dir(s), false, false) {
                return false;
            }
        }
        // Any other writer of the state (a build, prune) replaces it, so a new inode.
        if !trace.stat_now(&self.state_path(), false, true) {
            return false;
        }
        let written = witness::write(
            &self.witness_path(),
            &self.store.tmp_dir(),
            key,
            since,
            &trace,
            ids,
            note,
        );
        timing("build: write witness", t);
        written
    }

    /// Drops the no-op witness: for anything that changes the store or the state other than
    /// through [`Engine::build`] and [`Engine::save_state`], which drop it themselves.
    pub fn forget_witness(&self) -> Result<(), EngineError> {
        match fs_err::remove_file(self.witness_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The remembered state.
    pub fn state(&self) -> BuildState {
        BuildState::load(&self.state_path())
    }

    /// Replaces the remembered state (atomically).
    pub fn save_state(&self, state: &BuildState) -> Result<(), EngineError> {
        // A state read ahead is now stale: the next build reads the new one.
        if let Some(pending) = self.prefetched.lock().expect("prefetch slot").take() {
            let _ = pending.join();
        }
        self.forget_witness()?;
        Ok(state.save(&self.state_path(), &self.store.tmp_dir())?)
    }

    /// Builds `targets` (node indices) and everything they depend on: resolves and hashes
    /// the selection's inputs, speculates its keys ([`crate::decide`]), schedules it
    /// ([`crate::schedule`]) and records the outcome ([`crate::record`]).
    pub fn build(
        &self,
        graph: &Graph,
        targets: &[usize],
        opts: &BuildOptions,
        obs: &mut dyn Observer,
    ) -> Result<BuildReport, EngineError> {
        let t0 = Instant::now();
        // Whatever this build does, the last witness no longer describes the workdir (a build
        // killed half-way must not leave one behind).
        self.forget_witness()?;
        self.clear_stale_runs()?;
        let mut trace = opts.witness.as_ref().map(|_| Trace::default());
        let sel = Selection::new(graph, targets);
        timing("build: select nodes", t0);

        let t = Instant::now();
        let (mut state, mut stat) = self.state_and_stat();
        timing("build: load state, stat cache", t);
        let t = Instant::now();
        let specs: Vec<_> = sel
            .nodes
            .par_iter()
            .map(|&g| graph.node(g).rule.inputs())
            .collect();
        let mut inputs = resolve_inputs_traced(&self.workdir, &specs, &mut stat, trace.as_mut());
        timing("build: resolve inputs", t);
        if !opts.continue_build || state.build == 0 {
            state.build += 1;
        }
        let build_no = state.build;

        let t = Instant::now();
        let spec = self.speculate(graph, &sel, &state, &inputs, &opts.force);
        timing("build: speculate keys", t);

        let t = Instant::now();
        let done = Scheduler::new(graph, &sel, opts.keep_going, obs).run(
            self,
            &state,
            &spec,
            &mut inputs,
            opts,
        );
        timing("build: schedule and run", t);
        let t = Instant::now();
        self.finish_removals();
        timing("build: finish removing run dirs", t);

        let left = Leftovers {
            state,
            stat,
            trace,
            build_no,
        };
        let recorded = self.record(graph, &sel, done, left, opts);
        // Freeing tens of thousands of small allocations is measurable at this scale; let a
        // short-lived thread do it while the caller reports.
        std::thread::spawn(move || drop((inputs, specs)));
        let mut report = recorded?;
        report.ms = t0.elapsed().as_millis() as u64;
        Ok(report)
    }
}
