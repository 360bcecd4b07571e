//! The `ostree-commit` node: a finished OS tree committed with libostree (through the `ostree`
//! crate, not the CLI), reproducibly.
//!
//! Two layers:
//!
//! - [`commit_tree`] (in `write.rs`): the library function. It writes a directory into an
//!   archive or bare-user repository with explicit ownership (root:root unless the caller says
//!   otherwise), the on-disk modes kept as they are (setuid included; no canonical
//!   permissions), no on-disk xattrs (only those the caller supplies, e.g.
//!   `security.capability`), a fixed commit timestamp and sorted metadata, so that the same
//!   tree gives the same commit checksum in any repository. It returns the commit checksum and
//!   the content checksum (`ostree_commit_get_content_checksum`: root dirtree + dirmeta, which
//!   ignores the timestamp and the metadata).
//! - [`commit_listing`] (in `listing.rs`): the same commit made from a store tree's listing,
//!   without a checkout: file objects are written from their blobs, or named from an
//!   [`ObjectMemo`] of objects the repository already holds, so an incremental commit writes
//!   only what changed.
//! - [`OstreeCommitRule`] (in `rule.rs`): the engine rule. It reads its dependency's listing
//!   and `meta.json`, resolves owners through the tree's own passwd/group files, commits the
//!   listing into a fresh archive repository under `out/repo` (the previous output's objects
//!   linked in and named through the memo of its last run), writes `out/commit.json`, and declares an
//!   equivalence digest that ignores the timestamp, so a re-commit of the same content cuts
//!   off downstream. Before committing it applies rpm-ostree's `mutate-os-release` to its
//!   staged copy (`osrelease.rs`), and it adds `rpmostree.inputhash` and
//!   `rpmostree.rpmdb.pkglist` to the metadata.
//!
//! See `docs/commit.md`.

mod caps;
mod error;
mod listing;
mod meta;
mod osrelease;
mod rule;
mod tree;
mod write;

pub use caps::{CapsError, caps_from_text};
pub use error::CommitError;
pub use listing::{Listing, ListingOutcome, ObjectMemo, commit_listing, content_key};
pub use meta::{MetaValue, PkgEntry, metadata_from_json, parse_nevra};
pub use osrelease::{mutate_os_release, mutate_os_release_contents, os_release_path};
pub use rule::{CommitRecord, OstreeCommitRule, TreeMeta};
pub use tree::IdMap;
pub use write::{
    CommitRequest, CommitResult, RepoMode, Xattrs, commit_tree, content_checksum,
    keep_reachable_objects, open_or_create,
};
