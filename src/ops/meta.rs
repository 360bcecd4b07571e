//! `nosa meta`: reads and edits a build's meta.json, checked before it is written.

use crate::cli::{Cli, MetaArgs};
use crate::exit::{Failure, OpResult};

/// `nosa meta`.
pub fn meta(_cli: &Cli, _a: &MetaArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa meta is not built yet"
    ))))
}
