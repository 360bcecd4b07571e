//! The executor: computes each node's key when its dependencies are done, reuses cached outputs,
//! runs the rest on a pool of worker threads, stops propagation when an output is unchanged
//! (early cutoff), and records state, logs and materialized outputs.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use nosa_cache::{
    ActionRecord, Component, ComponentKind, Digest, EntryKind, FxBuildHasher, StatCache, Store,
    hash_file,
};
use rayon::prelude::*;

use crate::graph::Graph;
use crate::inputs::resolve_inputs_traced;
use crate::key::{Params, key_of, key_of_parts, rule_component, rule_digest, sort_components};
use crate::node::{DepOutput, InputFile, MaterializeTo, Rule, RunContext, RunError};
use crate::queue::DependencyQueue;
use crate::reason::{Reason, diff};
use crate::state::{BuildState, Good, NodeState, Status};
use crate::witness::{self, Trace};

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
    /// keeps its build number, and a node it finds cached that already ran in that build keeps
    /// the status and reasons recorded then, so `why` still explains the run.
    pub continue_build: bool,
    /// Record a no-op witness for this selection if every node turns out cached (see
    /// [`WitnessRequest`]).
    pub witness: Option<WitnessRequest>,
}

/// Asks a build to leave a no-op witness (`crate::witness`) behind if every node is cached.
/// The caller vouches that the graph and the selection are a function of `key` and of the
/// paths in `observed` alone (for example: a build file without `[nestos]`, whose stamp is
/// observed, and the target names).
#[derive(Clone, Debug)]
pub struct WitnessRequest {
    /// Names the selection: the executable, the build file, the target names.
    pub key: Digest,
    /// When observation started: before anything recorded was read. A recorded path modified
    /// since (or within the racy window before) makes the build leave no witness.
    pub since: std::time::SystemTime,
    /// Paths the caller read before the build (the build file), with their metadata taken
    /// before reading them.
    pub observed: Vec<(PathBuf, std::fs::Metadata)>,
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
    workdir: PathBuf,
    store: Store,
    /// The state and stat cache, being read ahead by [`Engine::prefetch`].
    prefetched: Arc<Mutex<Option<Prefetch>>>,
}

/// What the coordinator decided for a ready node.
pub(crate) enum Decision {
    Hit(Good),
    Run {
        key: Digest,
        components: Vec<Component>,
        reasons: Vec<Reason>,
    },
}

struct Job {
    local: usize,
    id: String,
    rule: Arc<dyn Rule>,
    inputs: Vec<InputFile>,
    deps: Vec<DepOutput>,
    key: Digest,
    components: Vec<Component>,
    /// The node's last good output tree (a hint, see [`RunContext::previous`]).
    previous: Option<Digest>,
}

/// The outcome of [`Engine::check_materialized`].
struct Intact {
    intact: bool,
    /// The files compared, with their stamps (only when a witness is being recorded).
    seen: Vec<(PathBuf, std::fs::Metadata)>,
    /// Files hashed on the way (not vouched for by the stat cache): path, stamp, digest.
    hashed: Vec<(PathBuf, std::fs::Metadata, Digest)>,
}

struct JobDone {
    local: usize,
    result: Result<ActionRecord, String>,
    log: PathBuf,
}

