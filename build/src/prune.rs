//! Pruning: which builds go (the newest N untagged and every tagged build stay, or exactly the
//! builds named), then the store's garbage: every action record, tree and blob that neither
//! the current graph's last good outputs nor a kept build's node keys reach.

use std::collections::HashSet;

use nosa_cache::GcReport;
use serde::Serialize;

use crate::builds::{PruneError, PrunePlan};
use crate::{Error, Session};

/// Which builds go.
#[derive(Clone, Debug)]
pub enum Select {
    /// All but the newest N untagged builds (the latest always stays) and the tagged ones.
    KeepLast(usize),
    /// Exactly these builds (none of them may be tagged; the latest may go).
    Builds(Vec<String>),
}

/// When the store's garbage is collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collect {
    /// Always (`nosa prune`).
    Always,
    /// Only when a build was removed (the prune after `nosa build`: an unchanged build costs
    /// no walk of the store).
    IfBuildsRemoved,
    /// Never: the session's graph is not the whole workdir's (one arch of several), so its
    /// last good outputs are not all the roots; the next `nosa prune` collects.
    Never,
}

/// What `nosa prune` did, or with `dry_run` would do.
#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    /// The builds removed and kept.
    pub builds: PrunePlan,
    /// The store's collection, when one ran.
    pub store: Option<GcReport>,
}

/// Prunes builds/ as `select` says, then collects the store's garbage (see the module doc).
/// Must run under the workdir lock. Nothing is removed with `dry_run`.
pub fn prune(
    s: &Session,
    select: &Select,
    collect: Collect,
    dry_run: bool,
) -> Result<Pruned, Error> {
    let builds = s.builds();
    let plan = match select {
        Select::KeepLast(n) => builds.prune_plan(*n),
        Select::Builds(ids) => builds.prune_plan_ids(ids).map_err(|e| match e {
            PruneError::NoIndex | PruneError::NoSuchBuild(..) => {
                Error::usage(e.to_string(), "`nosa list` shows the builds")
            }
            PruneError::Tagged(..) => Error::usage(e.to_string(), "`nosa tag list` shows the tags"),
        })?,
    };
    if !dry_run {
        builds.remove_builds(&plan.remove)?;
    }
    if collect == Collect::Never || (collect == Collect::IfBuildsRemoved && plan.remove.is_empty())
    {
        return Ok(Pruned {
            builds: plan,
            store: None,
        });
    }
    let mut state = s.engine.state();
    let current: HashSet<&str> = s.ws.graph.nodes().iter().map(|n| n.id.as_str()).collect();
    let mut roots: HashSet<_> = state
        .nodes
        .iter()
        .filter(|(id, _)| current.contains(id.as_str()))
        .filter_map(|(_, n)| n.good.map(|g| g.key))
        .collect();
    for id in plan.kept.iter().chain(&plan.tagged) {
        roots.extend(builds.node_keys(id).into_values());
    }
    if !dry_run {
        // Action records go: a no-op witness must not vouch for them any more.
        s.engine.forget_witness()?;
    }
    let report = s
        .engine
        .store()
        .gc(&roots, &HashSet::new(), &HashSet::new(), dry_run)?;
    if !dry_run {
        let before = state.nodes.len();
        state.nodes.retain(|id, _| current.contains(id.as_str()));
        if state.nodes.len() != before {
            s.engine.save_state(&state)?;
        }
    }
    Ok(Pruned {
        builds: plan,
        store: Some(report),
    })
}
