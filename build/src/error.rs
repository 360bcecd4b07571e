//! The build crate's error: configuration or usage (the command line exits 2), or a build
//! that could not be done (exits 1).

/// Why a build operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// The build file, the nestos-config or a target name is wrong.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Workspace(#[from] Box<crate::WorkspaceError>),
    /// Bad usage or configuration found outside the workspace loader.
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    Usage {
        /// What is wrong.
        message: String,
        /// The fix.
        help: String,
    },
    /// The build cannot proceed (stale inputs, nothing built yet, locked workdir).
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    Refused {
        /// What is wrong.
        message: String,
        /// The next step.
        help: String,
    },
    /// The engine failed (not a node failure: those are in the report).
    #[error(transparent)]
    Engine(#[from] nosa_engine::EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] nosa_cache::Error),
    /// IO, the path in the message.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether this is a usage or configuration error (exit 2) rather than a failed build.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Workspace(_) | Error::Usage { .. })
    }

    pub(crate) fn usage(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
            help: help.into(),
        }
    }

    pub(crate) fn refused(message: impl Into<String>, help: impl Into<String>) -> Error {
        Error::Refused {
            message: message.into(),
            help: help.into(),
        }
    }
}
