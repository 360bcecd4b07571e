//! The error type of the commit library.

use std::path::PathBuf;

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A libostree call failed.
    #[error("ostree: {what}: {source}")]
    Ostree {
        /// What was being done.
        what: String,
        /// libostree's error.
        #[source]
        source: ostree::glib::Error,
    },
    /// IO, with the path in the message (fs_err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The tree to commit is not a directory.
    #[error("{}: the tree to commit is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The repository exists with another mode.
    #[error("{}: repository mode is {found}, expected {expected}", path.display())]
    ModeMismatch {
        /// The repository.
        path: PathBuf,
        /// Its mode.
        found: String,
        /// The mode asked for.
        expected: String,
    },
    /// The ref name is not valid for ostree.
    #[error("invalid ref {name:?}: {reason}")]
    InvalidRef {
        /// The ref.
        name: String,
        /// libostree's reason.
        reason: String,
    },
    /// The commit metadata cannot be represented.
    #[error("commit metadata: {0}")]
    Metadata(String),
    /// `mutate-os-release` cannot find or rewrite the tree's os-release.
    #[error("mutate-os-release: {0}")]
    OsRelease(String),
    /// The tree's `meta.json` (owners, capabilities, hardlinks) is wrong.
    #[error("{}: {message}", path.display())]
    TreeMeta {
        /// The file or tree path concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl CommitError {
    pub(crate) fn ostree(what: impl Into<String>, source: ostree::glib::Error) -> CommitError {
        CommitError::Ostree {
            what: what.into(),
            source,
        }
    }
}
