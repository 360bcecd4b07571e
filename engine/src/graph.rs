//! The build graph: nodes (id, rule, dependencies), validated once: unknown dependencies and
//! cycles are errors that name the nodes involved.

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::graph::DiGraph;

use crate::node::Rule;

/// One node.
pub struct Node {
    /// Stable, human-readable id: `kind[:arch][:name]`.
    pub id: String,
    /// What it does.
    pub rule: Arc<dyn Rule>,
    /// Indices of its dependencies, in declaration order.
    pub deps: Vec<usize>,
}

/// Why a graph is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Two nodes with one id.
    #[error("two nodes have the id {0}")]
    Duplicate(String),
    /// A dependency on a node that does not exist.
    #[error("{node} depends on {dep}, which is not a node of the graph")]
    UnknownDep {
        /// The depending node.
        node: String,
        /// The missing dependency.
        dep: String,
    },
    /// A cycle, listed in order, first node repeated at the end.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A target that is no node.
    #[error("no node or target named {0}")]
    UnknownTarget(String),
}

/// Collects nodes, then checks them into a [`Graph`].
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<(String, Arc<dyn Rule>, Vec<String>)>,
}

impl GraphBuilder {
    /// A new, empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds node `id` running `rule` after `deps`.
    pub fn add(&mut self, id: impl Into<String>, rule: Arc<dyn Rule>, deps: Vec<String>) {
        self.nodes.push((id.into(), rule, deps));
    }

    /// Validates ids, dependencies and acyclicity.
    pub fn build(self) -> Result<Graph, GraphError> {
        let mut index = HashMap::with_capacity(self.nodes.len());
        for (i, (id, _, _)) in self.nodes.iter().enumerate() {
            if index.insert(id.clone(), i).is_some() {
                return Err(GraphError::Duplicate(id.clone()));
            }
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (id, rule, deps) in self.nodes {
            let deps = deps
                .into_iter()
                .map(|d| {
                    index
                        .get(&d)
                        .copied()
                        .ok_or_else(|| GraphError::UnknownDep {
                            node: id.clone(),
                            dep: d,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            nodes.push(Node { id, rule, deps });
        }
        let graph = Graph { nodes, index };
        if let Some(cycle) = graph.find_cycle() {
            return Err(GraphError::Cycle(cycle));
        }
        Ok(graph)
    }
}

/// A validated, acyclic graph.
pub struct Graph {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl Graph {
    /// All nodes, in insertion order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The index of node `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `targets` and everything they depend on, as sorted indices.
    pub fn closure(&self, targets: &[usize]) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut seen[i], true) {
                stack.extend(&self.nodes[i].deps);
            }
        }
        (0..self.nodes.len()).filter(|&i| seen[i]).collect()
    }

    /// Nodes that depend on `i`, directly or not.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        let mut dependents = vec![Vec::new(); self.nodes.len()];
        for (j, n) in self.nodes.iter().enumerate() {
            for &d in &n.deps {
                dependents[d].push(j);
            }
        }
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = dependents[i].clone();
        while let Some(j) = stack.pop() {
            if !std::mem::replace(&mut seen[j], true) {
                stack.extend(&dependents[j]);
            }
        }
        (0..self.nodes.len()).filter(|&j| seen[j]).collect()
    }

    fn find_cycle(&self) -> Option<Vec<String>> {
        let mut g = DiGraph::<usize, ()>::with_capacity(self.nodes.len(), 0);
        let ix: Vec<_> = (0..self.nodes.len()).map(|i| g.add_node(i)).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            for &d in &n.deps {
                if d == i {
                    return Some(vec![n.id.clone(), n.id.clone()]);
                }
                g.add_edge(ix[i], ix[d], ());
            }
        }
        let scc = petgraph::algo::tarjan_scc(&g)
            .into_iter()
            .filter(|c| c.len() > 1)
            .min_by_key(|c| c.iter().map(|n| g[*n]).min())?;
        // Walk inside the component from its smallest node until we come back to it.
        let members: std::collections::HashSet<usize> = scc.iter().map(|n| g[*n]).collect();
        let start = *members.iter().min().expect("non-empty");
        let mut path = vec![start];
        let mut on_path = vec![false; self.nodes.len()];
        on_path[start] = true;
        let mut cur = start;
        loop {
            let next = self.nodes[cur]
                .deps
                .iter()
                .copied()
                .filter(|d| members.contains(d))
                .min_by_key(|&d| (d != start, d))
                .expect("a node on a cycle has a successor on it");
            if next == start {
                path.push(start);
                break;
            }
            if on_path[next] {
                // A shorter cycle not through `start`: report that one.
                let pos = path.iter().position(|&p| p == next).expect("on path");
                path = path[pos..].to_vec();
                path.push(next);
                break;
            }
            on_path[next] = true;
            path.push(next);
            cur = next;
        }
        Some(path.into_iter().map(|i| self.nodes[i].id.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Params;
    use crate::node::{RunContext, RunError};

    struct Nop;
    impl Rule for Nop {
        fn kind(&self) -> &str {
            "nop"
        }
        fn version(&self) -> u32 {
            1
        }
        fn params(&self, _: &mut Params) {}
        fn run(&self, _: &mut RunContext<'_>) -> Result<(), RunError> {
            Ok(())
        }
    }

    fn build(edges: &[(&str, &[&str])]) -> Result<Graph, GraphError> {
        let mut b = GraphBuilder::new();
        for (id, deps) in edges {
            b.add(
                *id,
                Arc::new(Nop),
                deps.iter().map(|s| s.to_string()).collect(),
            );
        }
        b.build()
    }

    #[test]
    fn cycle_is_named_in_order() {
        let err = build(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])])
            .err()
            .unwrap();
        assert_eq!(
            err,
            GraphError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn self_loop_and_unknown_dep() {
        assert_eq!(
            build(&[("a", &["a"])]).err().unwrap(),
            GraphError::Cycle(vec!["a".into(), "a".into()])
        );
        assert!(matches!(
            build(&[("a", &["zz"])]).err().unwrap(),
            GraphError::UnknownDep { .. }
        ));
    }

    #[test]
    fn closure_and_downstream() {
        let g = build(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]).unwrap();
        assert_eq!(g.closure(&[2]), vec![0, 1, 2]);
        assert_eq!(g.downstream(0), vec![1, 2]);
    }
}