/// Prints how long a phase took (since `since`) on stderr when `NOSA_TIMINGS` is set: a cheap
/// profile of the no-op path, left in on purpose.
pub fn timing(phase: &str, since: Instant) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("NOSA_TIMINGS").is_some()) {
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

impl Engine {
    /// The engine for `workdir`, with its store at `store`.
    pub fn new(workdir: impl Into<PathBuf>, store: Store) -> Engine {
        Engine {
            workdir: workdir.into(),
            store,
            prefetched: Arc::default(),
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

    fn witness_path(&self) -> PathBuf {
        self.store.state_dir().join("noop.bin")
    }

    /// If the no-op witness recorded for selection `key` still holds (every path it observed
    /// has its recorded stamp), the ids of the nodes a build would now report cached, in the
    /// order it would report them. `None`: build normally. Call with the workdir lock held.
    pub fn check_witness(&self, key: &Digest) -> Option<Vec<String>> {
        witness::check(&self.witness_path(), key)
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

    /// Key components of node `i` given its resolved inputs and its dependencies' outputs.
    pub(crate) fn components(
        rule: &dyn Rule,
        inputs: &[InputFile],
        deps: &[DepOutput],
    ) -> Vec<Component> {
        let mut p = Params::default();
        rule.params(&mut p);
        let mut c = vec![rule_component(rule.kind(), rule.version())];
        c.extend(p.items);
        c.extend(inputs.iter().map(|f| Component {
            kind: ComponentKind::Input,
            name: f.rel.clone(),
            digest: f.digest,
            preview: None,
        }));
        c.extend(deps.iter().map(|d| Component {
            kind: ComponentKind::Dep,
            name: d.id.clone(),
            digest: d.output,
            preview: None,
        }));
        sort_components(&mut c);
        c
    }

    /// The key [`Engine::components`] would give, computed without building the components
    /// (no names copied, no previews): for deciding, not for recording. `deps` are
    /// (node id, output digest).
    fn key_only(rule: &dyn Rule, inputs: &[InputFile], deps: &[(&str, Digest)]) -> Digest {
        let mut p = Params {
            key_only: true,
            ..Params::default()
        };
        rule.params(&mut p);
        let kind = rule.kind();
        let mut parts: Vec<(ComponentKind, &str, Digest)> =
            Vec::with_capacity(1 + p.items.len() + inputs.len() + deps.len());
        parts.push((ComponentKind::Rule, kind, rule_digest(kind, rule.version())));
        parts.extend(p.items.iter().map(|c| (c.kind, c.name.as_str(), c.digest)));
        parts.extend(
            inputs
                .iter()
                .map(|f| (ComponentKind::Input, f.rel.as_str(), f.digest)),
        );
        parts.extend(deps.iter().map(|&(id, out)| (ComponentKind::Dep, id, out)));
        // The order of `sort_components` (stable, by kind then name).
        parts.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        key_of_parts(&parts)
    }

    /// Decides whether a node whose dependencies are known must run.
    pub(crate) fn decide(
        &self,
        components: Vec<Component>,
        prev: Option<&NodeState>,
        force: bool,
    ) -> Decision {
        let key = key_of(&components);
        let prev_good = prev.and_then(|p| p.good);
        if !force {
            if let Some(g) = prev_good
                && g.key == key
                && self.action_exists(&key)
            {
                return Decision::Hit(g);
            }
            if let Some(rec) = self.store.get_action(&key) {
                return Decision::Hit(Good {
                    key,
                    output: rec.output,
                    tree: rec.tree,
                });
            }
        }
        let reasons = if force {
            vec![Reason::Forced]
        } else {
            match prev_good {
                None => vec![Reason::NeverBuilt],
                Some(g) if g.key == key => vec![Reason::CacheEntryMissing],
                Some(g) => match self.store.get_action(&g.key) {
                    Some(old) => diff(&old.components, &components),
                    None => vec![Reason::CacheEntryMissing],
                },
            }
        };
        Decision::Run {
            key,
            components,
            reasons,
        }
    }

    /// Which of `keys` have an action record, found with one directory listing per shard
    /// rather than one `stat` per key (a no-op build asks for every node). The workdir lock
    /// keeps records from disappearing while the build uses the answer.
    fn present_actions<'k>(
        &self,
        keys: impl Iterator<Item = &'k Digest>,
    ) -> HashSet<Digest, FxBuildHasher> {
        let mut shards: Vec<u8> = keys.map(|k| k.0[0]).collect();
        shards.sort_unstable();
        shards.dedup();
        let ac = self.store.root().join("ac");
        let lists: Vec<Vec<Digest>> = shards
            .par_iter()
            .map(|shard| {
                let Ok(dir) = fs_err::read_dir(ac.join(format!("{shard:02x}"))) else {
                    return Vec::new();
                };
                dir.filter_map(|e| {
                    let name = e.ok()?.file_name();
                    name.to_str()?.strip_suffix(".json")?.parse().ok()
                })
                .collect()
            })
            .collect();
        lists.into_iter().flatten().collect()
    }

    fn action_exists(&self, key: &Digest) -> bool {
        let hex = key.to_hex();
        let root = self.store.root().as_os_str();
        let mut p = std::ffi::OsString::with_capacity(root.len() + 80);
        p.push(root);
        p.push("/ac/");
        p.push(&hex[..2]);
        p.push("/");
        p.push(&hex);
        p.push(".json");
        Path::new(&p).exists()
    }

    /// Builds `targets` (node indices) and everything they depend on.
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
        let sel = graph.closure(targets);
        let mut local_of = vec![usize::MAX; graph.len()];
        for (l, &g) in sel.iter().enumerate() {
            local_of[g] = l;
        }
        let deps: Vec<Vec<usize>> = sel
            .iter()
            .map(|&g| graph.node(g).deps.iter().map(|&d| local_of[d]).collect())
            .collect();

        timing("build: select nodes", t0);
        let t = Instant::now();
        let (mut state, mut stat) = self.state_and_stat();
        timing("build: load state, stat cache", t);
        let t = Instant::now();
        let specs: Vec<_> = sel
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

        // Speculation, in parallel: in a no-op build nearly every node is a hit whose
        // dependencies kept the outputs they had last time. Assuming that, each node's key can
        // be computed before its dependencies are decided; the loop below takes a speculated
        // hit only when every dependency's output is indeed the one assumed, so the decision is
        // exactly the one `decide` would make (its first branch), just made earlier.
        let prev_goods: Vec<Option<Good>> = sel
            .iter()
            .map(|&g| state.nodes.get(&graph.node(g).id).and_then(|n| n.good))
            .collect();
        let present = self.present_actions(prev_goods.iter().flatten().map(|g| &g.key));
        timing("build: list action records", t);
        let t = Instant::now();
        let speculated: Vec<Option<Good>> = (0..sel.len())
            .into_par_iter()
            .map(|l| {
                let node = graph.node(sel[l]);
                let prev = prev_goods[l]?;
                if opts.force.contains(&node.id) {
                    return None;
                }
                let node_inputs = inputs[l].as_ref().ok()?;
                let dep_outputs = deps[l]
                    .iter()
                    .map(|&d| Some((graph.node(sel[d]).id.as_str(), prev_goods[d]?.output)))
                    .collect::<Option<Vec<_>>>()?;
                let key = Self::key_only(node.rule.as_ref(), node_inputs, &dep_outputs);
                (key == prev.key && present.contains(&prev.key)).then_some(prev)
            })
            .collect();
        timing("build: speculate keys", t);
        let t = Instant::now();

        obs.event(&Event::Start { total: sel.len() });
        let mut queue = DependencyQueue::new(&deps);
        let mut goods: Vec<Option<Good>> = vec![None; sel.len()];
        let mut statuses: Vec<Option<Status>> = vec![None; sel.len()];
        let mut previous: Vec<Option<Digest>> = vec![None; sel.len()];
        let mut pending_reasons: Vec<Vec<Reason>> = vec![Vec::new(); sel.len()];
        let mut report = BuildReport::default();
        let mut stopped = false;
        let jobs = opts.jobs.max(1);

        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<JobDone>();

        std::thread::scope(|s| -> Result<(), EngineError> {
            for _ in 0..jobs {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                s.spawn(move || {
                    loop {
                        let job = match rx.lock().expect("job queue").recv() {
                            Ok(j) => j,
                            Err(_) => break,
                        };
                        let done = self.run_job(job);
                        if tx.send(done).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut in_flight = 0usize;
            loop {
                while !stopped && in_flight < jobs {
                    let Some(l) = queue.pop() else { break };
                    let g = sel[l];
                    let node = graph.node(g);
                    // The speculated hit stands if every dependency kept its last output.
                    let hit = speculated[l].filter(|_| {
                        deps[l]
                            .iter()
                            .all(|&d| goods[d].map(|g| g.output) == prev_goods[d].map(|g| g.output))
                    });
                    // A hit does not need its inputs (a speculated hit had them all resolved).
                    let taken = match hit {
                        Some(_) => Ok(Vec::new()),
                        None => std::mem::replace(&mut inputs[l], Ok(Vec::new())),
                    };
                    let node_inputs = match taken {
                        Ok(v) => v,
                        Err(msg) => {
                            let r = NodeResult {
                                id: node.id.clone(),
                                status: Status::Failed,
                                ms: 0,
                                reasons: Vec::new(),
                                error: Some(msg),
                                log: None,
                            };
                            statuses[l] = Some(Status::Failed);
                            obs.event(&Event::Finished(&r));
                            report.nodes.push(r);
                            let skipped = queue.finish(l, false);
                            self.skip(&skipped, &sel, graph, &mut statuses, &mut report, obs);
                            if !opts.keep_going {
                                stopped = true;
                            }
                            continue;
                        }
                    };
                    let (decision, dep_outputs) = match hit {
                        Some(good) => (Decision::Hit(good), Vec::new()),
                        None => {
                            let dep_outputs: Vec<DepOutput> = deps[l]
                                .iter()
                                .map(|&d| {
                                    let good = goods[d].expect("dependency finished");
                                    DepOutput {
                                        id: graph.node(sel[d]).id.clone(),
                                        tree: good.tree,
                                        output: good.output,
                                    }
                                })
                                .collect();
                            let components =
                                Self::components(node.rule.as_ref(), &node_inputs, &dep_outputs);
                            let prev = state.nodes.get(&node.id);
                            previous[l] = prev.and_then(|p| p.good).map(|g| g.tree);
                            let force = opts.force.contains(&node.id);
                            (self.decide(components, prev, force), dep_outputs)
                        }
                    };
                    match decision {
                        Decision::Hit(good) => {
                            let cut = deps[l].iter().any(|&d| statuses[d] == Some(Status::Ran));
                            let status = if cut { Status::Cutoff } else { Status::Cached };
                            goods[l] = Some(good);
                            statuses[l] = Some(status);
                            let r = NodeResult {
                                id: node.id.clone(),
                                status,
                                ms: 0,
                                reasons: Vec::new(),
                                error: None,
                                log: None,
                            };
                            obs.event(&Event::Finished(&r));
                            report.nodes.push(r);
                            queue.finish(l, true);
                        }
                        Decision::Run {
                            key,
                            components,
                            reasons,
                        } => {
                            obs.event(&Event::Started { id: &node.id });
                            pending_reasons[l] = reasons;
                            in_flight += 1;
                            job_tx
                                .send(Job {
                                    local: l,
                                    id: node.id.clone(),
                                    rule: Arc::clone(&node.rule),
                                    inputs: node_inputs,
                                    deps: dep_outputs,
                                    key,
                                    components,
                                    previous: previous[l],
                                })
                                .expect("workers alive");
                        }
                    }
                }
                if in_flight == 0 && (stopped || queue.is_idle()) {
                    break;
                }
                let done = done_rx.recv().expect("a job is in flight");
                in_flight -= 1;
                let l = done.local;
                let id = graph.node(sel[l]).id.clone();
                match done.result {
                    Ok(rec) => {
                        goods[l] = Some(Good {
                            key: rec.key,
                            output: rec.output,
                            tree: rec.tree,
                        });
                        statuses[l] = Some(Status::Ran);
                        let r = NodeResult {
                            id,
                            status: Status::Ran,
                            ms: rec.ms,
                            reasons: std::mem::take(&mut pending_reasons[l]),
                            error: None,
                            log: Some(done.log),
                        };
                        obs.event(&Event::Finished(&r));
                        report.nodes.push(r);
                        queue.finish(l, true);
                    }
                    Err(msg) => {
                        statuses[l] = Some(Status::Failed);
                        let r = NodeResult {
                            id,
                            status: Status::Failed,
                            ms: 0,
                            reasons: std::mem::take(&mut pending_reasons[l]),
                            error: Some(msg),
                            log: Some(done.log),
                        };
                        obs.event(&Event::Finished(&r));
                        report.nodes.push(r);
                        let skipped = queue.finish(l, false);
                        self.skip(&skipped, &sel, graph, &mut statuses, &mut report, obs);
                        if !opts.keep_going {
                            stopped = true;
                        }
                    }
                }
            }
            drop(job_tx);
            if stopped {
                let rest = queue.drain_unstarted();
                self.skip(&rest, &sel, graph, &mut statuses, &mut report, obs);
            }
            Ok(())
        })?;

        timing("build: schedule and run", t);
        let t = Instant::now();
        // Remember the outcome and place outputs in the workdir.
        for r in &report.nodes {
            let l = local_of[graph.index_of(&r.id).expect("node of the graph")];
            if !state.nodes.contains_key(&r.id) {
                state.nodes.insert(
                    r.id.clone(),
                    NodeState {
                        good: None,
                        status: r.status,
                        reasons: Vec::new(),
                        ms: 0,
                        build: build_no,
                        error: None,
                        materialized: Vec::new(),
                        materialized_tree: None,
                    },
                );
            }
            let entry = state.nodes.get_mut(&r.id).expect("inserted above");
            if let Some(g) = goods[l] {
                entry.good = Some(g);
            }
            let ran_earlier_in_this_build = opts.continue_build
                && entry.build == build_no
                && matches!(entry.status, Status::Ran | Status::Failed);
            if ran_earlier_in_this_build && matches!(r.status, Status::Cached | Status::Cutoff) {
                continue;
            }
            entry.status = r.status;
            entry.build = build_no;
            entry.ms = r.ms;
            entry.error = r.error.clone();
            if r.status != Status::Skipped {
                entry.reasons = r.reasons.clone();
            }
            if let Some(g) = goods[l] {
                entry.good = Some(g);
            }
        }
        timing("build: update state", t);
        let t = Instant::now();
        let mut mat_error = None;
        let candidates: Vec<(&str, MaterializeTo, Digest)> = report
            .nodes
            .par_iter()
            .filter(|r| matches!(r.status, Status::Ran | Status::Cached | Status::Cutoff))
            .filter_map(|r| {
                let g = graph.index_of(&r.id).expect("node");
                let to = graph.node(g).rule.materialize()?;
                let good = goods[local_of[g]].expect("succeeded");
                Some((r.id.as_str(), to, good.tree))
            })
            .collect();
        // Which views in the workdir are intact: checked in parallel, through the stat cache.
        let checks: Vec<Intact> = {
            let (trusted, known) = (&stat, &state);
            let keep = trace.is_some();
            candidates
                .par_iter()
                .map(|(id, _, tree)| {
                    self.check_materialized(known.nodes.get(*id), *tree, trusted, keep)
                })
                .collect()
        };
        for ((id, to, tree), check) in candidates.iter().zip(checks) {
            for (p, meta, d) in &check.hashed {
                stat.insert(p, meta, *d);
            }
            if let Some(t) = trace.as_mut() {
                for (p, meta) in &check.seen {
                    t.stamp(p, meta, true);
                }
            }
            if check.intact {
                continue;
            }
            // A rewritten output: this build is not a no-op.
            trace = None;
            let entry = state.nodes.get_mut(*id).expect("recorded above");
            if let Err(e) = self.materialize(to, *tree, entry) {
                mat_error.get_or_insert(e);
            }
        }
        timing("build: check materialized", t);
        let t = Instant::now();
        // The three files are independent: write (and fsync) them at once.
        let tmp = self.store.tmp_dir();
        let ((saved_state, saved_stat), logged) = rayon::join(
            || {
                rayon::join(
                    || state.save(&self.state_path(), &tmp),
                    || stat.save(&self.stat_path(), &tmp),
                )
            },
            || self.write_log(&report),
        );
        saved_state?;
        saved_stat?;
        logged?;
        timing("build: save state, stat cache, log", t);
        if let (Some(req), Some(trace)) = (&opts.witness, trace)
            && mat_error.is_none()
            && report.nodes.iter().all(|r| r.status == Status::Cached)
        {
            let t = Instant::now();
            self.write_witness(req, trace, &goods, &report);
            timing("build: write witness", t);
        }
        // Freeing tens of thousands of small allocations is measurable at this scale; let a
        // short-lived thread do it while the caller reports.
        std::thread::spawn(move || drop((state, stat, inputs, specs)));
        if let Some(e) = mat_error {
            return Err(e);
        }
        report.ms = t0.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn skip(
        &self,
        locals: &[usize],
        sel: &[usize],
        graph: &Graph,
        statuses: &mut [Option<Status>],
        report: &mut BuildReport,
        obs: &mut dyn Observer,
    ) {
        for &l in locals {
            statuses[l] = Some(Status::Skipped);
            let r = NodeResult {
                id: graph.node(sel[l]).id.clone(),
                status: Status::Skipped,
                ms: 0,
                reasons: Vec::new(),
                error: None,
                log: None,
            };
            obs.event(&Event::Finished(&r));
            report.nodes.push(r);
        }
    }

    /// Whether the files last placed in the workdir from tree `tree` are all still there with
    /// the content they were placed with. Files the stat cache cannot vouch for are hashed;
    /// their digests are returned for the caller to remember.
    fn check_materialized(
        &self,
        entry: Option<&NodeState>,
        tree: Digest,
        stat: &StatCache,
        keep_stamps: bool,
    ) -> Intact {
        let mut check = Intact {
            intact: false,
            seen: Vec::new(),
            hashed: Vec::new(),
        };
        let Some(entry) = entry else { return check };
        if entry.materialized.is_empty() || entry.materialized_tree != Some(tree) {
            return check;
        }
        for (p, d) in &entry.materialized {
            let abs = self.workdir.join(p);
            let Ok(meta) = fs_err::metadata(&abs) else {
                return check;
            };
            let actual = match stat.lookup(&abs, &meta) {
                Some(x) => x,
                None => match hash_file(&abs) {
                    Ok(x) => {
                        check.hashed.push((abs.clone(), meta.clone(), x));
                        x
                    }
                    Err(_) => return check,
                },
            };
            if keep_stamps {
                check.seen.push((abs, meta));
            }
            if actual != *d {
                return check;
            }
        }
        check.intact = true;
        check
    }

    /// Places a node's output (tree `tree_digest`) in the workdir and records what was placed.
    fn materialize(
        &self,
        to: &MaterializeTo,
        tree_digest: Digest,
        entry: &mut NodeState,
    ) -> Result<(), EngineError> {
        let dir = self.workdir.join(&to.dir);
        let prefix = to.dir.to_string_lossy().trim_end_matches('/').to_string();
        let rel = |p: &str| {
            if prefix.is_empty() || prefix == "." {
                p.to_string()
            } else {
                format!("{prefix}/{p}")
            }
        };
        let tree = self.store.get_tree(&tree_digest)?;
        self.store.materialize(&tree, &dir, to.how)?;
        entry.materialized = tree
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { digest, .. } => Some((rel(&e.path), digest)),
                _ => None,
            })
            .collect();
        entry.materialized_tree = Some(tree_digest);
        Ok(())
    }

    /// Completes `trace` with what the decisions also rested on (the action records' shard
    /// directories, the caller's observations, the state file just written) and writes the
    /// witness; it refuses racy observations (see `crate::witness::write`).
    fn write_witness(
        &self,
        req: &WitnessRequest,
        mut trace: Trace,
        goods: &[Option<Good>],
        report: &BuildReport,
    ) {
        for (p, meta) in &req.observed {
            trace.stamp(p, meta, true);
        }
        // A hit needs its action record. Records are only added or removed, each changing its
        // shard directory's stamp.
        let mut shards: Vec<u8> = goods.iter().flatten().map(|g| g.key.0[0]).collect();
        shards.sort_unstable();
        shards.dedup();
        let ac = self.store.root().join("ac");
        for s in shards {
            if !trace.stat_now(&ac.join(format!("{s:02x}")), false, false) {
                return;
            }
        }
        // Any other writer of the state (a build, prune) replaces it, so a new inode.
        if !trace.stat_now(&self.state_path(), false, true) {
            return;
        }
        witness::write(
            &self.witness_path(),
            &self.store.tmp_dir(),
            &req.key,
            req.since,
            &trace,
            report.nodes.iter().map(|n| n.id.as_str()),
        );
    }

    fn clear_stale_runs(&self) -> Result<(), EngineError> {
        for e in fs_err::read_dir(self.store.tmp_dir())? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("run-") {
                let _ = fs_err::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    fn write_log(&self, report: &BuildReport) -> Result<(), EngineError> {
        let mut out = Vec::new();
        for n in &report.nodes {
            serde_json::to_writer(&mut out, n).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        nosa_cache::atomic::write_atomic(
            &self.store.tmp_dir(),
            &self.store.state_dir().join("last-build.jsonl"),
            &out,
        )?;
        Ok(())
    }

    /// Runs one node in a fresh directory and commits its output to the store.
    fn run_job(&self, job: Job) -> JobDone {
        let log = self
            .store
            .logs_dir()
            .join(format!("{}.log", file_name_for(&job.id)));
        let result = self.run_job_inner(&job, &log);
        JobDone {
            local: job.local,
            result: result.map_err(|e| e.to_string()),
            log,
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
        let mut log = fs_err::File::create(log_path)?;
        writeln!(log, "# nosa: {} (key {})", job.id, job.key.short())?;
        let t0 = Instant::now();
        let run = {
            let mut ctx = RunContext {
                node: &job.id,
                inputs: &job.inputs,
                deps: &job.deps,
                out: out.clone(),
                scratch: scratch.clone(),
                log: &mut log,
                previous: job.previous,
                store: &self.store,
                log_path: log_path.to_path_buf(),
            };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.rule.run(&mut ctx)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    Err(RunError::msg(format!("rule panicked: {msg}")))
                })
        };
        let ms = t0.elapsed().as_millis() as u64;
        if let Err(e) = run {
            let _ = writeln!(log, "# nosa: failed: {e}");
            let _ = fs_err::remove_dir_all(&base);
            return Err(e);
        }
        let equivalence = job.rule.equivalence_digest(&out);
        let (tree, _) = self.store.ingest_dir(&out, true)?;
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
            ms,
            finished: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.store.put_action(&rec)?;
        let _ = fs_err::remove_dir_all(&base);
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;
    impl Rule for Sample {
        fn kind(&self) -> &str {
            "sample"
        }
        fn version(&self) -> u32 {
            3
        }
        fn params(&self, p: &mut Params) {
            p.add("zeta", "z").add("alpha", &vec!["a".to_string()]);
        }
        fn run(&self, _: &mut RunContext<'_>) -> Result<(), RunError> {
            Ok(())
        }
    }

    #[test]
    fn speculative_key_is_the_key() {
        let file = |rel: &str| InputFile {
            rel: rel.into(),
            abs: PathBuf::from("/w").join(rel),
            digest: Digest::of(rel.as_bytes()),
            symlink: false,
        };
        let inputs = vec![file("b/x"), file("a.txt")];
        let deps = vec![
            DepOutput {
                id: "step:z".into(),
                tree: Digest::of(b"t1"),
                output: Digest::of(b"o1"),
            },
            DepOutput {
                id: "step:a".into(),
                tree: Digest::of(b"t2"),
                output: Digest::of(b"o2"),
            },
        ];
        let full = key_of(&Engine::components(&Sample, &inputs, &deps));
        let parts: Vec<(&str, Digest)> = deps.iter().map(|d| (d.id.as_str(), d.output)).collect();
        assert_eq!(Engine::key_only(&Sample, &inputs, &parts), full);
    }
}
