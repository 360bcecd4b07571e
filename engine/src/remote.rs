//! The engine's side of a remote cache: a node about to run asks it first, and a node that
//! ran hands it the result. The protocol (HTTP in Bazel's layout today) lives outside the
//! engine, behind [`RemoteCache`]; the engine only knows records and its own store.

use nosa_cache::{Digest, Store};

use crate::key::ActionRecord;

/// What a remote lookup gave.
#[derive(Debug)]
pub enum RemoteLookup {
    /// The record, its output tree and blobs (memo and log too) are now in the local store,
    /// each verified against its digest.
    Hit(Box<ActionRecord>),
    /// The remote has no entry for the key.
    Missing,
    /// The remote's entry could not be used (a damaged or truncated blob, a record for another
    /// key): the reason. The node runs.
    Unusable(String),
    /// No remote to ask: none configured, or it stopped answering earlier in this build.
    Off,
}

/// A cache shared between machines, read before a node runs and written after it succeeds.
///
/// Implementations must never fail a build: an unreachable or slow server turns them
/// [`RemoteLookup::Off`] for the rest of the process, with one warning.
pub trait RemoteCache: Send + Sync + std::fmt::Debug {
    /// Looks `key` up; on a hit, installs everything the record names into `store` first
    /// (blobs, then trees, then the record: the store's commit order), and writes the record
    /// only once its output tree is whole in the store (`Store::tree_complete`).
    fn fetch(&self, store: &Store, key: &Digest) -> RemoteLookup;

    /// Uploads `rec` and what it names from `store` (the blobs and trees first, the entry
    /// last, so a reader never finds an entry whose content is not there yet).
    fn upload(&self, store: &Store, rec: &ActionRecord);

    /// Where it is, for messages.
    fn describe(&self) -> String;
}
