//! Generic build-graph engine: the node contract, keys, the scheduler, early cutoff, `plan` and
//! `why`, and the execution log. Knows nothing about OS images: it sees nodes, keys, blobs and
//! trees (see `docs/engine.md`, and the freshness essay that opens [`key`]).
//!
//! A build ([`Engine::build`]): resolve and hash every selected node's declared inputs (in
//! parallel, through the stat cache) and speculate their keys (`decide`); then, in the
//! scheduler (`schedule`), as the [`queue::DependencyQueue`] releases nodes whose dependencies
//! are done, compute each key from the rule, parameters, input digests and the dependencies'
//! *output* digests; reuse a cached output when the key is known, else run the rule on a
//! worker thread (`run`) and commit its output to the store. Recording (`record`) then updates
//! the remembered state, places outputs in the workdir and writes the no-op witness. A node
//! whose rerun produced the same output leaves its dependents' keys unchanged, so they are
//! reused (early cutoff).

mod decide;
mod exec;
mod explain;
mod farm;
#[cfg(test)]
mod golden;
mod graph;
pub mod inputs;
pub mod key;
mod memtmp;
mod node;
pub mod queue;
mod reason;
mod record;
mod remote;
mod run;
mod schedule;
mod state;
mod witness;

pub use exec::{
    BuildOptions, BuildReport, Engine, EngineError, Event, NodeResult, Observer, timing,
};
pub use explain::{Explanation, PlanEntry, Planned, RootCause};
pub use farm::{Decode, FARM_OUTPUT, exec_node};
pub use graph::{Graph, GraphBuilder, GraphError, Node};
pub use inputs::check_relative;
pub use key::{ActionRecord, Component, ComponentKind, KeyHash, KeyHasher, Params};
pub use memtmp::MEMORY_TMP_ENV;
pub use node::{
    DepOutput, InputFile, InputSpec, MaterializeTo, Portable, Rule, RunContext, RunError,
};
pub use reason::Reason;
pub use remote::{RemoteCache, RemoteCommand, RemoteExecutor, RemoteLookup, RemoteRun, RootFile};
pub use run::file_name_for;
pub use state::{BuildState, Good, NodeState, Status};
pub use witness::{WitnessDraft, Witnessed};

/// An [`Observer`] that ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &Event<'_>) {}
}
