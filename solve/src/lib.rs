//! nosa-solve: the `resolve` rule. Resolves a treefile's package list against synced rpm-md
//! repositories with libsolv, set up the way dnf (libdnf) sets it up, so that the chosen
//! packages are the ones `dnf install` would choose. See docs/resolve.md.
//!
//! - [`ResolveRule`]: the `resolve:<arch>` node (dependencies: the repo-sync nodes).
//! - [`resolve`]: the same resolution without the engine, on [`RepoData`] and a [`Request`].
//! - [`lockfile_json`], [`resolved_json`]: the output formats.

mod error;
mod ffi;
mod glob;
mod output;
mod repo;
mod resolve;
mod rule;

pub use error::ResolveError;
pub use ffi::libsolv_version;
pub use glob::{fnmatch, matches_package};
pub use output::{lockfile_json, resolved_json, rfc3339};
pub use repo::{MetadataFile, RepoConfig, RepoData};
pub use resolve::{Checksum, Lock, Request, Resolution, ResolvedPackage, resolve, split_evr};
pub use rule::ResolveRule;
