//! The engine's side of a remote cache and a build farm: a node about to run asks the cache
//! first, and a node that ran hands it the result; a rule that can run elsewhere hands its
//! command to the [`RemoteExecutor`]. The protocols (REAPI over gRPC, Bazel's HTTP layout)
//! live outside the engine (the `nosa-remote` crate); the engine only knows records, its own
//! store and directories.

use std::path::{Path, PathBuf};

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

/// A command to run on a build farm: what a rule that can run remotely hands it.
#[derive(Debug)]
pub struct RemoteCommand<'a> {
    /// The directory whose copy the command runs in (its input root): everything it reads.
    pub root: &'a Path,
    /// Arguments; the first is the program, looked up in `PATH` on the worker.
    pub argv: &'a [String],
    /// The whole environment.
    pub env: &'a [(String, String)],
    /// Paths relative to `root` that the command produces: files or directories.
    pub outputs: &'a [String],
    /// Where the outputs go, each at its path under it.
    pub out: &'a Path,
    /// Files of the input root besides `root`'s own: blobs of the local store placed at a
    /// path, without copying them there (a rule's program, its dependencies' content).
    pub files: &'a [RootFile],
    /// Platform properties besides the farm's own (`OSFamily`, `ISA`): what the worker
    /// must offer, such as the tools a node needs.
    pub platform: &'a [(String, String)],
}

/// A file of an input root that is not under [`RemoteCommand::root`].
#[derive(Clone, Debug)]
pub struct RootFile {
    /// Its path in the input root, relative, `/`-separated.
    pub path: String,
    /// Where its bytes are here.
    pub source: PathBuf,
    /// Its SHA-256 (hex), when known (the store keeps it for its blobs); otherwise the
    /// farm's client hashes `source`.
    pub sha256: Option<String>,
    /// Whether it is executable.
    pub executable: bool,
}

/// How a remote run went.
#[derive(Debug)]
pub enum RemoteRun {
    /// It ran (or the farm had its result cached) and its outputs are under `out`, each
    /// verified against its digest.
    Done {
        /// The command's exit code.
        exit_code: i32,
        /// What it wrote to stdout and stderr.
        output: Vec<u8>,
    },
    /// The farm could not run it (unreachable, refused, a broken result): the reason. The
    /// rule runs it locally instead, and the farm is not asked again in this build.
    Unavailable(String),
}

/// A build farm (REAPI `Execution`): runs commands in a copy of a directory elsewhere.
///
/// Implementations never fail a build: a farm that cannot run a command says
/// [`RemoteRun::Unavailable`] (once with a warning) and the rule runs the command locally.
pub trait RemoteExecutor: Send + Sync + std::fmt::Debug {
    /// Runs `cmd` remotely.
    fn execute(&self, cmd: &RemoteCommand<'_>) -> RemoteRun;

    /// Where it is, for messages.
    fn describe(&self) -> String;
}
