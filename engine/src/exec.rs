//! The executor: computes each node's key when its dependencies are done, reuses cached outputs,
//! runs the rest on a pool of worker threads, stops propagation when an output is unchanged
//! (early cutoff), and records state, logs and materialized outputs.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use nosa_cache::{ActionRecord, Component, ComponentKind, Digest, EntryKind, StatCache, Store};

use crate::graph::Graph;
use crate::inputs::resolve_inputs;
use crate::key::{Params, key_of, rule_component, sort_components};
use crate::node::{DepOutput, InputFile, Rule, RunContext, RunError};
use crate::queue::DependencyQueue;
use crate::reason::{Reason, diff};
use crate::state::{BuildState, Good, NodeState, Status};

/// How to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Worker threads (nodes run at once).
    pub jobs: usize,
    /// Finish independent nodes after a failure.
    pub keep_going: bool,
    /// Node ids to run even if cached.
    pub force: HashSet<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            keep_going: false,
            force: HashSet::new(),
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

/// The engine for one workdir.
#[derive(Debug, Clone)]
pub struct Engine {
    workdir: PathBuf,
    store: Store,
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
}

struct JobDone {
    local: usize,
    result: Result<ActionRecord, String>,
    log: PathBuf,
}

/// File name for a node id (`:` and `/` replaced).
pub fn file_name_for(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.+".contains(c) { c } else { '_' })
        .collect()
}

impl Engine {
    /// The engine for `workdir`, with its store at `store`.
    pub fn new(workdir: impl Into<PathBuf>, store: Store) -> Engine {
        Engine {
            workdir: workdir.into(),
            store,
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
        self.store.state_dir().join("graph.json")
    }

    pub(crate) fn stat_path(&self) -> PathBuf {
        self.store.state_dir().join("stat.bin")
    }

    /// The remembered state.
    pub fn state(&self) -> BuildState {
        BuildState::load(&self.state_path())
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

    fn action_exists(&self, key: &Digest) -> bool {
        let hex = key.to_hex();
        self.store
            .root()
            .join("ac")
            .join(&hex[..2])
            .join(format!("{hex}.json"))
            .exists()
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
        self.clear_stale_runs()?;
        let sel = graph.closure(targets);
        let mut local_of = vec![usize::MAX; graph.len()];
        for (l, &g) in sel.iter().enumerate() {
            local_of[g] = l;
        }
        let deps: Vec<Vec<usize>> = sel
            .iter()
            .map(|&g| graph.node(g).deps.iter().map(|&d| local_of[d]).collect())
            .collect();

        let mut state = self.state();
        state.build += 1;
        let build_no = state.build;
        let mut stat = StatCache::load(&self.stat_path());
        let specs: Vec<_> = sel.iter().map(|&g| graph.node(g).rule.inputs()).collect();
        let mut inputs = resolve_inputs(&self.workdir, &specs, &mut stat);

        obs.event(&Event::Start { total: sel.len() });
        let mut queue = DependencyQueue::new(&deps);
        let mut goods: Vec<Option<Good>> = vec![None; sel.len()];
        let mut statuses: Vec<Option<Status>> = vec![None; sel.len()];
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
                    let node_inputs = match std::mem::replace(&mut inputs[l], Ok(Vec::new())) {
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
                    match self.decide(components, prev, opts.force.contains(&node.id)) {
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

        // Remember the outcome and place outputs in the workdir.
        for r in &report.nodes {
            let l = local_of[graph.index_of(&r.id).expect("node of the graph")];
            let entry = state.nodes.entry(r.id.clone()).or_insert(NodeState {
                good: None,
                status: r.status,
                reasons: Vec::new(),
                ms: 0,
                build: build_no,
                error: None,
                materialized: Vec::new(),
                materialized_tree: None,
            });
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
        let mut mat_error = None;
        for r in &report.nodes {
            if !matches!(r.status, Status::Ran | Status::Cached | Status::Cutoff) {
                continue;
            }
            let g = graph.index_of(&r.id).expect("node");
            let Some(to) = graph.node(g).rule.materialize() else {
                continue;
            };
            let good = goods[local_of[g]].expect("succeeded");
            let entry = state.nodes.get_mut(&r.id).expect("recorded above");
            if let Err(e) = self.materialize(&to, good.tree, entry, &mut stat) {
                mat_error.get_or_insert(e);
            }
        }
        state.save(&self.state_path(), &self.store.tmp_dir())?;
        stat.save(&self.stat_path(), &self.store.tmp_dir())?;
        self.write_log(&report)?;
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

    /// Places a node's output in the workdir, unless what is there already matches it.
    fn materialize(
        &self,
        to: &crate::node::MaterializeTo,
        tree_digest: Digest,
        entry: &mut NodeState,
        stat: &mut StatCache,
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
        let intact = !entry.materialized.is_empty()
            && entry.materialized.iter().all(|(p, d)| {
                stat.digest(&self.workdir.join(p)).ok() == Some(*d)
            });
        if intact && entry.materialized_tree == Some(tree_digest) {
            return Ok(());
        }
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
        let log = self.store.logs_dir().join(format!("{}.log", file_name_for(&job.id)));
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
