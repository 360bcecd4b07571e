//! NestOS rules: one module per node kind, plus the user-defined `[[step]]` rule, and the
//! workdir's build file that turns them into a graph.

pub mod buildfile;
pub mod compose;
pub mod kola;
pub mod nestos;
pub mod overlay;
pub mod overrides_rpm;
pub mod pending;
pub mod pins;
pub mod rootfs;
pub mod rpmdb;
pub mod scriptlets;
pub mod step;
pub mod targets;
pub mod unpack;

pub use buildfile::{BUILD_FILE, BuildFile, BuildFileError};
pub use step::StepRule;
pub use targets::{Workspace, WorkspaceError};
