//! NestOS configuration: nestos-config trees (treefiles, image.yaml, .repo files) loaded and resolved.
//!
//! Loading has two stages. The raw stage parses each file with serde (YAML through
//! serde-saphyr into a tree that keeps spans) and type-checks it; the resolved stage merges
//! includes with rpm-ostree's rules, selects one architecture, substitutes variables and
//! builds typed values. Entry points:
//!
//! - [`Config::load`] with [`LoadOptions`]: the resolved [`Config`] of one [`Arch`];
//!   [`Config::show_json`] is what `nosa config show --json` prints.
//! - [`Arch::host`]: what `nosa basearch` prints.
//! - [`init_workdir`]: what `nosa init` does.
//!
//! Errors are [`ConfigError`] diagnostics pointing at the offending span; warnings
//! ([`ConfigWarning`]) are collected in [`Config::warnings`]. Nothing here prints.
//! See `docs/config.md` for semantics and nosa-specific decisions.

#![allow(
    clippy::result_large_err,
    reason = "errors carry their source text for miette and happen once per load; boxing every variant would obscure them"
)]

mod arch;
mod config;
mod error;
mod image;
mod init;
mod layout;
mod lockfile;
mod repo;
mod schema;
mod source;
mod treefile;
mod vars;
mod yaml;

pub use arch::{Arch, UnknownArch};
pub use config::{Config, LoadOptions};
pub use error::{ConfigError, ConfigWarning, Src};
pub use image::ImageConfig;
pub use init::{
    ConfigSource, DEFAULT_KEEP_LAST_N, DEFAULT_TARGETS, InitReport, WORKDIR_DIRS, WORKDIR_FILE,
    build_toml, init_workdir,
};
pub use layout::{KolaTest, KolaTests, OverlayLayer};
pub use lockfile::{LockedPackage, Lockfile, Lockfiles};
pub use repo::{Repo, RepoVars};
pub use treefile::{PasswdCheck, PostprocessScript, PostprocessStep, RemoveFromPackage, Treefile};
pub use vars::{BuildDate, Variables, expand_date_tags};
