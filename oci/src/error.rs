//! The error type of the OCI export library.

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
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
    /// The commit holds something the export cannot represent.
    #[error("commit {commit}: {message}")]
    BadCommit {
        /// The commit checksum.
        commit: String,
        /// What is wrong.
        message: String,
    },
    /// The request is invalid (arch, name, version, chunking).
    #[error("invalid export request: {0}")]
    Request(String),
    /// Building or serializing the OCI JSON failed.
    #[error("oci: {0}")]
    Oci(String),
}

impl OciError {
    pub(crate) fn ostree(what: impl Into<String>) -> impl FnOnce(ostree::glib::Error) -> OciError {
        let what = what.into();
        move |source| OciError::Ostree { what, source }
    }
}
