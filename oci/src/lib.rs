//! The `oci` node: an OSTree commit encapsulated as an ostree-native OCI archive (the format
//! ostree-ext, rpm-ostree and bootc import), reproducibly, without skopeo or ostree-ext.
//!
//! Two layers:
//!
//! - [`export_commit`] (in `export.rs`): the library function. It reads the commit with
//!   libostree (the `ostree` crate) and writes `<name>-<version>-ostree.<arch>.ociarchive`:
//!   a tar of an OCI image layout whose layers are ostree-ext "tar export" streams (format v1,
//!   `bare-split-xattrs`, `tarstream.rs`), one layer, or one per component (package, overlay,
//!   rpm database, initramfs, unpackaged content; `chunking.rs`).
//! - [`OciRule`] (in `rule.rs`): the engine rule `oci:<arch>`, reading its dependency's
//!   `repo/` and `commit.json` (the `ostree-commit` rule's output) and the path -> component
//!   map from the listings of its other dependencies (unpack, rpmdb, overlay nodes).
//!
//! - [`push`] (in `push.rs`, `registry.rs`, `archive.rs`): `nosa push-container`, a build's
//!   archive to a registry (the `oci-client` crate) or another containers transport, its
//!   blobs' bytes as they are; image references (`reference.rs`) and containers-auth.json
//!   credentials (`authfile.rs`).
//!
//! See `docs/oci.md`.

mod archive;
mod authfile;
mod chunking;
mod error;
mod export;
mod hash;
mod push;
mod read;
mod reference;
mod registry;
mod rule;
mod tarstream;

pub use archive::{ArchiveError, Blob, OciArchive};
pub use authfile::{AuthfileError, Credentials};
pub use chunking::{Chunking, DEFAULT_MAX_LAYERS, INITRAMFS_COMPONENT, UNPACKAGED_COMPONENT};
pub use error::OciError;
pub use export::{
    BOOTABLE_LABEL, BOOTC_LABEL, COMPONENTS_ANNOTATION, DIFFID_LABEL, ExportRequest, ExportResult,
    LayerFile, LayerRecord, OSTREE_COMMIT_LABEL, ReusableLayer, VERSION_LABEL, export_commit,
    oci_arch, ociarchive_name,
};
pub use push::{PushError, PushRequest, Pushed, Transport, push};
pub use reference::{ImageRef, REFERENCE_FORM, RefError};
pub use rule::{ComponentSource, OciRule};
