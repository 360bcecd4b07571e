//! Turning a loaded build file into an engine graph, and target names into node indices.

use std::sync::Arc;

use miette::Diagnostic;
use nosa_engine::{Graph, GraphBuilder, GraphError};

use crate::buildfile::{BuildFile, BuildFileError};
use crate::step::StepRule;

/// A workdir's graph with the file it came from.
pub struct Workspace {
    /// The build file.
    pub file: BuildFile,
    /// The graph.
    pub graph: Graph,
}

/// Errors turning a build file or target list into a graph.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum WorkspaceError {
    /// The build file is wrong.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] Box<BuildFileError>),
    /// A target names nothing.
    #[error("no target or node named {name:?}")]
    #[diagnostic(code(nosa::unknown_target), help("{help}"))]
    UnknownTarget {
        /// The name given.
        name: String,
        /// Known names.
        help: String,
    },
}

impl Workspace {
    /// Builds the graph for `file`.
    pub fn new(file: BuildFile) -> Result<Workspace, WorkspaceError> {
        let mut b = GraphBuilder::new();
        for s in &file.steps {
            b.add(
                StepRule::node_id(&s.name),
                Arc::new(StepRule::new(s.clone())),
                s.deps.iter().map(|d| StepRule::node_id(d)).collect(),
            );
        }
        let graph = b.build().map_err(|e| match &e {
            GraphError::Cycle(ids) => {
                let first = ids[0].trim_start_matches("step:");
                Box::new(file.error_at_step(
                    first,
                    format!("{e}"),
                    Some("remove one of these deps to break the cycle".into()),
                ))
            }
            other => Box::new(file.error_at_step("", other.to_string(), None)),
        })?;
        Ok(Workspace { file, graph })
    }

    /// Node indices for `names` (target names or node ids; a bare step name works too). With
    /// no names, the default targets: `[graph] default`, else every node.
    pub fn resolve_targets(&self, names: &[String]) -> Result<Vec<usize>, WorkspaceError> {
        if names.is_empty() {
            if self.file.default.is_empty() {
                return Ok((0..self.graph.len()).collect());
            }
            let mut out = Vec::new();
            for d in &self.file.default {
                match self.lookup(d.get_ref()) {
                    Some(i) => out.push(i),
                    None => {
                        return Err(WorkspaceError::File(Box::new(self.file.error_at(
                            d.span(),
                            format!("default target {:?} is not a node", d.get_ref()),
                            "unknown target",
                            Some(self.known()),
                        ))));
                    }
                }
            }
            return Ok(out);
        }
        names
            .iter()
            .map(|n| {
                self.lookup(n).ok_or_else(|| WorkspaceError::UnknownTarget {
                    name: n.clone(),
                    help: self.known(),
                })
            })
            .collect()
    }

    /// The node index for a target name, node id or bare step name.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.graph
            .index_of(name)
            .or_else(|| self.graph.index_of(&StepRule::node_id(name)))
    }

    fn known(&self) -> String {
        let ids: Vec<&str> = self
            .graph
            .nodes()
            .iter()
            .map(|n| n.id.as_str())
            .take(12)
            .collect();
        if ids.is_empty() {
            "this workdir defines no nodes".into()
        } else {
            format!("known nodes: {}", ids.join(", "))
        }
    }
}
