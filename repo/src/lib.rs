//! The package half of a NestOS compose: the `repo-sync` rule (fetch and verify an rpm-md
//! repository's metadata), the `rpm` rule (download and verify one package), the pin that makes
//! a remote repository's changes visible to keys ([`probe_repomd`]), and readers of a synced
//! repository ([`SyncedRepo`], [`parse_primary`]). See `docs/packages.md`.
//!
//! Freshness in one paragraph: the engine's key covers parameters and workdir files, but a
//! remote repository can change under the same URL. `nosa fetch` records the blake3 of each
//! repository's repomd.xml (the pin) and passes it to [`RepoSyncRule`] as the `repomd-pin`
//! parameter, so a moved repository changes the key when it is re-pinned, and a sync that finds
//! anything but the pinned repomd.xml fails instead of caching unpinned content. Packages are
//! keyed by their checksum, which fully determines the output; URLs are not in their key.

mod checksum;
mod decompress;
mod error;
mod fetch;
mod keys;
mod primary;
mod repomd;
mod rpm;
mod sync;
mod tools;

pub use checksum::{Checksum, ChecksumKind, HashingWriter, is_too_long};
pub use decompress::decoder;
pub use error::{ChecksumMismatch, RepoError};
pub use keys::RepoKeysRule;
pub use primary::{Package, SyncedRepo, parse_primary, parse_primary_xml};
pub use repomd::{RepoMd, RepoMdData, parse_repomd};
pub use rpm::RpmDownloadRule;
pub use sync::{METADATA_KINDS, RepoJson, RepoSource, RepoSyncRule, probe_repomd};
pub use tools::tool_version;
