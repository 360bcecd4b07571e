//! `nosa push-container`: the build's OCI archive to a registry or another transport.

use crate::cli::{Cli, PushContainerArgs};
use crate::exit::{Failure, OpResult};

/// `nosa push-container`.
pub fn push_container(_cli: &Cli, _a: &PushContainerArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa push-container is not built yet"
    ))))
}
