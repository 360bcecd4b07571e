//! `nosa runc` and `nosa shell`: a command inside the build's root filesystem, or in the
//! build environment.

use crate::cli::{Cli, RuncArgs, ShellArgs};
use crate::exit::{Failure, OpResult};

/// `nosa runc`.
pub fn runc(_cli: &Cli, _a: &RuncArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa runc is not built yet"
    ))))
}

/// `nosa shell`.
pub fn shell(_cli: &Cli, _a: &ShellArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa shell is not built yet"
    ))))
}
