//! `nosa compress` and `nosa uncompress`: a build's images compressed in place by graph nodes.

use crate::cli::{Cli, CompressArgs, UncompressArgs};
use crate::exit::{Failure, OpResult};

/// `nosa compress`.
pub fn compress(_cli: &Cli, _a: &CompressArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa compress is not built yet"
    ))))
}

/// `nosa uncompress`.
pub fn uncompress(_cli: &Cli, _a: &UncompressArgs) -> OpResult {
    Err(Failure::Build(Some(miette::miette!(
        "nosa uncompress is not built yet"
    ))))
}
