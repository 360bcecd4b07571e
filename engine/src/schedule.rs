//! The scheduler of one build: releases nodes as their dependencies finish, takes hits, sends
//! the rest to worker threads, and owns every node's status. Every outcome (hit, run, failure,
//! skip) goes through one finish path, which emits the event and fills the report.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use crate::decide::{Decision, Selection, Speculation, components};
use crate::exec::{BuildOptions, BuildReport, Engine, Event, NodeResult, Observer};
use crate::graph::Graph;
use crate::node::{DepOutput, InputFile};
use crate::queue::DependencyQueue;
use crate::reason::Reason;
use crate::run::{Job, JobDone};
use crate::state::{BuildState, Good, Status};

/// How one node ended, before it becomes a [`NodeResult`].
struct Outcome {
    status: Status,
    good: Option<Good>,
    ms: u64,
    error: Option<String>,
    log: Option<PathBuf>,
    note: Option<String>,
    reused: bool,
    farm: Option<String>,
}

impl Outcome {
    fn hit(status: Status, good: Good) -> Outcome {
        Outcome {
            status,
            good: Some(good),
            ms: 0,
            error: None,
            log: None,
            note: None,
            reused: false,
            farm: None,
        }
    }

    fn failed(error: String, log: Option<PathBuf>) -> Outcome {
        Outcome {
            status: Status::Failed,
            good: None,
            ms: 0,
            error: Some(error),
            log,
            note: None,
            reused: false,
            farm: None,
        }
    }

    const SKIPPED: Outcome = Outcome {
        status: Status::Skipped,
        good: None,
        ms: 0,
        error: None,
        log: None,
        note: None,
        reused: false,
        farm: None,
    };
}

/// What a finished build leaves for recording.
pub(crate) struct Scheduled {
    /// Node results in completion order.
    pub report: BuildReport,
    /// The local number of each of `report.nodes`, in the same order.
    pub order: Vec<usize>,
    /// Each node's output, where it has one.
    pub goods: Vec<Option<Good>>,
}

/// The statuses of one build's nodes while it runs.
pub(crate) struct Scheduler<'a> {
    graph: &'a Graph,
    sel: &'a Selection,
    obs: &'a mut dyn Observer,
    keep_going: bool,
    queue: DependencyQueue,
    goods: Vec<Option<Good>>,
    statuses: Vec<Option<Status>>,
    /// Why each running node runs (moved into its result when it ends).
    reasons: Vec<Vec<Reason>>,
    report: BuildReport,
    order: Vec<usize>,
    /// A failure without `keep_going`: start nothing new.
    stopped: bool,
}

