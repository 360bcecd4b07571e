//! The action cache: a node's key -> the record of the run that produced its output. The
//! records live in `ac/<aa>/<key>.json`; only this module knows that layout.

use std::collections::HashSet;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::{Digest, Error, FxBuildHasher, Result, Store};

/// The outcome of one successful run of a node, stored under its key. `C` is the engine's key
/// component type: the cache keeps the components (so that a later build can say which one
/// changed) without knowing what they mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord<C> {
    /// The node id that ran.
    pub node: String,
    /// The key this record is stored under.
    pub key: Digest,
    /// The components the key was computed from.
    pub components: Vec<C>,
    /// The output tree.
    pub tree: Digest,
    /// The digest dependents see (early cutoff compares it): the tree digest, or a rule's
    /// equivalence digest when its raw output is not bit-reproducible.
    pub output: Digest,
    /// The run's log, as a blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Digest>,
    /// A tree the rule kept for its next run (a traced node's reads and effect), marked by
    /// garbage collection like the output tree. Never part of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<Digest>,
    /// How the rule produced the output when it did not simply run (e.g. `reused by trace
    /// (12 paths read, unchanged)`), for `why` and the progress lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The rule replayed a recorded effect instead of running its program (the note says
    /// on what grounds).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
    /// The build farm that ran the rule's command, when it ran remotely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm: Option<String>,
    /// How long the run took.
    pub ms: u64,
    /// When it finished (seconds since the epoch).
    pub finished: u64,
}

/// A record read only for the digests it holds (garbage collection).
pub(crate) type RawRecord = ActionRecord<IgnoredAny>;

impl Store {
    fn ac_path(&self, key: &Digest) -> PathBuf {
        self.sharded("ac", key, ".json")
    }

    /// The directory holding the records of keys whose first byte is `shard`. Records are only
    /// added or removed, each changing this directory's stamp: the engine's no-op witness
    /// stamps it to prove its hits are still there.
    pub fn action_shard_dir(&self, shard: u8) -> PathBuf {
        self.root().join("ac").join(format!("{shard:02x}"))
    }

    /// Whether `key` has a record (not checked for soundness: [`Store::get_action`] does that).
    pub fn has_action(&self, key: &Digest) -> bool {
        self.ac_path(key).exists()
    }

    /// Which of `keys` have a record, found with one directory listing per shard (in
    /// parallel) rather than one `stat` per key. The caller's workdir lock keeps records from
    /// disappearing while it uses the answer.
    pub fn actions_present<'k>(
        &self,
        keys: impl Iterator<Item = &'k Digest>,
    ) -> HashSet<Digest, FxBuildHasher> {
        let mut shards: Vec<u8> = keys.map(|k| k.0[0]).collect();
        shards.sort_unstable();
        shards.dedup();
        let lists: Vec<Vec<Digest>> = shards
            .par_iter()
            .map(|&shard| {
                let Ok(dir) = fs_err::read_dir(self.action_shard_dir(shard)) else {
                    return Vec::new();
                };
                dir.filter_map(|e| {
                    let name = e.ok()?.file_name();
                    name.to_str()?.strip_suffix(".json")?.parse().ok()
                })
                .collect()
            })
            .collect();
        lists.into_iter().flatten().collect()
    }

    /// The record stored under `key`, if it exists and is sound: readable, stored under the right
    /// key, and its output tree with all its blobs present. A record that fails these checks is
    /// treated as absent (the node reruns), never trusted.
    pub fn get_action<C: DeserializeOwned>(&self, key: &Digest) -> Option<ActionRecord<C>> {
        let bytes = fs_err::read(self.ac_path(key)).ok()?;
        let rec: ActionRecord<C> = serde_json::from_slice(&bytes).ok()?;
        (rec.key == *key && self.tree_complete(&rec.tree)).then_some(rec)
    }

    /// Stores `rec` under its key. Call only after its tree and blobs are durable: the record is
    /// the commit point of a node's run.
    pub fn put_action<C: Serialize>(&self, rec: &ActionRecord<C>) -> Result<()> {
        let path = self.ac_path(&rec.key);
        fs_err::create_dir_all(path.parent().expect("sharded"))?;
        let bytes = serde_json::to_vec_pretty(rec).map_err(Error::Json)?;
        write_atomic(&self.tmp_dir(), &path, &bytes)
    }

    /// Every key that has a record.
    pub fn action_keys(&self) -> Result<Vec<Digest>> {
        let mut keys = Vec::new();
        let dir = self.root().join("ac");
        for shard in fs_err::read_dir(&dir)? {
            let shard = shard?;
            for e in fs_err::read_dir(shard.path())? {
                let name = e?.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(hex) = name.strip_suffix(".json")
                    && let Ok(d) = hex.parse()
                {
                    keys.push(d);
                }
            }
        }
        Ok(keys)
    }

    /// Removes the record under `key` (garbage collection).
    pub(crate) fn remove_action(&self, key: &Digest) -> Result<u64> {
        let p = self.ac_path(key);
        let size = fs_err::metadata(&p).map(|m| m.len()).unwrap_or(0);
        fs_err::remove_file(&p)?;
        Ok(size)
    }

    /// Reads a record without checking completeness (for GC's mark phase).
    pub(crate) fn read_action_raw(&self, key: &Digest) -> Option<RawRecord> {
        let bytes = fs_err::read(self.ac_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
