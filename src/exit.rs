//! Exit codes and the top-level error: 0 success, 1 build failure (or the workdir is locked with
//! `--no-wait`), 2 usage or configuration error. Documented in docs/cli.md.

use std::process::ExitCode;

/// Success.
pub const SUCCESS: u8 = 0;
/// A node failed, or the command could not do its work (lock held, IO error).
pub const BUILD_FAILURE: u8 = 1;
/// Bad command line or bad configuration (build file, nestos-config).
pub const USAGE: u8 = 2;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Configuration or usage: exit 2.
    Config(miette::Report),
    /// Build or runtime failure: exit 1. The report may be empty when already printed.
    Build(Option<miette::Report>),
}

impl Failure {
    /// The exit code.
    pub fn code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Config(_) => USAGE,
            Failure::Build(_) => BUILD_FAILURE,
        })
    }
}

/// Result of an `ops` function.
pub type OpResult = Result<(), Failure>;

/// Wraps runtime errors (IO, store) as build failures.
pub fn runtime<E: std::error::Error + Send + Sync + 'static>(e: E) -> Failure {
    Failure::Build(Some(miette::Report::msg(e.to_string())))
}
