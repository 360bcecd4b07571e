//! Explaining the graph: `plan` (what would run now and why, without running anything) and
//! `why` (why a node ran in the last build or would run now, recursing to the root causes).

use std::collections::HashMap;

use nosa_cache::StatCache;
use serde::Serialize;

use crate::decide::{Decision, components};
use crate::exec::{Engine, EngineError};
use crate::graph::Graph;
use crate::inputs::resolve_inputs;
use crate::node::DepOutput;
use crate::reason::Reason;
use crate::state::{Good, Status};

/// What would happen to a node if the build ran now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Planned {
    /// Its key is in the cache.
    UpToDate,
    /// It will run.
    Run {
        /// Why.
        reasons: Vec<Reason>,
    },
    /// A dependency will run; it runs too unless that dependency's output is unchanged.
    MayRun {
        /// The dependencies that will run.
        reasons: Vec<Reason>,
    },
    /// Its inputs cannot be resolved; the build would fail here.
    Fail {
        /// The error.
        error: String,
    },
}

/// One node of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// Node id.
    pub id: String,
    /// What would happen.
    #[serde(flatten)]
    pub planned: Planned,
}

/// A root cause found by `why`, with the node it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootCause {
    /// The node whose own key component changed.
    pub node: String,
    /// The change.
    #[serde(flatten)]
    pub reason: Reason,
}

/// The answer to `why NODE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The node.
    pub node: String,
    /// `would-run`, `may-run`, `ran`, `failed`, `cached`, `cutoff`, `up-to-date`, `never-built`.
    pub state: String,
    /// The node's own reasons.
    pub reasons: Vec<Reason>,
    /// Reasons found by following dependency changes to nodes that changed on their own.
    pub root_causes: Vec<RootCause>,
    /// How its last run produced the output, when it did not simply run (`reused by trace
    /// (N paths read, unchanged)`, or why a traced node had to run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
}

impl Engine {
    /// What building `targets` would do now, in dependency order.
    pub fn plan(&self, graph: &Graph, targets: &[usize]) -> Result<Vec<PlanEntry>, EngineError> {
        let sel = graph.closure(targets);
        let state = self.state();
        let mut stat = StatCache::load(&self.stat_path());
        let specs: Vec<_> = sel.iter().map(|&g| graph.node(g).rule.inputs()).collect();
        let inputs = resolve_inputs(self.workdir(), &specs, &mut stat);
        let _ = stat.save(&self.stat_path(), &self.store().tmp_dir());
        let mut local_of = HashMap::new();
        for (l, &g) in sel.iter().enumerate() {
            local_of.insert(g, l);
        }
        let order = {
            let deps: Vec<Vec<usize>> = sel
                .iter()
                .map(|&g| graph.node(g).deps.iter().map(|d| local_of[d]).collect())
                .collect();
            let mut dependents = vec![Vec::new(); sel.len()];
            for (i, ds) in deps.iter().enumerate() {
                for &d in ds {
                    dependents[d].push(i);
                }
            }
            crate::queue::topo_order(&deps, &dependents)
        };
        let mut known: Vec<Option<Good>> = vec![None; sel.len()];
        let mut planned: Vec<Option<Planned>> = vec![None; sel.len()];
        for l in order {
            let node = graph.node(sel[l]);
            let inputs = match &inputs[l] {
                Ok(v) => v,
                Err(e) => {
                    planned[l] = Some(Planned::Fail { error: e.clone() });
                    continue;
                }
            };
            let mut unknown = Vec::new();
            let mut dep_outputs = Vec::new();
            for &d in &node.deps {
                let dl = local_of[&d];
                match known[dl] {
                    Some(g) => dep_outputs.push(DepOutput {
                        id: graph.node(d).id.clone(),
                        tree: g.tree,
                        output: g.output,
                    }),
                    None => unknown.push(Reason::DependencyWillRun {
                        node: graph.node(d).id.clone(),
                    }),
                }
            }
            if !unknown.is_empty() {
                planned[l] = Some(Planned::MayRun { reasons: unknown });
                continue;
            }
            let components = components(node.rule.as_ref(), inputs, &dep_outputs);
            planned[l] = Some(
                match self.decide(components, state.nodes.get(&node.id), false) {
                    Decision::Hit(g) => {
                        known[l] = Some(g);
                        Planned::UpToDate
                    }
                    Decision::Run { reasons, .. } => Planned::Run { reasons },
                },
            );
        }
        Ok(sel
            .iter()
            .enumerate()
            .map(|(l, &g)| PlanEntry {
                id: graph.node(g).id.clone(),
                planned: planned[l].clone().expect("every node planned"),
            })
            .collect())
    }

    /// Why `node` ran in the last build, or would run now.
    pub fn why(&self, graph: &Graph, node: usize) -> Result<Explanation, EngineError> {
        let plan = self.plan(graph, &[node])?;
        let by_id: HashMap<&str, &Planned> =
            plan.iter().map(|e| (e.id.as_str(), &e.planned)).collect();
        let id = graph.node(node).id.clone();
        let state = self.state();
        let now = by_id[id.as_str()];
        let (label, reasons, live) = match now {
            Planned::Run { reasons } => ("would-run", reasons.clone(), true),
            Planned::MayRun { reasons } => ("may-run", reasons.clone(), true),
            Planned::Fail { error } => {
                return Ok(Explanation {
                    node: id,
                    state: "would-fail".into(),
                    reasons: vec![],
                    how: None,
                    root_causes: vec![RootCause {
                        node: graph.node(node).id.clone(),
                        reason: Reason::ParamChanged {
                            name: "inputs".into(),
                            old: None,
                            new: Some(error.clone()),
                        },
                    }],
                });
            }
            Planned::UpToDate => match state.nodes.get(&id) {
                None => ("up-to-date", Vec::new(), false),
                Some(s) => (s.status.as_str(), s.reasons.clone(), false),
            },
        };
        // Follow dependency reasons to the nodes that changed on their own.
        let mut root_causes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(id.clone(), reasons.clone())];
        while let Some((n, rs)) = stack.pop() {
            for r in rs {
                match r.dependency() {
                    None => root_causes.push(RootCause {
                        node: n.clone(),
                        reason: r.clone(),
                    }),
                    Some(dep) => {
                        if !seen.insert(dep.to_string()) {
                            continue;
                        }
                        let next = if live {
                            match by_id.get(dep) {
                                Some(Planned::Run { reasons })
                                | Some(Planned::MayRun { reasons }) => reasons.clone(),
                                _ => Vec::new(),
                            }
                        } else {
                            match state.nodes.get(dep) {
                                Some(s) if s.status == Status::Ran => s.reasons.clone(),
                                _ => Vec::new(),
                            }
                        };
                        if next.is_empty() {
                            // The dependency changed but keeps no reason of its own (e.g. it
                            // was rebuilt from the cache): the dependency change is the cause.
                            root_causes.push(RootCause {
                                node: n.clone(),
                                reason: r.clone(),
                            });
                        } else {
                            stack.push((dep.to_string(), next));
                        }
                    }
                }
            }
        }
        let how = state
            .nodes
            .get(&id)
            .and_then(|s| s.good)
            .and_then(|g| self.store().get_action::<crate::key::Component>(&g.key))
            .and_then(|r| r.note);
        Ok(Explanation {
            node: id,
            state: label.into(),
            reasons,
            root_causes,
            how,
        })
    }
}
