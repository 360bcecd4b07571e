//! Content-addressed store, action cache, stat cache and workdir lock. Knows nothing about OS
//! images: it stores blobs, trees and records under digests.
//!
//! When a stored output is trusted is the engine's decision: its key module
//! (`nosa_engine::key`) opens with that essay. The store's part is below: what it keeps where,
//! and that a record is never trusted without its tree and blobs.
//!
//! # On-disk layout (`<workdir>/cache/store/`)
//!
//! - `blobs/<aa>/<hex>`: file contents by blake3, read-only.
//! - `trees/<aa>/<hex>.json`: trees (sorted entries) by canonical digest.
//! - `ac/<aa>/<key>.json`: action records, key -> output tree, output digest, components, log.
//! - `state/`: the engine's files (last build state, stat cache).
//! - `logs/`: the last log of each node, for people.
//! - `tmp/`: temporaries; everything here is garbage after a crash.
//!
//! # Crash safety
//!
//! Everything is published by rename after an fsync, and in dependency order: blobs, then the
//! tree, then the action record. A reader checks that a record's tree and blobs exist before
//! trusting it; a record whose tree is missing is a miss, never a stale hit.
//!
//! # Known limits
//!
//! Blobs are not re-verified on every read (a user editing a hardlinked materialized file would
//! corrupt its blob: materialization into the workdir therefore copies).

mod action;
pub mod atomic;
pub mod codec;
mod digest;
mod gc;
mod hash;
mod lock;
pub mod stamp;
mod store;
pub mod time;
mod tree;

pub use action::ActionRecord;
pub use digest::{BadDigest, Digest};
pub use gc::GcReport;
pub use hash::{FxBuildHasher, FxHasher, StatCache, data_extents, hash_file, sha256_file};
pub use lock::WorkdirLock;
pub use store::{Materialize, Store};
pub use tree::{EntryKind, Tree, TreeEntry};

use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IO error; its message names the path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A record or tree that cannot be encoded or decoded.
    #[error("cache record: {0}")]
    Json(#[from] serde_json::Error),
    /// Something in the store does not match its digest.
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
    /// Input the store cannot hold.
    #[error("{0}")]
    Invalid(String),
    /// The workdir lock is held by another process.
    #[error("the workdir is locked by {holder} ({path})")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
