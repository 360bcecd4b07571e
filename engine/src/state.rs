//! What the engine remembers between builds: per node, its last successful key and output, and
//! how it fared in the last build that included it (status, reasons, time, error).

use std::collections::HashMap;
use std::path::Path;

use nosa_cache::Digest;
use nosa_cache::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use crate::reason::Reason;

/// How a node fared in a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran.
    Ran,
    /// Its key was found in the cache and no dependency ran.
    Cached,
    /// A dependency ran but produced the same output, so this node's key was unchanged.
    Cutoff,
    /// It ran and failed (or its inputs could not be read).
    Failed,
    /// It was not run because a dependency failed or the build stopped.
    Skipped,
}

impl Status {
    /// The lowercase name used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Cutoff => "cutoff",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// The last good result of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Good {
    /// Its key.
    pub key: Digest,
    /// The output digest dependents saw.
    pub output: Digest,
    /// The output tree.
    pub tree: Digest,
}

/// What is remembered of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The last successful (or cached) result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<Good>,
    /// Status in the last build that included the node.
    pub status: Status,
    /// Why it ran in that build (empty unless it ran or failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Run time in that build (0 unless it ran).
    #[serde(default)]
    pub ms: u64,
    /// The build number.
    pub build: u64,
    /// The failure message, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files placed in the workdir from its output (workdir-relative path, digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materialized: Vec<(String, Digest)>,
    /// The tree those files came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialized_tree: Option<Digest>,
}

/// The whole remembered state of a workdir.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BuildState {
    /// Number of the last build.
    pub build: u64,
    /// Per node id.
    pub nodes: HashMap<String, NodeState>,
}

impl BuildState {
    /// Loads the state; a missing file is an empty state, an unreadable one too (every node
    /// then looks never built and is found in the action cache by its key, so nothing is lost
    /// but the `why` history).
    pub fn load(path: &Path) -> BuildState {
        fs_err::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the state atomically.
    pub fn save(&self, path: &Path, tmp_dir: &Path) -> nosa_cache::Result<()> {
        let bytes = serde_json::to_vec(self)?;
        write_atomic(tmp_dir, path, &bytes)
    }
}
