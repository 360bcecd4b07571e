//! Recording a build: the remembered state (statuses, outputs, reasons), outputs placed in
//! the workdir when their views there are not intact, the state, stat cache and build log
//! saved, and the no-op witness when every node was cached.

use std::path::PathBuf;
use std::time::Instant;

use nosa_cache::{Digest, EntryKind, StatCache, hash_file};
use rayon::prelude::*;

use crate::decide::Selection;
use crate::exec::{BuildOptions, BuildReport, Engine, EngineError, timing};
use crate::graph::Graph;
use crate::node::MaterializeTo;
use crate::schedule::Scheduled;
use crate::state::{BuildState, NodeState, Status};
use crate::witness::Trace;

/// The outcome of [`Engine::check_materialized`].
struct Intact {
    intact: bool,
    /// The files compared, with their stamps (only when a witness is being recorded).
    seen: Vec<(PathBuf, std::fs::Metadata)>,
    /// Files hashed on the way (not vouched for by the stat cache): path, stamp, digest.
    hashed: Vec<(PathBuf, std::fs::Metadata, Digest)>,
}

/// What a build leaves to record, besides the scheduler's results.
pub(crate) struct Leftovers {
    pub state: BuildState,
    pub stat: StatCache,
    pub trace: Option<Trace>,
    pub build_no: u64,
}

impl Engine {
    /// Records a finished build (see the module doc) and returns its report.
    pub(crate) fn record(
        &self,
        graph: &Graph,
        sel: &Selection,
        done: Scheduled,
        left: Leftovers,
        opts: &BuildOptions,
    ) -> Result<BuildReport, EngineError> {
        let Scheduled {
            report,
            order,
            goods,
        } = done;
        let Leftovers {
            mut state,
            mut stat,
            mut trace,
            build_no,
        } = left;
        let t = Instant::now();
        // Remember the outcome and place outputs in the workdir.
        for (r, &l) in report.nodes.iter().zip(&order) {
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
                && matches!(entry.status, Status::Ran | Status::Remote | Status::Failed);
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
        }
        timing("build: update state", t);
        let t = Instant::now();
        let mut mat_error = None;
        let candidates: Vec<(&str, MaterializeTo, Digest)> = report
            .nodes
            .par_iter()
            .zip(&order)
            .filter(|(r, _)| {
                matches!(
                    r.status,
                    Status::Ran | Status::Cached | Status::Cutoff | Status::Remote
                )
            })
            .filter_map(|(r, &l)| {
                let to = graph.node(sel.nodes[l]).rule.materialize()?;
                let good = goods[l].expect("succeeded");
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
        if let Some(draft) = &opts.witness {
            match trace {
                Some(trace)
                    if mat_error.is_none()
                        && report.nodes.iter().all(|r| r.status == Status::Cached) =>
                {
                    draft.absorb(trace, goods.iter().flatten().map(|g| g.key.0[0]));
                }
                _ => draft.spoil(),
            }
        }
        // Freeing the state's allocations is measurable at this scale (see `Engine::build`).
        std::thread::spawn(move || drop((state, stat)));
        if let Some(e) = mat_error {
            return Err(e);
        }
        Ok(report)
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
}
