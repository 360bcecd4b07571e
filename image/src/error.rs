//! The crate's error type: every failure names the tool, file or value involved.

use std::path::PathBuf;

/// Why an image step failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// IO, with the path in the message (fs_err).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A tool could not be started (missing package).
    #[error("cannot run `{tool}` (install Debian package `{package}`): {source}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package that ships it.
        package: String,
        /// The spawn error.
        source: std::io::Error,
    },
    /// A tool exited with a failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Something expected in the tree or the sysroot is missing.
    #[error("{what} not found: {path}")]
    Missing {
        /// What was looked for.
        what: String,
        /// Where.
        path: PathBuf,
    },
    /// Anything else.
    #[error("{0}")]
    Message(String),
}

impl ImageError {
    /// A failure with a message.
    pub fn msg(s: impl Into<String>) -> ImageError {
        ImageError::Message(s.into())
    }

    /// Something missing at `path`.
    pub fn missing(what: impl Into<String>, path: impl Into<PathBuf>) -> ImageError {
        ImageError::Missing {
            what: what.into(),
            path: path.into(),
        }
    }
}
