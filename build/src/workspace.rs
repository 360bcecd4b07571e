//! Turning a loaded build file (steps and the `[nestos]` config) into an engine graph, and
//! target names into node indices.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use miette::Diagnostic;
use nosa_config::{Arch, Config, ConfigError, ConfigWarning, LoadOptions};
use nosa_engine::{Graph, GraphBuilder, GraphError};

use crate::buildfile::{BuildFile, BuildFileError};
use crate::expand as nestos;
use crate::step::StepRule;

/// A workdir's graph with the file it came from.
pub struct Workspace {
    /// The build file.
    pub file: BuildFile,
    /// The nestos-config, resolved per selected arch (empty without `[nestos]`).
    pub configs: Vec<Config>,
    /// The graph.
    pub graph: Graph,
    /// Target name -> node ids.
    pub targets: BTreeMap<String, Vec<String>>,
}

/// Errors turning a build file or target list into a graph.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum WorkspaceError {
    /// The build file is wrong.
    #[error(transparent)]
    #[diagnostic(transparent)]
    File(#[from] Box<BuildFileError>),
    /// The nestos-config is wrong.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] Box<ConfigError>),
    /// The config does not expand into nodes.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Expand(#[from] Box<nestos::ExpandError>),
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
    /// Builds the graph for `file`; `arch` restricts the `[nestos]` arches to one.
    pub fn new(file: BuildFile, arch: Option<&str>) -> Result<Workspace, WorkspaceError> {
        Self::with_options(file, arch, true)
    }

    /// Like [`Workspace::new`]; with `strict_repos` false, a `repos` entry that no `.repo`
    /// file defines is a warning instead of an error (to inspect a broken config).
    pub fn with_options(
        file: BuildFile,
        arch: Option<&str>,
        strict_repos: bool,
    ) -> Result<Workspace, WorkspaceError> {
        let known = nestos::Known {
            pins: crate::pins::Pins::load(&file.workdir),
            ..Default::default()
        };
        Self::expanded(file, arch, strict_repos, &known)
    }

    /// Like [`Workspace::with_options`], with pins and resolved package sets given.
    pub fn expanded(
        file: BuildFile,
        arch: Option<&str>,
        strict_repos: bool,
        known: &nestos::Known,
    ) -> Result<Workspace, WorkspaceError> {
        let mut b = GraphBuilder::new();
        for s in &file.steps {
            b.add(
                StepRule::node_id(&s.name),
                Arc::new(StepRule::new(s.clone())),
                s.deps.iter().map(|d| StepRule::node_id(d)).collect(),
            );
        }
        let mut configs = Vec::new();
        let mut targets = BTreeMap::new();
        if let Some(n) = &file.nestos {
            let arches = Self::arches(&file, arch)?;
            let dir = file.workdir.join(n.config.get_ref());
            if !dir.is_dir() {
                return Err(WorkspaceError::File(Box::new(file.error_at(
                    n.config.span(),
                    format!("the config directory {} does not exist", n.config.get_ref()),
                    "no such directory",
                    Some("point [nestos] config at a nestos-config tree, relative to the workdir".into()),
                ))));
            }
            for a in arches {
                let mut opts = LoadOptions::new(a);
                opts.variant = n.variant.clone();
                opts.workdir = Some(file.workdir.clone());
                opts.strict_repos = strict_repos;
                configs.push(Config::load(&dir, &opts).map_err(Box::new)?);
            }
            let live_ignition = file
                .live
                .as_ref()
                .and_then(|l| l.live_ignition.as_ref())
                .map(|p| p.get_ref().as_str());
            let x = nestos::expand(
                &configs,
                n.config.get_ref(),
                known,
                &file.workdir,
                live_ignition,
            )
            .map_err(Box::new)?;
            for d in x.nodes {
                b.add(d.id, d.rule, d.deps);
            }
            targets = x.targets;
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
        Ok(Workspace {
            file,
            configs,
            graph,
            targets,
        })
    }

    /// The arches to build: `--arch`, else `[nestos] arches`, else the host's.
    fn arches(file: &BuildFile, only: Option<&str>) -> Result<Vec<Arch>, WorkspaceError> {
        let n = file.nestos.as_ref().expect("called with [nestos]");
        let mut out = Vec::new();
        for a in &n.arches {
            let arch = Arch::from_str(a.get_ref()).map_err(|e| {
                Box::new(file.error_at(
                    a.span(),
                    e.to_string(),
                    "unknown architecture",
                    Some("NestOS builds x86_64 and aarch64".into()),
                ))
            })?;
            out.push(arch);
        }
        if out.is_empty() {
            out.extend(Arch::host());
        }
        if let Some(only) = only {
            let arch = Arch::from_str(only).map_err(|e| WorkspaceError::UnknownTarget {
                name: only.to_string(),
                help: e.to_string(),
            })?;
            out = vec![arch];
        }
        Ok(out)
    }

    /// Warnings from loading the nestos-config (once per distinct message).
    pub fn warnings(&self) -> Vec<&ConfigWarning> {
        let mut seen = std::collections::HashSet::new();
        self.configs
            .iter()
            .flat_map(|c| &c.warnings)
            .filter(|w| seen.insert(w.to_string()))
            .collect()
    }

    /// Node indices for `names` (target names, node ids, or bare step names). With no names,
    /// the default targets: `[graph] default`, else `[nestos] targets` plus every step.
    pub fn resolve_targets(&self, names: &[String]) -> Result<Vec<usize>, WorkspaceError> {
        if names.is_empty() {
            if self.file.default.is_empty() {
                let mut out: Vec<usize> = self
                    .file
                    .steps
                    .iter()
                    .filter_map(|s| self.graph.index_of(&StepRule::node_id(&s.name)))
                    .collect();
                if let Some(n) = &self.file.nestos {
                    let names: Vec<&str> = if n.targets.is_empty() {
                        vec!["ostree", "oci"]
                    } else {
                        n.targets.iter().map(|t| t.get_ref().as_str()).collect()
                    };
                    for t in names {
                        out.extend(self.lookup(t).ok_or_else(|| {
                            WorkspaceError::UnknownTarget {
                                name: t.to_string(),
                                help: self.known(),
                            }
                        })?);
                    }
                }
                return Ok(out);
            }
            let mut out = Vec::new();
            for d in &self.file.default {
                match self.lookup(d.get_ref()) {
                    Some(i) => out.extend(i),
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
        let mut out = Vec::new();
        for n in names {
            out.extend(
                self.lookup(n)
                    .ok_or_else(|| WorkspaceError::UnknownTarget {
                        name: n.clone(),
                        help: self.known(),
                    })?,
            );
        }
        Ok(out)
    }

    /// `names`, or when empty the names of the default targets (`[graph] default`, else
    /// `[nestos] targets` plus every step), as [`Workspace::resolve_targets`] picks them.
    pub fn target_names(&self, names: &[String]) -> Vec<String> {
        if !names.is_empty() {
            return names.to_vec();
        }
        if !self.file.default.is_empty() {
            return self
                .file
                .default
                .iter()
                .map(|d| d.get_ref().clone())
                .collect();
        }
        let mut out: Vec<String> = self
            .file
            .steps
            .iter()
            .map(|s| StepRule::node_id(&s.name))
            .collect();
        if let Some(n) = &self.file.nestos {
            if n.targets.is_empty() {
                out.extend(["ostree".to_string(), "oci".to_string()]);
            } else {
                out.extend(n.targets.iter().map(|t| t.get_ref().clone()));
            }
        }
        out
    }

    /// The node indices for a target name, node id or bare step name.
    pub fn lookup(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(ids) = self.targets.get(name) {
            return Some(ids.iter().filter_map(|i| self.graph.index_of(i)).collect());
        }
        self.graph
            .index_of(name)
            .or_else(|| self.graph.index_of(&StepRule::node_id(name)))
            .map(|i| vec![i])
    }

    fn known(&self) -> String {
        let mut names: Vec<String> = self.targets.keys().cloned().collect();
        names.extend(self.graph.nodes().iter().map(|n| n.id.clone()).take(12));
        if names.is_empty() {
            "this workdir defines no nodes".into()
        } else {
            format!("known targets and nodes: {}", names.join(", "))
        }
    }
}
