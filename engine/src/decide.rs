//! Deciding a node: its key components, whether the store already holds its output (a hit) or
//! it must run and why, and key speculation: computing every key of a likely no-op build in
//! parallel before the scheduler has decided any dependency.

use std::collections::HashSet;

use nosa_cache::Digest;
use rayon::prelude::*;

use crate::exec::Engine;
use crate::graph::Graph;
use crate::key::{
    Component, ComponentKind, Params, key_of, key_of_parts, rule_component, rule_digest,
    sort_components,
};
use crate::node::{DepOutput, InputFile, Rule};
use crate::reason::{Reason, diff};
use crate::state::{BuildState, Good, NodeState};

/// What the engine decided for a node whose dependencies are known.
pub(crate) enum Decision {
    Hit(Good),
    Run {
        key: Digest,
        components: Vec<Component>,
        reasons: Vec<Reason>,
    },
}

/// The nodes of one build: the closure of its targets, numbered locally.
pub(crate) struct Selection {
    /// Graph index of each local node.
    pub nodes: Vec<usize>,
    /// Each local node's dependencies, as local numbers.
    pub deps: Vec<Vec<usize>>,
}

impl Selection {
    /// `targets` (graph indices) and everything they depend on.
    pub fn new(graph: &Graph, targets: &[usize]) -> Selection {
        let nodes = graph.closure(targets);
        let mut local_of = vec![usize::MAX; graph.len()];
        for (l, &g) in nodes.iter().enumerate() {
            local_of[g] = l;
        }
        let deps = nodes
            .iter()
            .map(|&g| graph.node(g).deps.iter().map(|&d| local_of[d]).collect())
            .collect();
        Selection { nodes, deps }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Keys guessed before the build, on the assumption that every node keeps the output it had
/// last time (true of nearly every node of a no-op build).
pub(crate) struct Speculation {
    /// Each node's last good output, from the remembered state.
    pub prev: Vec<Option<Good>>,
    /// Each node whose key, computed from its dependencies' *last* outputs, is its last key
    /// and still has its action record.
    pub hits: Vec<Option<Good>>,
}

impl Speculation {
    /// The speculated hit of node `l`, if it stands: every dependency has finished with the
    /// output assumed (`goods`: the outputs this build has produced so far). The decision is
    /// then exactly the one [`Engine::decide`] would make (its first branch), made earlier.
    pub fn hit(&self, l: usize, sel: &Selection, goods: &[Option<Good>]) -> Option<Good> {
        self.hits[l].filter(|_| {
            sel.deps[l]
                .iter()
                .all(|&d| goods[d].map(|g| g.output) == self.prev[d].map(|g| g.output))
        })
    }
}

impl Engine {
    /// Speculates the keys of `sel` (in parallel), given their resolved `inputs`.
    pub(crate) fn speculate(
        &self,
        graph: &Graph,
        sel: &Selection,
        state: &BuildState,
        inputs: &[Result<Vec<InputFile>, String>],
        force: &HashSet<String>,
    ) -> Speculation {
        let prev: Vec<Option<Good>> = sel
            .nodes
            .iter()
            .map(|&g| state.nodes.get(&graph.node(g).id).and_then(|n| n.good))
            .collect();
        let present = self
            .store()
            .actions_present(prev.iter().flatten().map(|g| &g.key));
        let hits = (0..sel.len())
            .into_par_iter()
            .map(|l| {
                let node = graph.node(sel.nodes[l]);
                let last = prev[l]?;
                if force.contains(&node.id) {
                    return None;
                }
                let node_inputs = inputs[l].as_ref().ok()?;
                let dep_outputs = sel.deps[l]
                    .iter()
                    .map(|&d| Some((graph.node(sel.nodes[d]).id.as_str(), prev[d]?.output)))
                    .collect::<Option<Vec<_>>>()?;
                let key = key_only(node.rule.as_ref(), node_inputs, &dep_outputs);
                (key == last.key && present.contains(&last.key)).then_some(last)
            })
            .collect();
        Speculation { prev, hits }
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
                && self.store().has_action(&key)
            {
                return Decision::Hit(g);
            }
            if let Some(rec) = self.store().get_action::<Component>(&key) {
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
                Some(g) => match self.store().get_action::<Component>(&g.key) {
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
}

/// Key components of a node given its resolved inputs and its dependencies' outputs.
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
        digest: f.key_digest(),
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

/// The key [`components`] would give, computed without building the components (no names
/// copied, no previews): for deciding, not for recording. `deps` are (node id, output digest).
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
            .map(|f| (ComponentKind::Input, f.rel.as_str(), f.key_digest())),
    );
    parts.extend(deps.iter().map(|&(id, out)| (ComponentKind::Dep, id, out)));
    // The order of `sort_components` (stable, by kind then name).
    parts.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    key_of_parts(&parts)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::node::{RunContext, RunError};

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
            mode: 0o644,
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
        let full = key_of(&components(&Sample, &inputs, &deps));
        let parts: Vec<(&str, Digest)> = deps.iter().map(|d| (d.id.as_str(), d.output)).collect();
        assert_eq!(key_only(&Sample, &inputs, &parts), full);
    }
}
