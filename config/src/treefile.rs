//! Treefiles (`manifest.yaml`): loading with includes, merging, resolving.

pub(crate) mod condition;
pub(crate) mod load;
pub(crate) mod merge;
pub(crate) mod resolve;

pub use resolve::{PasswdCheck, PostprocessScript, PostprocessStep, RemoveFromPackage, Treefile};
