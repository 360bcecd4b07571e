//! A build in stages: the `resolve:` nodes the targets need are built first, then the graph is
//! expanded with the package sets they produced (one download and one unpack node per
//! package), then the targets are built. The report lists each node once.

use std::collections::HashSet;

use nosa_engine::{BuildOptions, BuildReport, Observer};

use crate::{Error, Session};

/// Builds `names` in `s` (see the module doc). With `force`, the named targets run even if
/// cached.
pub fn staged_build(
    s: &mut Session,
    names: &[String],
    opts: &BuildOptions,
    force: bool,
    obs: &mut dyn Observer,
) -> Result<BuildReport, Error> {
    // Package node ids (`rpm:`, `unpack:`) exist only after expansion: a name unknown now
    // may become known once every resolve node has run.
    let resolves = match s.targets(names) {
        Ok(targets) => s.resolve_nodes(&targets),
        Err(_) => {
            let all: Vec<usize> = (0..s.ws.graph.len()).collect();
            s.resolve_nodes(&all)
        }
    };
    let mut first = BuildReport::default();
    let mut opts = opts.clone();
    if !resolves.is_empty() {
        // Two stages: the second graph depends on the first's outputs, which its state
        // records (a witness observes the state file last).
        first = s.engine.build(&s.ws.graph, &resolves, &opts, obs)?;
        if !first.ok() {
            return Ok(first);
        }
        s.expand_packages(&resolves)?;
    }
    let targets = s.targets(names)?;
    opts.continue_build = opts.continue_build || !first.nodes.is_empty();
    if force {
        opts.force = targets
            .iter()
            .map(|&i| s.ws.graph.node(i).id.clone())
            .collect::<HashSet<_>>();
    }
    let second = s.engine.build(&s.ws.graph, &targets, &opts, obs)?;
    Ok(merge(first, second))
}

/// `first` followed by the nodes of `second` it does not have.
pub fn merge(mut first: BuildReport, second: BuildReport) -> BuildReport {
    if first.nodes.is_empty() {
        return BuildReport {
            ms: first.ms + second.ms,
            ..second
        };
    }
    let seen: HashSet<String> = first.nodes.iter().map(|n| n.id.clone()).collect();
    first.ms += second.ms;
    first
        .nodes
        .extend(second.nodes.into_iter().filter(|n| !seen.contains(&n.id)));
    first
}
