//! The NestOS build: a workdir (`nestos.build.toml`, the nestos-config it names) loaded into a
//! graph, built in stages (resolve, then the package nodes it implies, then the compose chain,
//! the version, the commit and what follows it), and recorded in coreos-assembler's builds/
//! layout. The command line (`src/`) parses arguments, renders and chooses exit codes; every
//! decision about a build is made here.
//!
//! Modules, in the order a build goes through them: [`buildfile`] (the build file, with
//! spanned diagnostics), [`workspace`] (build file + configs -> graph, target names),
//! [`expand`] (a nestos-config -> nodes per arch), [`ids`] (node ids), [`session`] (a loaded,
//! optionally locked workdir), [`staged`] (resolve first, then expand the packages, then the
//! targets), [`os`] (versioning and recording an OS build), [`builds`] (the builds/ records),
//! [`kola`] (selecting and reporting kola tests of the latest build), [`noop`] (what a
//! no-op witness of a `[nestos]` workdir watches besides the engine's own observations). The
//! remote cache's protocols live in the `nosa-remote` crate; [`buildfile`] checks its URL.

pub mod buildfile;
pub mod builds;
pub mod compress;
mod error;
pub mod expand;
pub mod ids;
pub mod kola;
pub mod meta_check;
pub mod meta_edit;
pub mod noop;
pub mod os;
pub mod pins;
pub mod prune;
pub mod runc;
pub mod session;
pub mod staged;
pub mod step;
pub mod workspace;

pub use buildfile::{BUILD_FILE, BuildFile, BuildFileError};
pub use builds::{BuildsDir, PruneError, Tag, TagError};
pub use error::Error;
pub use session::Session;
pub use step::StepRule;
pub use workspace::{Workspace, WorkspaceError};
