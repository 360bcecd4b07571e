//! What the engine remembers between builds: per node, its last successful key and output, and
//! how it fared in the last build that included it (status, reasons, time, error).

use std::collections::HashMap;
use std::path::Path;

use nosa_cache::Digest;
use nosa_cache::atomic::write_atomic;
use nosa_cache::codec::{Reader, Writer};
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
    /// Its key was missing locally and its result came from the remote cache.
    Remote,
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
            Status::Remote => "remote",
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

/// Names the binary state format; bump the digit when the encoding changes (an old file then
/// reads as an empty state, which costs only the `why` history).
const STATE_MAGIC: &[u8; 8] = b"nosast01";

impl BuildState {
    /// Loads the state; a missing file is an empty state, an unreadable or damaged one too
    /// (every node then looks never built and is found in the action cache by its key, so
    /// nothing is lost but the `why` history). The file is checksummed: a torn write is
    /// rejected whole, never half-trusted.
    pub fn load(path: &Path) -> BuildState {
        fs_err::read(path)
            .ok()
            .and_then(|b| Self::decode(&b))
            .unwrap_or_default()
    }

    /// Saves the state atomically.
    pub fn save(&self, path: &Path, tmp_dir: &Path) -> nosa_cache::Result<()> {
        write_atomic(tmp_dir, path, &self.encode())
    }

    /// The binary encoding (see [`nosa_cache::codec`]). Rarely present fields (reasons, errors)
    /// are embedded as JSON; everything on the no-op path is plain binary.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(STATE_MAGIC, self.nodes.len() * 160);
        w.u64(self.build);
        w.u64(self.nodes.len() as u64);
        for (id, n) in &self.nodes {
            // Destructured so that a new field cannot be forgotten here.
            let NodeState {
                good,
                status,
                reasons,
                ms,
                build,
                error,
                materialized,
                materialized_tree,
            } = n;
            w.str(id);
            match good {
                None => w.bool(false),
                Some(Good { key, output, tree }) => {
                    w.bool(true);
                    w.digest(key);
                    w.digest(output);
                    w.digest(tree);
                }
            }
            w.u64(match status {
                Status::Ran => 0,
                Status::Cached => 1,
                Status::Cutoff => 2,
                Status::Failed => 3,
                Status::Skipped => 4,
                Status::Remote => 5,
            });
            if reasons.is_empty() {
                w.bytes(&[]);
            } else {
                w.bytes(&serde_json::to_vec(reasons).expect("reasons encode as JSON"));
            }
            w.u64(*ms);
            w.u64(*build);
            w.bool(error.is_some());
            if let Some(e) = error {
                w.str(e);
            }
            w.u64(materialized.len() as u64);
            for (p, d) in materialized {
                w.str(p);
                w.digest(d);
            }
            w.bool(materialized_tree.is_some());
            if let Some(t) = materialized_tree {
                w.digest(t);
            }
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Option<BuildState> {
        let mut r = Reader::open(bytes, STATE_MAGIC)?;
        let build = r.u64()?;
        let count = r.count()?;
        let mut nodes = HashMap::with_capacity(count.min(bytes.len()));
        for _ in 0..count {
            let id = r.str()?.to_string();
            let good = if r.bool()? {
                Some(Good {
                    key: r.digest()?,
                    output: r.digest()?,
                    tree: r.digest()?,
                })
            } else {
                None
            };
            let status = match r.u64()? {
                0 => Status::Ran,
                1 => Status::Cached,
                2 => Status::Cutoff,
                3 => Status::Failed,
                4 => Status::Skipped,
                5 => Status::Remote,
                _ => return None,
            };
            let reasons = match r.bytes()? {
                [] => Vec::new(),
                json => serde_json::from_slice(json).ok()?,
            };
            let ms = r.u64()?;
            let node_build = r.u64()?;
            let error = if r.bool()? {
                Some(r.str()?.to_string())
            } else {
                None
            };
            let n = r.count()?;
            let mut materialized = Vec::with_capacity(n.min(bytes.len()));
            for _ in 0..n {
                materialized.push((r.str()?.to_string(), r.digest()?));
            }
            let materialized_tree = if r.bool()? { Some(r.digest()?) } else { None };
            nodes.insert(
                id,
                NodeState {
                    good,
                    status,
                    reasons,
                    ms,
                    build: node_build,
                    error,
                    materialized,
                    materialized_tree,
                },
            );
        }
        r.is_empty().then_some(BuildState { build, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_damage_reads_as_empty() {
        let mut st = BuildState {
            build: 7,
            ..BuildState::default()
        };
        let d = |s: &str| Digest::of(s.as_bytes());
        st.nodes.insert(
            "step:a".into(),
            NodeState {
                good: Some(Good {
                    key: d("k"),
                    output: d("o"),
                    tree: d("t"),
                }),
                status: Status::Ran,
                reasons: vec![Reason::NeverBuilt, Reason::Forced],
                ms: 12,
                build: 7,
                error: None,
                materialized: vec![("out/a".into(), d("a"))],
                materialized_tree: Some(d("t")),
            },
        );
        st.nodes.insert(
            "step:b".into(),
            NodeState {
                good: None,
                status: Status::Failed,
                reasons: Vec::new(),
                ms: 0,
                build: 6,
                error: Some("boom".into()),
                materialized: Vec::new(),
                materialized_tree: None,
            },
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("graph.bin");
        st.save(&p, tmp.path()).unwrap();
        let back = BuildState::load(&p);
        assert_eq!(back.build, 7);
        assert_eq!(back.nodes, st.nodes);

        let mut bytes = fs_err::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs_err::write(&p, &bytes).unwrap();
        assert!(
            BuildState::load(&p).nodes.is_empty(),
            "damaged state is not trusted"
        );
    }
}
