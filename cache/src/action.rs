//! The action cache: a node's key -> the record of the run that produced its output.

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::{Digest, Error, Result, Store};

/// What a key component stands for. The engine decides the meaning; the cache only keeps them so
/// that a later build can say which component changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The rule kind and version.
    Rule = 1,
    /// A parameter (a resolved configuration value).
    Param = 2,
    /// A file the node declared as input, by content digest.
    Input = 3,
    /// A dependency, by its output digest.
    Dep = 4,
}

/// One named part of a key, e.g. `input overlay.d/15nestos/etc/test/test.txt = 1a2b…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// What it stands for.
    pub kind: ComponentKind,
    /// Its name (parameter name, file path, dependency node id).
    pub name: String,
    /// The digest that entered the key.
    pub digest: Digest,
    /// A short rendering of the value for people (parameters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// The outcome of one successful run of a node, stored under its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// The node id that ran.
    pub node: String,
    /// The key this record is stored under.
    pub key: Digest,
    /// The components the key was computed from.
    pub components: Vec<Component>,
    /// The output tree.
    pub tree: Digest,
    /// The digest dependents see (early cutoff compares it): the tree digest, or a rule's
    /// equivalence digest when its raw output is not bit-reproducible.
    pub output: Digest,
    /// The run's log, as a blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Digest>,
    /// How long the run took.
    pub ms: u64,
    /// When it finished (seconds since the epoch).
    pub finished: u64,
}

impl Store {
    fn ac_path(&self, key: &Digest) -> std::path::PathBuf {
        self.sharded("ac", key, ".json")
    }

    /// The record stored under `key`, if it exists and is sound: readable, stored under the right
    /// key, and its output tree with all its blobs present. A record that fails these checks is
    /// treated as absent (the node reruns), never trusted.
    pub fn get_action(&self, key: &Digest) -> Option<ActionRecord> {
        let bytes = fs_err::read(self.ac_path(key)).ok()?;
        let rec: ActionRecord = serde_json::from_slice(&bytes).ok()?;
        (rec.key == *key && self.tree_complete(&rec.tree)).then_some(rec)
    }

    /// Stores `rec` under its key. Call only after its tree and blobs are durable: the record is
    /// the commit point of a node's run.
    pub fn put_action(&self, rec: &ActionRecord) -> Result<()> {
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
    pub(crate) fn read_action_raw(&self, key: &Digest) -> Option<ActionRecord> {
        let bytes = fs_err::read(self.ac_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