impl<'a> Scheduler<'a> {
    pub fn new(
        graph: &'a Graph,
        sel: &'a Selection,
        keep_going: bool,
        obs: &'a mut dyn Observer,
    ) -> Scheduler<'a> {
        let n = sel.len();
        Scheduler {
            graph,
            sel,
            obs,
            keep_going,
            queue: DependencyQueue::new(&sel.deps),
            goods: vec![None; n],
            statuses: vec![None; n],
            reasons: vec![Vec::new(); n],
            report: BuildReport::default(),
            order: Vec::with_capacity(n),
            stopped: false,
        }
    }

    fn id(&self, l: usize) -> &'a str {
        &self.graph.node(self.sel.nodes[l]).id
    }

    /// The one finish path: records node `l`'s outcome, tells the observer, and releases its
    /// dependents, or, if it failed, skips them (and stops the build unless `keep_going`).
    fn finish(&mut self, l: usize, o: Outcome) {
        let failed = o.status == Status::Failed;
        self.record(l, o);
        if failed {
            for s in self.queue.finish(l, false) {
                self.record(s, Outcome::SKIPPED);
            }
            if !self.keep_going {
                self.stopped = true;
            }
        } else {
            self.queue.finish(l, true);
        }
    }

    /// Node `l`'s result: its status and output, the event, the report entry.
    fn record(&mut self, l: usize, o: Outcome) {
        self.statuses[l] = Some(o.status);
        if o.good.is_some() {
            self.goods[l] = o.good;
        }
        let r = NodeResult {
            id: self.id(l).to_string(),
            status: o.status,
            ms: o.ms,
            reasons: std::mem::take(&mut self.reasons[l]),
            error: o.error,
            log: o.log,
            note: o.note,
            reused: o.reused,
            farm: o.farm,
        };
        self.obs.event(&Event::Finished(&r));
        self.report.nodes.push(r);
        self.order.push(l);
    }

    /// A hit: cached, or cut off when a dependency ran in this build.
    fn hit(&mut self, l: usize, good: Good) {
        let cut = self.sel.deps[l]
            .iter()
            .any(|&d| self.statuses[d] == Some(Status::Ran));
        let status = if cut { Status::Cutoff } else { Status::Cached };
        self.finish(l, Outcome::hit(status, good));
    }

    /// Decides ready node `l`: a hit or a failure to resolve its inputs finishes it here;
    /// otherwise the job to run it.
    fn start(
        &mut self,
        engine: &Engine,
        l: usize,
        state: &BuildState,
        spec: &Speculation,
        inputs: &mut [Result<Vec<InputFile>, String>],
        opts: &BuildOptions,
    ) -> Option<Job> {
        // A speculated hit had all its inputs resolved, and needs nothing else.
        if let Some(good) = spec.hit(l, self.sel, &self.goods) {
            self.hit(l, good);
            return None;
        }
        let node = self.graph.node(self.sel.nodes[l]);
        let node_inputs = match std::mem::replace(&mut inputs[l], Ok(Vec::new())) {
            Ok(v) => v,
            Err(msg) => {
                self.finish(l, Outcome::failed(msg, None));
                return None;
            }
        };
        let dep_outputs: Vec<DepOutput> = self.sel.deps[l]
            .iter()
            .map(|&d| {
                let good = self.goods[d].expect("dependency finished");
                DepOutput {
                    id: self.id(d).to_string(),
                    tree: good.tree,
                    output: good.output,
                }
            })
            .collect();
        let c = components(node.rule.as_ref(), &node_inputs, &dep_outputs);
        let prev = state.nodes.get(&node.id);
        let force = opts.force.contains(&node.id);
        match engine.decide(c, prev, force) {
            Decision::Hit(good) => {
                self.hit(l, good);
                None
            }
            Decision::Run {
                key,
                components,
                reasons,
            } => {
                self.obs.event(&Event::Started { id: &node.id });
                self.reasons[l] = reasons;
                Some(Job {
                    local: l,
                    id: node.id.clone(),
                    rule: Arc::clone(&node.rule),
                    inputs: node_inputs,
                    deps: dep_outputs,
                    key,
                    components,
                    previous: prev.and_then(|p| p.good).map(|g| g.tree),
                    // A forced run really runs: no memo to replay.
                    previous_key: prev.and_then(|p| p.good).map(|g| g.key).filter(|_| !force),
                    remote_ok: !force,
                })
            }
        }
    }

    /// A worker's result for a job.
    fn done(&mut self, done: JobDone) {
        if let Some(r) = done.remote_miss {
            self.reasons[done.local].push(r);
        }
        let o = match done.result {
            Ok(rec) if done.remote_ms.is_some() => Outcome {
                status: Status::Remote,
                good: Some(Good {
                    key: rec.key,
                    output: rec.output,
                    tree: rec.tree,
                }),
                ms: done.remote_ms.unwrap_or_default(),
                error: None,
                log: Some(done.log),
                note: Some("from the remote cache".into()),
                reused: false,
                farm: None,
            },
            Ok(rec) => Outcome {
                status: Status::Ran,
                good: Some(Good {
                    key: rec.key,
                    output: rec.output,
                    tree: rec.tree,
                }),
                ms: rec.ms,
                error: None,
                log: Some(done.log),
                note: rec.note,
                reused: rec.reused,
                farm: rec.farm,
            },
            Err(msg) => Outcome::failed(msg, Some(done.log)),
        };
        self.finish(done.local, o);
    }

    /// Runs the build to its end on `opts.jobs` worker threads.
    pub fn run(
        mut self,
        engine: &Engine,
        state: &BuildState,
        spec: &Speculation,
        inputs: &mut [Result<Vec<InputFile>, String>],
        opts: &BuildOptions,
    ) -> Scheduled {
        self.obs.event(&Event::Start {
            total: self.sel.len(),
        });
        let jobs = opts.jobs.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<JobDone>();
        std::thread::scope(|s| {
            for _ in 0..jobs {
                let rx = Arc::clone(&job_rx);
                let tx = done_tx.clone();
                s.spawn(move || {
                    loop {
                        let job = match rx.lock().expect("job queue").recv() {
                            Ok(j) => j,
                            Err(_) => break,
                        };
                        if tx.send(engine.run_job(job)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut in_flight = 0usize;
            loop {
                while !self.stopped && in_flight < jobs {
                    let Some(l) = self.queue.pop() else { break };
                    if let Some(job) = self.start(engine, l, state, spec, inputs, opts) {
                        in_flight += 1;
                        job_tx.send(job).expect("workers alive");
                    }
                }
                if in_flight == 0 && (self.stopped || self.queue.is_idle()) {
                    break;
                }
                let done = done_rx.recv().expect("a job is in flight");
                in_flight -= 1;
                self.done(done);
            }
            drop(job_tx);
        });
        if self.stopped {
            for l in self.queue.drain_unstarted() {
                self.record(l, Outcome::SKIPPED);
            }
        }
        Scheduled {
            report: self.report,
            order: self.order,
            goods: self.goods,
        }
    }
}
